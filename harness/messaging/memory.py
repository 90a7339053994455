"""The embedded transport: one in-process queue per (exchange, topic), in this process and loop.

A published message goes straight to a handler task of a consumer with a free slot; only when
every slot is taken does it wait in the queue, and a slot freed takes the next waiting message.
(A reader task per consumer over an ``asyncio.Queue`` and a ``Semaphore`` cost every message one
more task wake-up and the queue's and semaphore's bookkeeping: ~10 us a message here.)

Each handler task runs in a copy of the context the consumer was started in, as the reader task's
children did: never in the publisher's (its current span and step timing are the sender's own).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque

from harness.messaging.base import Consumer, Handler, Message, Transport

log = logging.getLogger(__name__)


class _Queue:
    """The messages waiting on one queue (oldest first) and the consumers reading it."""

    __slots__ = ("messages", "consumers")

    def __init__(self) -> None:
        self.messages: deque[Message] = deque()
        self.consumers: list[_MemoryConsumer] = []

    def dispatch(self) -> None:
        """Hand waiting messages to consumers with free slots."""
        for consumer in self.consumers:
            if not self.messages:
                return
            consumer.take()


class _MemoryConsumer(Consumer):
    def __init__(self, queue: _Queue, handler: Handler, concurrency: int) -> None:
        self._queue, self._handler, self._free = queue, handler, concurrency
        self._running: set[asyncio.Task] = set()
        self._stopped = False
        self._context = contextvars.copy_context()
        self._loop = asyncio.get_running_loop()
        queue.consumers.append(self)
        self.take()  # messages published before anyone consumed

    def take(self) -> None:
        """Start a handler for each waiting message while this consumer has a free slot."""
        messages = self._queue.messages
        while messages and self._free > 0 and not self._stopped:
            self._free -= 1
            task = self._loop.create_task(self._run(messages.popleft()), context=self._context.copy())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, message: Message) -> None:
        try:
            await self._handler(message)
        except Exception:  # the RPC layer handles errors; this is a last resort, and loud
            log.exception("handler of %s.%s failed", message.topic, message.method)
        finally:
            self._free += 1
            self.take()

    async def stop(self) -> None:
        self._stopped = True  # messages still waiting stay in the queue for another consumer
        if self in self._queue.consumers:
            self._queue.consumers.remove(self)
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


class MemoryTransport(Transport):
    name = "memory"
    system = "harness.memory"

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], _Queue] = {}

    def _queue(self, exchange: str, topic: str) -> _Queue:
        key = (exchange, topic)
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = _Queue()
        return q

    async def publish(self, message: Message) -> None:
        q = self._queue(message.exchange, message.topic)
        q.messages.append(message)
        q.dispatch()

    async def consume(
        self, exchange: str, topic: str, handler: Handler, *, concurrency: int, exclusive: bool = False
    ) -> Consumer:
        return _MemoryConsumer(self._queue(exchange, topic), handler, concurrency)

    def depth(self, exchange: str, topic: str) -> int:
        """Messages waiting in a queue (for tests and the progress display)."""
        q = self._queues.get((exchange, topic))
        return len(q.messages) if q else 0

    def drop_queue(self, exchange: str, topic: str) -> None:
        self._queues.pop((exchange, topic), None)
