"""The transport interface: what a message broker must do for the RPC layer.

A transport only publishes a message to a queue of an exchange and consumes a queue with bounded
concurrency (as a broker's prefetch bounds it). ``call``, ``cast``, replies, timeouts and tracing
live once, in :mod:`harness.messaging.rpc`, over any transport.
"""

from __future__ import annotations

import abc
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable


_V4_CLEAR = ~((0xc000 << 48) | (0xf000 << 64))
_V4_SET = (0x8000 << 48) | (4 << 76)


#: The ids' own generator (seeded from os.urandom), so ``random.seed`` elsewhere never repeats
#: them; reseeded in a forked child, which would otherwise draw the parent's sequence.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def uuid4_hex() -> str:
    """``uuid.uuid4().hex`` (a random version-4 UUID, 32 hex digits) at a third of its cost: the
    same bits set as ``uuid.UUID(version=4)`` sets them, without building the UUID object and
    without a system call per id (ids name messages, they guard nothing: the tracer draws span
    ids the same way). A boot sends a dozen messages, each with an id (a call also has a
    correlation id)."""
    return f"{(_ids.getrandbits(128) & _V4_CLEAR) | _V4_SET:032x}"


@dataclass(slots=True)
class Message:
    """One message on the bus, as oslo.messaging would put it on an AMQP queue."""

    exchange: str
    topic: str
    method: str
    args: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    message_id: str = field(default_factory=uuid4_hex)
    reply_to: str | None = None
    correlation_id: str | None = None
    sent_at_ns: int = field(default_factory=time.time_ns)  # queue wait is measured from here
    result: Any = None  # replies: the return value
    failure: str | None = None  # replies: the remote error, if any


Handler = Callable[[Message], Awaitable[None]]


class Consumer(abc.ABC):
    """A running consumer of one queue; ``stop`` ends it once messages in hand are handled."""

    @abc.abstractmethod
    async def stop(self) -> None: ...


class Transport(abc.ABC):
    """Publish to and consume from named queues of an exchange."""

    name: str = "?"
    #: value of the ``messaging.system`` span attribute
    system: str = "?"

    async def start(self) -> None:  # connect
        return None

    async def close(self) -> None:
        return None

    @abc.abstractmethod
    async def publish(self, message: Message) -> None:
        """Put ``message`` on queue ``message.topic`` of ``message.exchange``."""

    @abc.abstractmethod
    async def consume(
        self, exchange: str, topic: str, handler: Handler, *, concurrency: int, exclusive: bool = False
    ) -> Consumer:
        """Run ``handler`` for each message of the queue, at most ``concurrency`` at once.

        A message stays in the queue until a slot is free, so the time it waits there is real queue
        wait, visible in its receive span.
        """


def make_transport(url: str) -> Transport:
    """A transport from its URL: ``memory://`` (embedded) or ``amqp://user:pass@host:port/``."""
    if url.startswith("memory://"):
        from harness.messaging.memory import MemoryTransport

        return MemoryTransport()
    if url.startswith(("amqp://", "amqps://", "rabbit://")):
        try:
            from harness.messaging.amqp import AmqpTransport  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - arrives with the RabbitMQ issue
            raise ValueError(f"transport {url!r}: the AMQP transport is not available ({exc})")
        return AmqpTransport(url)
    raise ValueError(f"unknown transport URL {url!r}: use memory:// or amqp://user:pass@host:port/")
