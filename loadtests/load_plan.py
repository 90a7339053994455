"""How many users a shape wants, and when: pure functions of the options and the run time.

Kept apart from :mod:`loadtests.shapes` because importing Locust monkey-patches the whole process
for gevent; this module (like :mod:`loadtests.load_options`, :mod:`loadtests.arrivals` and
:mod:`loadtests.load_run`) can be imported and tested anywhere.
"""

from __future__ import annotations

import math

from loadtests.load_options import LoadOptions

#: Attribute of Locust's parsed options carrying the shape's current user total. Locust sends a
#: master's custom options to its workers with every spawn message, so this is how a worker's
#: open-loop user learns its share of the arrival rate (a worker only knows its own users).
USERS_TOTAL_ATTR = "harness_users_total"
#: Seconds beyond ``--stop-timeout`` the shape waits for users to go after ``-t`` (worker reports
#: of their user count arrive about once a second).
DRAIN_GRACE_S = 10.0


def target_users(options: LoadOptions, users: int, elapsed: float) -> int:
    """How many users the shape wants ``elapsed`` seconds into the run (``users`` is ``-u``)."""
    if options.load_shape == "step":
        steps = 1 + math.floor(elapsed / options.step_time)
        return min(users, options.step_users * steps)
    if options.load_shape == "spike":
        in_spike = options.spike_at <= elapsed < options.spike_at + options.spike_duration
        return users + (options.spike_users if in_spike else 0)
    return users  # closed and open: constant


def spawn_rate_for(options: LoadOptions, spawn_rate: float) -> float:
    """A spike arrives at once (within a second), whatever ``-r`` says; the others ramp at ``-r``."""
    if options.load_shape == "spike":
        return max(spawn_rate, float(options.spike_users), 1.0)
    return spawn_rate
