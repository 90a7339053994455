"""The RabbitMQ transport (aio-pika): Nova's RPC over a real broker, as oslo.messaging lays it out.

* One **topic exchange** per project (``nova``, ``cinder``, ``neutron``); a server's queue is named
  as Nova names it (``scheduler``, ``conductor``, ``compute.<host>``) and bound with that name as
  routing key. A caller's reply queue (``reply_<uuid>``) is exclusive to its connection.
* Every :class:`~harness.messaging.base.Message` field crosses the wire: ``message_id``,
  ``correlation_id``, ``reply_to`` and the method as AMQP properties, W3C ``traceparent`` and
  ``baggage`` and the send time (``x-harness-sent-at-ns``, from which the receiver measures queue
  wait) as headers, arguments and results as a JSON body.
* **Bounded concurrency** is the broker's: a consumer's prefetch is its ``concurrency`` and a
  message is acknowledged only when its handler is done, so messages beyond the limit wait in the
  broker's queue (the wait the receive span shows), as ``max_concurrent_builds`` makes them wait.
* **Broker restarts**: the connection is aio-pika's robust one (it reconnects and re-declares
  exchanges, queues, bindings, QoS and consumers). Server queues are durable and messages
  persistent, so requests queued when the broker stops are delivered after it is back; a publish
  that fails meanwhile waits for the reconnection and is sent again (up to ``publish_timeout``).
  Re-sent or re-delivered copies carry the same ``message_id`` and a consumer runs each id once.
  Replies live in exclusive queues and may be lost: the caller then times out
  (``rpc_response_timeout``), which the services turn into a fault, as Nova does.

URL: ``amqp://user:pass@host:port/vhost`` (``rabbit://`` as oslo.messaging writes it is accepted),
with optional query parameters ``connect_timeout`` and ``publish_timeout`` (seconds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq.exceptions
from aio_pika import DeliveryMode, ExchangeType
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel, AbstractRobustConnection

from harness.messaging.base import Consumer, Handler, Message, Transport
from harness.messaging.rpc import RpcError

log = logging.getLogger(__name__)

SENT_AT_HEADER = "x-harness-sent-at-ns"
#: message ids a consumer remembers to drop re-deliveries of what it already ran
DEDUP_WINDOW = 50_000
#: seconds a reply waits for its caller's queue to come back after a reconnection
REPLY_ROUTE_WAIT = 10.0
#: errors meaning "the connection or channel went away": wait for the reconnection and retry
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    asyncio.TimeoutError,
    RuntimeError,  # aio-pika: "Channel closed by RPC timeout" / writer closed while reconnecting
)


class BrokerUnreachable(ConnectionError):
    """The broker cannot be reached (or refuses our credentials) when the transport starts."""


class DeliveryError(RpcError):
    """A message could not be handed to the broker: no queue for it, or the broker stayed away.

    An :class:`~harness.messaging.rpc.RpcError`, so a caller fails the request cleanly (nova-api
    puts the server in ERROR with the message as fault, nova-compute reports a failed build).
    """


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The broker URL for aio-pika (``amqp://``) and our own query options, taken out of it."""
    parts = urlsplit(url)
    if "," in parts.netloc:
        raise ValueError(f"transport {url!r}: only one broker host is supported")
    scheme = "amqp" if parts.scheme == "rabbit" else parts.scheme
    ours = {"connect_timeout", "publish_timeout"}
    query = parse_qsl(parts.query)
    opts = {k: v for k, v in query if k in ours}
    rest = urlencode([(k, v) for k, v in query if k not in ours])
    return urlunsplit((scheme, parts.netloc, parts.path or "/", rest, "")), opts


def _display(url: str) -> str:
    """host:port/vhost of a broker URL, without credentials (for messages and logs)."""
    p = urlsplit(url)
    return f"{p.hostname or 'localhost'}:{p.port or 5672}{p.path or '/'}"


def _float_opt(opts: dict[str, str], key: str, default: float, url: str) -> float:
    try:
        value = float(opts.get(key, default))
    except ValueError:
        raise ValueError(f"transport {url!r}: {key} must be a number of seconds") from None
    if value <= 0:
        raise ValueError(f"transport {url!r}: {key} must be > 0")
    return value


def encode(message: Message) -> aio_pika.Message:
    """A :class:`Message` as an AMQP message (body JSON, the rest properties and headers)."""
    body = {"method": message.method, "args": message.args}
    if message.result is not None:
        body["result"] = message.result
    if message.failure is not None:
        body["failure"] = message.failure
    return aio_pika.Message(
        json.dumps(body, separators=(",", ":")).encode(),
        headers={**message.headers, SENT_AT_HEADER: message.sent_at_ns},
        content_type="application/json",
        content_encoding="utf-8",
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        type=message.method,
        app_id="harness",
        delivery_mode=DeliveryMode.PERSISTENT,
    )


def decode(incoming: AbstractIncomingMessage) -> Message:
    """The :class:`Message` an AMQP delivery carries (raises ``ValueError`` when malformed)."""
    try:
        body = json.loads(incoming.body)
        method, args = body["method"], body.get("args") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed message body: {exc}") from None
    headers: dict[str, str] = {}
    sent_at: int | None = None
    for key, value in (incoming.headers or {}).items():
        if key == SENT_AT_HEADER:
            try:
                sent_at = int(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"malformed {SENT_AT_HEADER} header: {value!r}") from None
        elif isinstance(value, (bytes, bytearray)):
            headers[key] = value.decode()
        elif isinstance(value, str):
            headers[key] = value
    msg = Message(
        exchange=incoming.exchange or "", topic=incoming.routing_key or "", method=method,
        args=args, headers=headers, message_id=incoming.message_id or "",
        reply_to=incoming.reply_to, correlation_id=incoming.correlation_id,
        result=body.get("result"), failure=body.get("failure"),
    )
    if sent_at is not None:
        msg.sent_at_ns = sent_at
    return msg


class _AmqpConsumer(Consumer):
    """Runs the handler of each delivery in a task of its own and acks the delivery when done.

    A message whose id this consumer already ran or is running (the broker re-delivered it after
    a reconnection, or the publisher re-sent it) is acknowledged without running it again.
    """

    def __init__(self, queue: AbstractQueue, handler: Handler, name: str) -> None:
        self._queue, self._handler, self.name = queue, handler, name
        self._tag: str | None = None
        self._running: dict[str, asyncio.Future] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        # Our own task: aio-pika cancels its delivery tasks when the connection drops, and a
        # handler half-way through a build must finish (its reply is sent after the reconnection).
        task = asyncio.create_task(self._process(incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass

    async def _process(self, incoming: AbstractIncomingMessage) -> None:
        try:
            msg = decode(incoming)
        except ValueError as exc:
            log.error("queue %s: dropping message %s: %s", self.name, incoming.message_id, exc)
            await _settle(incoming.reject(requeue=False))
            return
        mid = msg.message_id
        if mid and mid in self._done:
            await _settle(incoming.ack())
            return
        if mid and mid in self._running:  # a re-delivery while the first copy still runs
            await asyncio.shield(self._running[mid])
            await _settle(incoming.ack())
            return
        done = asyncio.get_running_loop().create_future()
        if mid:
            self._running[mid] = done
        try:
            await self._handler(msg)
        except Exception:  # the RPC layer handles errors; this is a last resort, and loud
            log.exception("handler of %s.%s failed", msg.topic, msg.method)
        finally:
            done.set_result(None)
            if mid:
                self._running.pop(mid, None)
                self._done[mid] = None
                if len(self._done) > DEDUP_WINDOW:
                    self._done.popitem(last=False)
        await _settle(incoming.ack())

    async def stop(self) -> None:
        if self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except _CONNECTION_ERRORS as exc:
                log.debug("queue %s: cancel while disconnected: %s", self.name, exc)
            self._tag = None
        # Unacknowledged messages go back to the queue when the channel closes: a durable
        # server queue keeps them for the next consumer.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _settle(op: Any) -> None:
    """Ack or reject; on a channel that died meanwhile the broker re-delivers (deduplicated)."""
    try:
        await op
    except _CONNECTION_ERRORS as exc:
        log.debug("ack on a closed channel (will be re-delivered): %s", exc)


class AmqpTransport(Transport):
    """Publish to and consume from RabbitMQ; reconnects on its own (see the module docstring)."""

    name = "amqp"
    system = "rabbitmq"

    def __init__(self, url: str, *, connection_name: str | None = None) -> None:
        self.url = url
        self._amqp_url, opts = _split_url(url)
        self.connect_timeout = _float_opt(opts, "connect_timeout", 10.0, url)
        self.publish_timeout = _float_opt(opts, "publish_timeout", 60.0, url)
        self.display = _display(self._amqp_url)
        self.connection_name = connection_name or f"harness@{socket.gethostname()}"
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractRobustChannel | None = None
        self._exchanges: dict[tuple[int, str], Any] = {}
        self._channels: dict[int, AbstractRobustChannel] = {}  # consumer channels by prefetch
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed and self._conn.connected.is_set()

    async def start(self) -> None:
        if self._conn is not None:
            return
        try:
            self._conn = await aio_pika.connect_robust(
                self._amqp_url, timeout=self.connect_timeout, reconnect_interval=1.0,
                client_properties={"connection_name": self.connection_name},
            )
        except aiormq.exceptions.ProbableAuthenticationError as exc:
            raise BrokerUnreachable(
                f"RabbitMQ at {self.display} refused the credentials of the transport URL ({exc})"
            ) from None
        except (OSError, asyncio.TimeoutError, aiormq.exceptions.AMQPError) as exc:
            reason = str(exc) or type(exc).__name__
            raise BrokerUnreachable(
                f"cannot reach RabbitMQ at {self.display} ({reason}); is the broker running? "
                "(scripts/start-services.sh starts one on 127.0.0.1)"
            ) from None
        self._pub = await self._conn.channel(publisher_confirms=True, on_return_raises=True)  # type: ignore[assignment]

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except _CONNECTION_ERRORS as exc:
                log.debug("closing the broker connection: %s", exc)
        self._conn = self._pub = None
        self._exchanges.clear()
        self._channels.clear()

    def _require(self) -> AbstractRobustConnection:
        if self._conn is None:
            raise RuntimeError("the AMQP transport is not started")
        return self._conn

    async def _exchange(self, channel: AbstractRobustChannel, name: str) -> Any:
        key = (id(channel), name)
        ex = self._exchanges.get(key)
        if ex is None:
            ex = await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
            self._exchanges[key] = ex
        return ex

    # -- publish ------------------------------------------------------------------------------
    async def publish(self, message: Message) -> None:
        self._require()
        assert self._pub is not None
        amqp_msg = encode(message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        reply_deadline = loop.time() + REPLY_ROUTE_WAIT
        while True:
            try:
                exchange = await self._exchange(self._pub, message.exchange)
                await exchange.publish(amqp_msg, routing_key=message.topic, mandatory=True,
                                       timeout=self.publish_timeout)
                return
            except aiormq.exceptions.PublishError:
                if message.topic.startswith("reply_"):
                    # After a reconnection the caller's reply queue may not be re-declared yet.
                    if loop.time() < reply_deadline:
                        await asyncio.sleep(0.2)
                        continue
                    log.warning("reply %s: its caller is gone (no queue %s)", message.correlation_id,
                                message.topic)
                    return
                raise DeliveryError(
                    f"No queue is bound to {message.topic!r} on exchange {message.exchange!r}: "
                    f"is the service consuming it running?"
                ) from None
            except aiormq.exceptions.DeliveryError as exc:  # nacked by the broker
                raise DeliveryError(f"RabbitMQ refused message {message.message_id}: {exc}") from None
            except _CONNECTION_ERRORS as exc:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise DeliveryError(
                        f"RabbitMQ at {self.display} was unreachable for {self.publish_timeout:g} s: "
                        f"message {message.message_id} to {message.topic} not sent ({exc!r})"
                    ) from None
                log.info("publish to %s failed (%r); waiting for the broker", message.topic, exc)
                try:
                    await asyncio.wait_for(self._pub.ready(), remaining)
                except asyncio.TimeoutError:
                    continue

    # -- consume ------------------------------------------------------------------------------
    async def _consumer_channel(self, prefetch: int) -> AbstractRobustChannel:
        """One channel per prefetch value: RabbitMQ applies a channel's QoS to each consumer."""
        async with self._lock:
            channel = self._channels.get(prefetch)
            if channel is None:
                channel = await self._require().channel()  # type: ignore[assignment]
                await channel.set_qos(prefetch_count=prefetch)
                self._channels[prefetch] = channel
            return channel

    async def consume(
        self, exchange: str, topic: str, handler: Handler, *, concurrency: int, exclusive: bool = False
    ) -> Consumer:
        channel = await self._consumer_channel(max(1, concurrency))
        ex = await self._exchange(channel, exchange)
        queue = await channel.declare_queue(
            topic, durable=not exclusive, exclusive=exclusive, auto_delete=exclusive,
        )
        await queue.bind(ex, routing_key=topic)
        consumer = _AmqpConsumer(queue, handler, topic)
        await consumer.start()
        return consumer
