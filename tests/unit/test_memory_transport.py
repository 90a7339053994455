"""The embedded transport: bounded concurrency, queue wait, order, stop, and handler context."""

from __future__ import annotations

import asyncio
import contextvars

from harness.messaging.base import Message
from harness.messaging.memory import MemoryTransport

_who = contextvars.ContextVar("who", default="nobody")


def _msg(i: int) -> Message:
    return Message(exchange="nova", topic="t", method="m", args={"i": i})


async def test_slots_bound_handlers_and_messages_wait_in_order() -> None:
    transport = MemoryTransport()
    release = asyncio.Event()
    started: list[int] = []
    running = [0]
    peak = [0]

    async def handler(msg: Message) -> None:
        started.append(msg.args["i"])
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await release.wait()
        running[0] -= 1

    for i in range(2):  # published before anyone consumes: they wait
        await transport.publish(_msg(i))
    consumer = await transport.consume("nova", "t", handler, concurrency=3)
    for i in range(2, 7):
        await transport.publish(_msg(i))
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2] and transport.depth("nova", "t") == 4
    release.set()
    for _ in range(100):
        if len(started) == 7 and running[0] == 0:
            break
        await asyncio.sleep(0.01)
    assert started == list(range(7)) and peak[0] == 3 and transport.depth("nova", "t") == 0
    await consumer.stop()


async def test_stopped_consumer_leaves_waiting_messages_to_the_next() -> None:
    transport = MemoryTransport()
    block = asyncio.Event()
    seen: list[tuple[str, int]] = []

    def handler(name: str):
        async def handle(msg: Message) -> None:
            seen.append((name, msg.args["i"]))
            await block.wait()
        return handle

    first = await transport.consume("nova", "t", handler("first"), concurrency=1)
    for i in range(3):
        await transport.publish(_msg(i))
    await asyncio.sleep(0.01)
    await first.stop()  # its running handler is cancelled; 1 and 2 were never taken
    assert seen == [("first", 0)] and transport.depth("nova", "t") == 2
    block.set()
    second = await transport.consume("nova", "t", handler("second"), concurrency=5)
    await asyncio.sleep(0.01)
    assert seen[1:] == [("second", 1), ("second", 2)]
    await second.stop()


async def test_handler_runs_in_the_consumer_s_context_not_the_publisher_s() -> None:
    transport = MemoryTransport()
    got: list[str] = []
    done = asyncio.Event()

    async def handler(msg: Message) -> None:
        got.append(_who.get())
        _who.set("handler")  # a handler's writes stay its own
        if len(got) == 2:
            done.set()

    _who.set("service")
    consumer = await transport.consume("nova", "t", handler, concurrency=4)

    async def sender() -> None:
        _who.set("publisher")
        await transport.publish(_msg(0))
        await transport.publish(_msg(1))

    await asyncio.create_task(sender())
    await asyncio.wait_for(done.wait(), 5)
    assert got == ["service", "service"] and _who.get() == "service"
    await consumer.stop()
