"""Sleeping until a deadline with sub-millisecond precision, without busy waiting.

Why: event-loop timers are millisecond timers. uvloop rounds a delay to the nearest millisecond
and measures it from a loop time cached at the start of the iteration (``asyncio.sleep(0.0003)``
returns at once, 1.7 ms sleeps 2.2 ms), and asyncio's own loop rounds up by up to a millisecond.
The latency model's steps last 0.3-3 ms in the ``fast`` and ``realistic`` profiles, so those
errors were most of a step.

How: one Linux ``timerfd`` per event loop, armed (absolute, CLOCK_MONOTONIC, nanoseconds) at the
earliest pending deadline and watched with ``loop.add_reader``; the loop wakes when the kernel
timer fires, like for any socket. Waiters sit in a heap, so many concurrent sleepers cost one
armed timer and O(log n) each; nothing spins. The remaining error is the wake-up latency of the
process (~40-80 us on a busy 2-core VM): each wake-up measures it and the next timer is armed that
much early (the median of recent wake-ups, capped), so a deadline is met in the median.

Under load the precision is traded for CPU: a wake-up costs ~20 us of CPU, so deadlines within a
window that grows with the number of short sleepers (5 us each, at most 0.5 ms) share one, woken
in the window's middle. A few sleepers (a cloud below saturation) get no window; 64 get 0.3 ms,
and their wake-ups cost about what the loop's millisecond timers cost. Only sleeps shorter than
:data:`NEAR_NS` count: a sleeper seconds away (a 5 s spawn) adds no wake-up to share, and eight
of them widened the window of every 0.3 ms send by 40 us (woken ~27 us later in the median).

Python 3.13 has ``os.timerfd_create``; on 3.11/3.12 the same libc calls go through ctypes. Where
there is no timerfd (macOS) the loop's own timer is used, with the same early-arming correction.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import heapq
import itertools
import os
import time
import weakref
from typing import Callable

#: Cap of the early-arming correction: a wake-up later than this is load, not timer latency.
MAX_LEAD_NS = 300_000
#: Deadlines closer than this per pending sleeper (beyond the first) share a wake-up, up to the cap.
WINDOW_NS_PER_SLEEPER, MAX_WINDOW_NS = 5_000, 500_000
#: A sleep shorter than this counts toward the window (see the module docstring).
NEAR_NS = 20_000_000

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timerfd_api() -> tuple[Callable[[], int], Callable[[], Callable[[int, int], None]]] | None:
    """(create, make_arm) from the os module or libc, ``make_arm()`` giving one timer its
    ``arm(fd, absolute_ns)``; None where timerfd does not exist."""
    if hasattr(os, "timerfd_create"):  # Python 3.13+
        def create_os() -> int:
            return os.timerfd_create(time.CLOCK_MONOTONIC, flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC)

        def arm_os(fd: int, at_ns: int) -> None:
            os.timerfd_settime_ns(fd, flags=os.TFD_TIMER_ABSTIME, initial=max(1, at_ns))

        return create_os, lambda: arm_os
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create_c, settime_c = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    settime_c.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]

    def create_libc() -> int:
        fd = create_c(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        return fd

    def make_arm_libc() -> Callable[[int, int], None]:
        spec = _Itimerspec()  # one struct per timer (per loop), rewritten for each call
        value, spec_ref = spec.it_value, ctypes.byref(spec)

        def arm_libc(fd: int, at_ns: int) -> None:
            value.tv_sec, value.tv_nsec = divmod(max(1, at_ns), 1_000_000_000)  # 0 would disarm it
            if settime_c(fd, _TFD_TIMER_ABSTIME, spec_ref, None) < 0:
                raise OSError(ctypes.get_errno(), "timerfd_settime failed")

        return arm_libc

    return create_libc, make_arm_libc


_API = _timerfd_api()


class _RunningMedian:
    """The median of the last 63 samples, recomputed every 8th sample (a sort of 63 ints)."""

    def __init__(self) -> None:
        self._samples: collections.deque[int] = collections.deque(maxlen=63)
        self._n = 0
        self.value = 0

    def add(self, x: int) -> int:
        self._samples.append(x)
        self._n += 1
        if self._n <= 8 or self._n % 8 == 0:
            ordered = sorted(self._samples)
            self.value = ordered[len(ordered) // 2]
        return self.value


class DeadlineTimer:
    """The deadlines of one event loop. Use :func:`sleep_until` rather than this class."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[int, int, asyncio.Future, bool]] = []  # (deadline, seq, waiter, near)
        self._near = 0  # entries of the heap that count toward the window
        self._seq = itertools.count()
        self._armed_at: int | None = None
        self._handle: asyncio.TimerHandle | None = None
        #: median lateness of a recent wake-up (ns); timers are armed this much before their
        #: deadline. The median, not the mean: a busy box makes a few wake-ups very late, and a
        #: mean pulled up by them would wake every other sleeper early.
        self.lead_ns = 0
        self._lateness = _RunningMedian()
        self._fd: int | None = None
        if _API is not None:
            try:
                self._arm_fd = _API[1]()
                self._fd = _API[0]()
                loop.add_reader(self._fd, self._fire)
            except (OSError, NotImplementedError):  # no timerfd, or a loop that cannot watch it
                if self._fd is not None:
                    os.close(self._fd)
                self._fd = None
        if self._fd is not None:
            weakref.finalize(self, os.close, self._fd)

    @property
    def precise(self) -> bool:
        return self._fd is not None

    async def sleep_until(self, deadline_ns: int) -> None:
        """Return at ``deadline_ns`` (time.monotonic_ns) or just after it."""
        fut = self._loop.create_future()
        near = deadline_ns - time.monotonic_ns() < NEAR_NS
        entry = (deadline_ns, next(self._seq), fut, near)
        heapq.heappush(self._heap, entry)
        self._near += near
        if self._heap[0] is entry:
            self._arm(deadline_ns)
        try:
            await fut
        finally:
            if not fut.done():  # cancelled: drop it, leave the timer armed (a spare wake-up is harmless)
                fut.cancel()

    def _window(self) -> int:
        """How far apart deadlines may be and still share a wake-up: none for a few short
        sleepers, wider with many (each wake-up costs ~20 us of CPU; with 64 sleepers of 1-3 ms
        that was two thirds of a core, where the loop's own millisecond timers cost a tenth)."""
        return min(MAX_WINDOW_NS, WINDOW_NS_PER_SLEEPER * max(0, self._near - 1))

    def _pop(self) -> asyncio.Future:
        entry = heapq.heappop(self._heap)
        self._near -= entry[3]
        return entry[2]

    def _arm(self, deadline_ns: int) -> None:
        # woken at the middle of the window: the first deadline in it half a window late, the
        # last half a window early
        at = deadline_ns - int(self.lead_ns) + self._window() // 2
        if self._armed_at is not None and self._armed_at <= at:
            return
        self._armed_at = at
        if self._fd is not None:
            self._arm_fd(self._fd, at)
        else:
            if self._handle is not None:
                self._handle.cancel()
            delay = (at - time.monotonic_ns()) / 1e9
            self._handle = self._loop.call_later(max(0.0, delay), self._fire)

    def _fire(self) -> None:
        if self._fd is not None:
            try:
                os.read(self._fd, 8)
            except BlockingIOError:
                pass
        armed_at, self._armed_at, self._handle = self._armed_at, None, None
        now = time.monotonic_ns()
        if armed_at is not None and now >= armed_at:  # how late after the armed time we woke
            self.lead_ns = self._lateness.add(min(now - armed_at, MAX_LEAD_NS))
        heap, due = self._heap, now + int(self.lead_ns) + self._window() // 2
        while heap and heap[0][0] <= due:
            fut = self._pop()
            if not fut.done():
                fut.set_result(None)
        while heap and heap[0][2].done():  # cancelled sleepers at the top
            self._pop()
        if heap:
            self._arm(heap[0][0])


_TIMERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineTimer]" = weakref.WeakKeyDictionary()


def timer() -> DeadlineTimer:
    """The running loop's deadline timer (made on first use)."""
    loop = asyncio.get_running_loop()
    t = _TIMERS.get(loop)
    if t is None:
        t = _TIMERS[loop] = DeadlineTimer(loop)
    return t


async def sleep_until(deadline_ns: int) -> None:
    """Sleep until ``deadline_ns`` on the ``time.monotonic_ns`` clock.

    Returns at once when the deadline is nearer than a wake-up takes (the timer's ``lead_ns``):
    sleeping would end later past the deadline than returning now ends before it."""
    t = timer()
    if deadline_ns - time.monotonic_ns() <= t.lead_ns:
        return
    await t.sleep_until(deadline_ns)
