"""Running the harness's event loop: uvloop when installed (it comes with uvicorn[standard]).

The whole embedded cloud shares one loop, so the loop's own cost per I/O event matters; uvloop
roughly halves it compared with asyncio's default selector loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it on Linux and macOS
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
