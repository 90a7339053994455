"""The RabbitMQ transport against a real broker: wire format, Nova's queue layout, traced call and
cast, prefetch-bounded concurrency, timeouts and clear errors."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from harness.latency import LatencyModel, load_profile
from harness.messaging import RpcClient, RpcServer, RpcTimeout, make_transport
from harness.messaging.amqp import AmqpTransport, BrokerUnreachable, DeliveryError
from harness.messaging.rpc import Method
from harness.steps import ATTR_STEP, Step


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


@pytest.fixture
async def transport(amqp_url):
    t = make_transport(amqp_url)
    assert isinstance(t, AmqpTransport)
    await t.start()
    yield t
    await t.close()


def _latency() -> LatencyModel:
    return LatencyModel(load_profile("zero"), seed=7)


async def test_call_and_cast_cross_the_broker_traced(transport, spans, amqp_url):
    tracer, exporter = spans
    casts: list[dict] = []
    got_cast = asyncio.Event()

    async def select(spec):
        return {"host": "compute-1", "echo": spec}

    async def build(instance_uuid):
        casts.append({"instance_uuid": instance_uuid})
        got_cast.set()

    sched = RpcServer(transport=transport, tracer=tracer, latency=_latency(), exchange="nova",
                      topic="scheduler", workers=2,
                      methods={"select_destinations": Method(select, receive_step=Step.SCHEDULER_RECEIVE)})
    compute = RpcServer(transport=transport, tracer=tracer, latency=_latency(), exchange="nova",
                        topic="compute.compute-1", workers=10,
                        methods={"build_and_run_instance": Method(build)})
    client = RpcClient(transport, tracer, _latency(), exchange="nova", timeout=10)
    for part in (sched, compute, client):
        await part.start()
    try:
        with tracer.start_as_current_span("boot") as root:
            result = await client.call("scheduler", "select_destinations",
                                       {"spec": {"vcpus": 1, "names": ["a", "b"]}},
                                       step=Step.SCHEDULE_CALL)
            await client.cast("compute.compute-1", "build_and_run_instance", {"instance_uuid": "u-1"})
        await asyncio.wait_for(got_cast.wait(), 10)
    finally:
        for part in (client, compute, sched):
            await part.stop()
    assert result == {"host": "compute-1", "echo": {"vcpus": 1, "names": ["a", "b"]}}
    assert casts == [{"instance_uuid": "u-1"}]

    # Nova's layout: topic exchange "nova", durable queues named after the topics
    conn = await aio_pika.connect(amqp_url)
    try:
        ch = await conn.channel()
        await ch.declare_exchange("nova", aio_pika.ExchangeType.TOPIC, durable=True, passive=True)
        for name in ("scheduler", "compute.compute-1"):
            q = await ch.declare_queue(name, passive=True)
            assert q.declaration_result.message_count == 0  # all acknowledged
    finally:
        await conn.close()

    finished = exporter.get_finished_spans()
    call = next(s for s in finished if s.name == "call scheduler")
    receive = next(s for s in finished if s.name == "receive scheduler")
    cast = next(s for s in finished if s.name == "cast compute.{host}")
    receive_cast = next(s for s in finished if s.name == "receive compute.{host}")
    trace_id = root.get_span_context().trace_id
    # trace context crossed the broker in the message headers
    assert receive.parent.span_id == call.context.span_id
    assert receive_cast.parent.span_id == cast.context.span_id
    assert {s.context.trace_id for s in (call, receive, cast, receive_cast)} == {trace_id}
    assert call.kind == SpanKind.CLIENT and receive.kind == SpanKind.CONSUMER
    for s in (call, receive, cast, receive_cast):
        assert s.attributes["messaging.system"] == "rabbitmq"
        assert s.attributes["messaging.message.id"]
    assert call.attributes["messaging.operation.type"] == "send"
    assert receive.attributes["messaging.operation.type"] == "receive"
    assert receive.attributes["messaging.destination.name"] == "scheduler"
    assert receive_cast.attributes["messaging.destination.template"] == "compute.{host}"
    # the message id and the baggage step travelled: the receiver knows its boot step
    assert receive.attributes["messaging.message.id"] == call.attributes["messaging.message.id"]
    assert receive.attributes[ATTR_STEP] == int(Step.SCHEDULER_RECEIVE)
    # queue wait is measured from the send time carried in the headers
    assert receive.attributes["messaging.harness.queue_wait_ms"] >= 0
    assert receive.start_time <= receive.end_time


async def test_prefetch_bounds_concurrency_and_queue_wait_is_real(transport, spans):
    tracer, exporter = spans
    running = peak = 0

    async def work(i):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.2)
        running -= 1
        return i

    server = RpcServer(transport=transport, tracer=tracer, latency=_latency(), exchange="nova",
                       topic="conductor", workers=2, methods={"work": Method(work)})
    client = RpcClient(transport, tracer, _latency(), exchange="nova", timeout=30)
    await server.start()
    await client.start()
    try:
        results = await asyncio.gather(*(client.call("conductor", "work", {"i": i}) for i in range(6)))
    finally:
        await client.stop()
        await server.stop()
    assert sorted(results) == list(range(6))
    assert peak == 2, f"prefetch 2 must bound the handlers running at once, saw {peak}"
    waits = sorted(s.attributes["messaging.harness.queue_wait_ms"]
                   for s in exporter.get_finished_spans() if s.name == "receive conductor")
    assert len(waits) == 6
    # two at a time, 0.2 s each: the last pair waited in the broker's queue about 0.4 s
    assert waits[-1] >= 300, waits


async def test_call_times_out_and_unroutable_fails_fast(transport, spans):
    tracer, _ = spans

    async def never(**_):
        await asyncio.sleep(30)

    server = RpcServer(transport=transport, tracer=tracer, latency=_latency(), exchange="nova",
                       topic="scheduler", workers=1, methods={"select_destinations": Method(never)})
    client = RpcClient(transport, tracer, _latency(), exchange="nova", timeout=30)
    await server.start()
    await client.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(RpcTimeout, match="Timed out waiting for a reply"):
            await client.call("scheduler", "select_destinations", {}, timeout=0.5)
        assert time.monotonic() - t0 < 5
        t0 = time.monotonic()
        with pytest.raises(DeliveryError, match="compute.nowhere"):
            await client.cast("compute.nowhere", "build_and_run_instance", {})
        assert time.monotonic() - t0 < 5
    finally:
        await client.stop()
        await server.stop()


async def test_unreachable_broker_is_a_clear_error():
    # a port nothing listens on (the broker is not needed for this test)
    t = AmqpTransport("amqp://guest:guest@127.0.0.1:1/?connect_timeout=3")
    with pytest.raises(BrokerUnreachable, match=r"cannot reach RabbitMQ at 127\.0\.0\.1:1/"):
        await t.start()


def test_transport_url_forms():
    assert make_transport("rabbit://u:p@127.0.0.1:5672/").system == "rabbitmq"
    with pytest.raises(ValueError, match="only one broker host"):
        AmqpTransport("rabbit://u:p@h1:5672,u:p@h2:5672/")
    with pytest.raises(ValueError, match="publish_timeout must be"):
        AmqpTransport("amqp://u:p@h1:5672/?publish_timeout=soon")
