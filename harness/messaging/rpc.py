"""Traced ``rpc.call`` and ``rpc.cast`` over any :class:`~harness.messaging.base.Transport`.

Span shapes follow the OpenTelemetry messaging conventions: the caller's span is ``call <topic>``
(CLIENT, it waits for the reply) or ``cast <topic>`` (PRODUCER); the server's span is
``receive <topic>`` (CONSUMER), which *starts when the message was sent*, so its duration holds the
time the message waited in the queue (also recorded as ``messaging.harness.queue_wait_ms``) plus
the step's modeled delay. The server's work runs as children of the receive span. Boot steps are
given per method by the services, so the RPC layer itself hard-codes no step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, AsyncContextManager, Awaitable, Callable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation import _SPAN_KEY

from harness.latency import LatencyModel
from harness.messaging.base import Consumer, Message, Transport, uuid4_hex
from harness.steps import Step
from harness.propagation import baggage_step
from harness.telemetry import STEP_ATTRS, extract_context, inject_headers, mark_error
# the runtime context's own set/reset (the context variable itself by default), as CurrentSpan uses
from harness.tracer import _context_log, _cv_reset, _cv_set

log = logging.getLogger(__name__)


class RpcError(Exception):
    """The remote method raised; the message is the remote error's text."""


class RpcTimeout(RpcError):
    """No reply within ``rpc_response_timeout`` (oslo.messaging's MessagingTimeout)."""


class MessageLost(Exception):
    """Raised by a send step when the broker is to lose the message (an injected fault, see
    :mod:`harness.faults`): the message is not published; a call then times out."""


def _template(topic: str) -> str:
    return "compute.{host}" if topic.startswith("compute.") else topic


def _send_attrs(transport: Transport, msg: Message, op: str, step: Step | None) -> dict[str, Any]:
    attrs = {
        "messaging.system": transport.system,
        "messaging.operation.type": "send",
        "messaging.operation.name": op,
        "messaging.destination.name": msg.topic,
        "messaging.destination.template": _template(msg.topic),
        "messaging.message.id": msg.message_id,
        "messaging.rabbitmq.destination.routing_key": msg.topic,
        "openstack.rpc.exchange": msg.exchange,
        "openstack.rpc.method": msg.method,
    }
    if step is not None:
        attrs.update(STEP_ATTRS[step])
    return attrs


def _sending(latency: LatencyModel, step: Step | None) -> AsyncContextManager[Any]:
    """A send step's timing around its publish (its modeled time ends when the message leaves)."""
    return latency.step(step, finish=False) if step is not None else nullcontext()


_NO_ATTRS: dict[str, Any] = {}


def _attrs_for(step: Step | None) -> dict[str, Any]:
    """The step's attributes to merge into a span's (shared: never written to)."""
    return STEP_ATTRS[step] if step is not None else _NO_ATTRS


class RpcClient:
    """The caller's side: ``call`` (waits for the reply) and ``cast`` (fire and forget)."""

    def __init__(
        self,
        transport: Transport,
        tracer: trace.Tracer,
        latency: LatencyModel,
        *,
        exchange: str,
        timeout: float,
    ) -> None:
        self.transport, self.tracer, self.latency = transport, tracer, latency
        self.exchange, self.timeout = exchange, timeout
        self._reply_topic = f"reply_{uuid4_hex()}"
        self._pending: dict[str, tuple[asyncio.Future, Step | None]] = {}
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        self._consumer = await self.transport.consume(
            self.exchange, self._reply_topic, self._on_reply, concurrency=64, exclusive=True
        )

    async def stop(self) -> None:
        if self._consumer:
            await self._consumer.stop()
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(RpcError("RPC client stopped"))

    async def _on_reply(self, reply: Message) -> None:
        entry = self._pending.pop(reply.correlation_id or "", None)
        if entry is None:
            log.warning("reply %s arrived after its caller gave up", reply.correlation_id)
            return
        fut, _ = entry
        if not fut.done():
            fut.set_result(reply)

    async def cast(self, topic: str, method: str, args: dict[str, Any], *, step: Step | None = None) -> None:
        msg = Message(exchange=self.exchange, topic=topic, method=method, args=args)
        with self.tracer.start_as_current_span(
            f"cast {_template(topic)}",
            kind=SpanKind.PRODUCER,
            attributes=_send_attrs(self.transport, msg, "cast", step),
        ):
            try:
                async with _sending(self.latency, step) as timing:  # the step's time ends with the publish
                    inject_headers(msg.headers, step=step)
                    msg.sent_at_ns = time.time_ns()
                    if timing is not None:
                        timing.sent(msg.sent_at_ns)
                    await self.transport.publish(msg)
            except MessageLost:  # the span holds the fault; nobody hears of this cast
                return

    async def call(
        self,
        topic: str,
        method: str,
        args: dict[str, Any],
        *,
        step: Step | None = None,
        reply_step: Step | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send and wait for the reply; raises :class:`RpcTimeout` or :class:`RpcError`."""
        timeout = self.timeout if timeout is None else timeout
        msg = Message(
            exchange=self.exchange, topic=topic, method=method, args=args,
            reply_to=self._reply_topic, correlation_id=uuid4_hex(),
        )
        attrs = _send_attrs(self.transport, msg, "call", step)
        attrs["messaging.message.conversation_id"] = msg.correlation_id
        with self.tracer.start_as_current_span(
            f"call {_template(topic)}", kind=SpanKind.CLIENT, attributes=attrs
        ) as span:
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[msg.correlation_id] = (fut, reply_step)
            try:
                async with _sending(self.latency, step) as timing:  # the step's time ends with the publish
                    inject_headers(msg.headers, step=step)
                    msg.sent_at_ns = time.time_ns()
                    if timing is not None:
                        timing.sent(msg.sent_at_ns)
                    await self.transport.publish(msg)
            except MessageLost:  # never published: the call times out, as a lost one does
                pass
            except BaseException:  # not sent (e.g. the broker is away): no reply to wait for
                self._pending.pop(msg.correlation_id, None)
                raise
            try:
                reply: Message = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                self._pending.pop(msg.correlation_id, None)
                text = f"Timed out waiting for a reply to message ID {msg.message_id}"
                mark_error(span, text, event="rpc.timeout", topic=topic, method=method)
                raise RpcTimeout(text) from None
            finally:
                self._pending.pop(msg.correlation_id, None)
            await self._receive_reply(reply, reply_step)
            if reply.failure is not None:
                mark_error(span, reply.failure)
                raise RpcError(reply.failure)
            return reply.result

    async def _receive_reply(self, reply: Message, step: Step | None) -> None:
        """The reply's receive span: from when it was sent to when the caller has it."""
        if step is None:
            return
        parent = extract_context(reply.headers)
        taken_ns = time.time_ns()
        wait_ms = (taken_ns - reply.sent_at_ns) / 1e6
        with self.tracer.start_as_current_span(
            "receive reply",
            context=parent,
            kind=SpanKind.CONSUMER,
            start_time=reply.sent_at_ns,
            attributes={
                "messaging.system": self.transport.system,
                "messaging.operation.type": "receive",
                "messaging.operation.name": "receive",
                "messaging.destination.name": self._reply_topic,
                "messaging.destination.template": "reply_{id}",
                "messaging.message.id": reply.message_id,
                "messaging.message.conversation_id": reply.correlation_id or "",
                "messaging.harness.queue_wait_ms": wait_ms,
                **STEP_ATTRS[step],
            },
        ):  # the tracer's context manager: no generator-based ``use_span`` around the span
            await self.latency.delay(step, since_ns=taken_ns)  # its time starts when it is taken


Endpoint = Callable[..., Awaitable[Any]]


@dataclass
class Method:
    """A method a server exposes, with the boot steps of receiving it and replying to it.

    The steps apply when the message was sent as ``caller_step`` (the caller's step travels in the
    message's baggage); the same method called outside a boot (conductor's ``instance_get`` during
    a delete) is traced without step numbers. ``caller_step=None``: always those steps.
    """

    func: Endpoint
    receive_step: Step | None = None
    reply_step: Step | None = None
    caller_step: Step | None = None

    def steps_for(self, caller: str | None) -> tuple[Step | None, Step | None]:
        if self.caller_step is not None and caller != str(int(self.caller_step)):
            return None, None
        return self.receive_step, self.reply_step


@dataclass
class RpcServer:
    """The callee's side: consumes one topic and runs its methods, at most ``workers`` at once.

    ``service`` names the consumer for fault injection (:mod:`harness.faults`): while it is
    "down" its messages stay in the queue; faults at its door or in a receive step fail the
    message (a call gets the failure as its remote error; a failed cast is logged).
    """

    transport: Transport
    tracer: trace.Tracer
    latency: LatencyModel
    exchange: str
    topic: str
    methods: dict[str, Method]
    workers: int
    service: str = ""
    _consumer: Consumer | None = field(default=None, init=False)

    async def start(self) -> None:
        self._consumer = await self.transport.consume(
            self.exchange, self.topic, self._handle, concurrency=self.workers
        )

    async def stop(self) -> None:
        if self._consumer:
            await self._consumer.stop()

    async def _handle(self, msg: Message) -> None:
        faults = getattr(self.latency, "faults", None) if self.service else None
        down, held_s = await faults.wait_up(self.service) if faults is not None else (None, 0.0)
        method = self.methods.get(msg.method)
        parent = extract_context(msg.headers)
        taken_ns = time.time_ns()
        wait_ms = (taken_ns - msg.sent_at_ns) / 1e6
        step, reply_step = (
            method.steps_for(baggage_step(parent)) if method else (None, None)
        )
        span = self.tracer.start_span(
            f"receive {_template(self.topic)}",
            context=parent,
            kind=SpanKind.CONSUMER,
            start_time=msg.sent_at_ns,
            attributes={
                "messaging.system": self.transport.system,
                "messaging.operation.type": "receive",
                "messaging.operation.name": "receive",
                "messaging.destination.name": msg.topic,
                "messaging.destination.template": _template(msg.topic),
                "messaging.message.id": msg.message_id,
                "messaging.consumer.group.name": self.topic,
                "messaging.harness.queue_wait_ms": wait_ms,
                "openstack.rpc.method": msg.method,
                **_attrs_for(step),
            },
        )
        # current for the method (trace.set_span_in_context + attach, without the API's calls)
        values = parent.copy()
        values[_SPAN_KEY] = span
        token = _cv_set(Context(values))
        result: Any = None
        failure: str | None = None
        try:
            try:  # the span is current already (``ctx``): only ended here, as ``use_span`` would
                if down is not None:  # the message waited in the queue while we were down
                    span.add_event("fault.service_down", {"harness.fault.id": down.id,
                                                          "harness.fault.service": self.service,
                                                          "held_s": held_s})
                try:
                    if faults is not None:
                        await faults.at_door(self.service, span, rpc=True)
                    if step is not None:  # its time starts when it is taken
                        await self.latency.delay(step, since_ns=taken_ns)
                except Exception as exc:  # a fault taking the message: the method never runs
                    failure = f"{type(exc).__name__}: {exc}"
                if method is None and failure is None:
                    failure = f"Endpoint does not support RPC method {msg.method}"
                    mark_error(span, failure)
            except Exception as exc:
                span.record_exception(exc)
                mark_error(span, f"{type(exc).__name__}: {exc}")
                raise
            finally:
                span.end()
            if method is not None and failure is None:
                try:
                    result = await method.func(**msg.args)
                except Exception as exc:  # a remote error travels back to the caller
                    failure = f"{type(exc).__name__}: {exc}"
            if msg.reply_to is None and failure is not None:
                log.warning("cast %s.%s failed: %s", self.topic, msg.method, failure)
            if msg.reply_to is not None:
                try:
                    await self._reply(msg, result, failure, reply_step)
                except (MessageLost, RpcError) as exc:  # the reply is lost: the caller times out
                    log.warning("reply to %s.%s lost: %s", self.topic, msg.method, exc)
        finally:
            try:  # as the API's detach: a failure is logged, never raised
                _cv_reset(token)
            except Exception:
                _context_log.exception("Failed to detach context")

    async def _reply(self, msg: Message, result: Any, failure: str | None, step: Step | None) -> None:
        reply = Message(
            exchange=msg.exchange, topic=msg.reply_to or "", method="reply", args={},
            correlation_id=msg.correlation_id, result=result, failure=failure,
        )
        attrs = {
            "messaging.system": self.transport.system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "reply",
            "messaging.destination.name": reply.topic,
            "messaging.destination.template": "reply_{id}",
            "messaging.message.id": reply.message_id,
            "messaging.message.conversation_id": msg.correlation_id or "",
            **_attrs_for(step),
        }
        with self.tracer.start_as_current_span("send reply", kind=SpanKind.PRODUCER, attributes=attrs):
            async with _sending(self.latency, step) as timing:  # a fault here (lost, error) loses the reply
                inject_headers(reply.headers)
                reply.sent_at_ns = time.time_ns()
                if timing is not None:
                    timing.sent(reply.sent_at_ns)
                await self.transport.publish(reply)
