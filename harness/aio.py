"""Running the harness's event loop: uvloop when installed (it comes with uvicorn[standard]).

The whole embedded cloud shares one loop, so the loop's own cost per I/O event matters; uvloop
roughly halves it compared with asyncio's default selector loop.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it on Linux and macOS
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


#: Young-generation threshold of a long-running service process (CPython's default is 700).
GC_GEN0_THRESHOLD = 10_000


def settle_gc() -> None:
    """Tune the garbage collector of a process that now only serves (call once, after start-up).

    A service process allocates many short-lived objects per request (spans, dicts, coroutines),
    and with CPython's defaults the collector ran ~1,000 times a run and cost ~10 % of the cloud's
    CPU (``gc.callbacks``, 300 boots). So: collect once, ``gc.freeze()`` what start-up made
    (modules, settings, catalogues: never garbage, no longer scanned by full collections), and let
    the young generation grow to :data:`GC_GEN0_THRESHOLD` objects between collections. Cycles
    are still collected, only less often; nothing the process does changes.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
