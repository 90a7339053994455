"""A whole-request timeout for many concurrent requests at the cost of one coarse timer.

aiohttp's ``ClientTimeout(total=...)`` and :func:`asyncio.timeout` each schedule (and cancel) an
event-loop timer per request, about 10 us of CPU a request on uvloop; the embedded cloud makes a
dozen service-to-service requests per boot on its one loop, and such a timeout almost never
fires. :class:`RequestTimeouts` instead remembers each request's deadline in a dict and sweeps
them once a second while any is in flight, cancelling the overdue ones' tasks; a timed-out
request raises :class:`TimeoutError`, as ``asyncio.timeout`` does. Deadlines are kept to the
sweep's resolution (at most a second late), as aiohttp rounds a timeout of 5 s or more up to a
whole second anyway.
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType

#: Seconds between sweeps (the resolution of every deadline).
SWEEP_S = 1.0


class RequestTimeouts:
    """Deadlines of one client's requests in flight: ``with timeouts.limit():`` around each."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._due: dict[int, tuple[asyncio.Task, float, int]] = {}
        self._expired: set[int] = set()
        self._ids = itertools.count()
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_loop: asyncio.AbstractEventLoop | None = None  # the loop the sweeper runs on

    def limit(self) -> "_Limit":
        """A context manager bounding the current task's work inside it to :attr:`timeout` seconds."""
        return _Limit(self)

    def close(self) -> None:
        """Stop sweeping (the client is closing)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _enter(self) -> int:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a request timeout needs a task")
        loop = task.get_loop()
        key = next(self._ids)
        self._due[key] = (task, loop.time() + self.timeout, task.cancelling())
        if self._sweeper is None or self._sweep_loop is not loop:  # (a client reused on a new loop)
            self._sweep_loop = loop
            self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop)
        return key

    def _exit(self, key: int, cancelled: bool) -> bool:
        """True when this request's deadline cancelled it (the caller raises TimeoutError)."""
        task, _, cancelling = self._due.pop(key)
        if key not in self._expired:
            return False
        self._expired.discard(key)
        # As asyncio.timeout does: withdraw our cancellation; it becomes a TimeoutError unless
        # the task was also cancelled from outside (that cancellation then propagates).
        return task.uncancel() <= cancelling and cancelled

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._sweep_loop:
            return  # superseded by a sweeper on the loop the client now runs on
        self._sweeper = None
        now = loop.time()
        for key, (task, due, _) in list(self._due.items()):
            if due <= now and key not in self._expired and task.get_loop() is loop:
                self._expired.add(key)
                task.cancel()
        if len(self._due) > len(self._expired):
            self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop)


class _Limit:
    __slots__ = ("_owner", "_key")

    def __init__(self, owner: RequestTimeouts) -> None:
        self._owner = owner
        self._key = -1

    def __enter__(self) -> None:
        self._key = self._owner._enter()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._owner._exit(self._key, exc_type is asyncio.CancelledError):
            raise TimeoutError(f"request took longer than {self._owner.timeout:g} s") from exc
