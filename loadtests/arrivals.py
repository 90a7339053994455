"""Open-loop arrivals: when each boot is *meant* to start, whatever the cloud is doing.

A closed-loop user starts its next boot when the last one is done, so a slow cloud slows the load
down and hides its own queueing ("coordinated omission"). The open-loop shape instead fixes the
arrival times in advance: each of the ``-u`` users is an independent Poisson stream of rate
``arrival_rate / users`` (exponential gaps), so all users together are one Poisson process at
``arrival_rate`` (a superposition of independent Poisson processes is one). Each arrival's boot runs
in its own greenlet, so the next arrival never waits for it; and, as in wrk2, a boot's latency is
counted from its intended start, so any wait (for a free slot under ``--max-in-flight``, or for a
busy load generator) shows in the numbers instead of vanishing.

Every user draws from its own seeded stream (seed, worker index, user number), so a run's intended
arrival times are reproducible.
"""

from __future__ import annotations

import random


class PoissonArrivals:
    """The intended start times of one user's boots, on the ``time.monotonic()`` clock."""

    def __init__(self, *, seed: int, worker_index: int, user_number: int, start: float) -> None:
        # str seeds are hashed deterministically by random.Random (unlike hash() of a tuple)
        self._rng = random.Random(f"harness-arrivals:{seed}:{worker_index}:{user_number}")
        self._last = start

    def next(self, rate_per_user: float) -> float:
        """The next intended start: the previous one plus an exponential gap of mean 1/rate.

        Gaps are added to the previous *intended* time, never to the time the previous boot
        ended, which is what keeps the arrivals independent of response times.
        """
        if not rate_per_user > 0:
            raise ValueError(f"arrival rate per user must be > 0, got {rate_per_user!r}")
        self._last += self._rng.expovariate(rate_per_user)
        return self._last
