"""The embedded transport: one asyncio queue per (exchange, topic), in this process and loop."""

from __future__ import annotations

import asyncio
import logging

from harness.messaging.base import Consumer, Handler, Message, Transport

log = logging.getLogger(__name__)


class _MemoryConsumer(Consumer):
    def __init__(self, queue: asyncio.Queue, handler: Handler, concurrency: int) -> None:
        self._queue, self._handler = queue, handler
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task] = set()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            await self._slots.acquire()  # hold the message in the queue until a slot is free
            message = await self._queue.get()
            task = asyncio.create_task(self._run(message))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, message: Message) -> None:
        try:
            await self._handler(message)
        except Exception:  # the RPC layer handles errors; this is a last resort, and loud
            log.exception("handler of %s.%s failed", message.topic, message.method)
        finally:
            self._slots.release()

    async def stop(self) -> None:
        self._reader.cancel()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(self._reader, *self._running, return_exceptions=True)


class MemoryTransport(Transport):
    name = "memory"
    system = "harness.memory"

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], asyncio.Queue] = {}

    def _queue(self, exchange: str, topic: str) -> asyncio.Queue:
        key = (exchange, topic)
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = asyncio.Queue()
        return q

    async def publish(self, message: Message) -> None:
        self._queue(message.exchange, message.topic).put_nowait(message)

    async def consume(
        self, exchange: str, topic: str, handler: Handler, *, concurrency: int, exclusive: bool = False
    ) -> Consumer:
        return _MemoryConsumer(self._queue(exchange, topic), handler, concurrency)

    def depth(self, exchange: str, topic: str) -> int:
        """Messages waiting in a queue (for tests and the progress display)."""
        q = self._queues.get((exchange, topic))
        return q.qsize() if q else 0

    def drop_queue(self, exchange: str, topic: str) -> None:
        self._queues.pop((exchange, topic), None)
