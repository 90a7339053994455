"""The load shapes, chosen with ``--load-shape`` (a Locust option, so also a field of the web UI).

=========  ==================================================================================
closed     ``-u`` users, each booting back to back (``--think-time`` apart): Locust's default.
open       boots arrive as a Poisson process at ``--arrival-rate`` from ``-u`` independent streams
           (see :mod:`loadtests.arrivals`), each boot in its own greenlet.
step       ``--step-users`` more users every ``--step-time`` seconds, up to ``-u``.
spike      ``-u`` users, plus ``--spike-users`` from ``--spike-at`` for ``--spike-duration`` seconds.
=========  ==================================================================================

One :class:`HarnessShape` serves them all: Locust uses the first shape class of a locustfile, so
the choice is an option the shape reads at every tick (a change in the web UI takes effect at the
next start). ``use_common_options`` keeps ``-u``, ``-r`` and ``-t`` (and their web UI fields) working.
The user count as a function of time is :func:`loadtests.load_plan.target_users`, a pure function
(importable without Locust, whose import monkey-patches the process for gevent).
"""

from __future__ import annotations

import logging
from typing import Any

from locust import LoadTestShape

from loadtests.load_options import LoadOptions
from loadtests.load_plan import DRAIN_GRACE_S, USERS_TOTAL_ATTR, spawn_rate_for, target_users

log = logging.getLogger(__name__)

class HarnessShape(LoadTestShape):
    """closed / open / step / spike, per ``--load-shape``; drains and stops after ``-t`` when given."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._drain_rate: float | None = None

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        parsed: Any = self.runner.environment.parsed_options
        try:
            options = LoadOptions.from_parsed(parsed)
        except ValueError as exc:
            log.error("bad load option, stopping: %s", exc)
            return None
        elapsed = self.get_run_time()
        users = int(parsed.num_users or 1)
        if parsed.run_time and elapsed >= parsed.run_time:
            return self._drain(parsed, elapsed - parsed.run_time, users)
        spawn_rate = float(parsed.spawn_rate or users)
        target = target_users(options, users, elapsed)
        setattr(parsed, USERS_TOTAL_ATTR, target)
        return target, spawn_rate_for(options, spawn_rate)

    def _drain(self, parsed: Any, overtime: float, users: int) -> tuple[int, float] | None:
        """After ``-t``: ask for zero users and stop only once they are gone.

        Removing users honours ``--stop-timeout`` (a user finishes its boot, or is cut off when the
        timeout is 0), and only then does the run end, so a master's final statistics include every
        worker's last boots. (Ending at once would make Locust's master quit while its workers are
        still finishing, and lose what they report after half a second.)
        """
        current = self.get_current_user_count()
        if current > 0 and overtime < float(parsed.stop_timeout or 0) + DRAIN_GRACE_S:
            if self._drain_rate is None:  # fixed for the drain: a new tick value restarts the ramp
                self._drain_rate = float(max(current, users, 1))  # all of them within a second
            return 0, self._drain_rate
        return None

    def reset_time(self) -> None:
        super().reset_time()
        self._drain_rate = None
