import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness.latency import LatencyModel, load_profile
from harness.messaging import RpcClient, RpcError, RpcServer, RpcTimeout
from harness.messaging.memory import MemoryTransport
from harness.messaging.rpc import Method
from harness.steps import Step


@pytest.fixture
def rig():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return MemoryTransport(), provider.get_tracer("t"), LatencyModel(load_profile("zero"), seed=1), exporter


async def test_call_cast_and_queue_wait(rig):
    transport, tracer, latency, exporter = rig
    seen = []

    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0.05)
        return a + b

    async def note(x: str) -> None:
        seen.append(x)

    server = RpcServer(transport=transport, tracer=tracer, latency=latency, exchange="nova", topic="calc",
                       methods={"add": Method(add, receive_step=Step.SCHEDULER_RECEIVE), "note": Method(note)},
                       workers=1)
    client = RpcClient(transport, tracer, latency, exchange="nova", timeout=5)
    await server.start()
    await client.start()
    # two calls with one worker: the second waits ~50 ms in the queue
    results = await asyncio.gather(
        client.call("calc", "add", {"a": 1, "b": 2}, step=Step.SCHEDULE_CALL),
        client.call("calc", "add", {"a": 3, "b": 4}, step=Step.SCHEDULE_CALL),
    )
    await client.cast("calc", "note", {"x": "hi"})
    await asyncio.sleep(0.05)
    await client.stop()
    await server.stop()
    assert results == [3, 7] and seen == ["hi"]
    receives = [s for s in exporter.get_finished_spans() if s.name == "receive calc"]
    waits = sorted(s.attributes["messaging.harness.queue_wait_ms"] for s in receives)
    assert waits[-1] >= 40  # the queued one
    stepped = [s for s in receives if s.attributes.get("openstack.boot.step") == 9]
    assert len(stepped) == 2  # caller step 8 -> receive step 9


async def test_timeout_and_remote_error(rig):
    transport, tracer, latency, _ = rig

    async def slow() -> None:
        await asyncio.sleep(1)

    async def boom() -> None:
        raise ValueError("no good")

    server = RpcServer(transport=transport, tracer=tracer, latency=latency, exchange="nova", topic="t",
                       methods={"slow": Method(slow), "boom": Method(boom)}, workers=4)
    client = RpcClient(transport, tracer, latency, exchange="nova", timeout=0.1)
    await server.start()
    await client.start()
    with pytest.raises(RpcTimeout):
        await client.call("t", "slow", {})
    with pytest.raises(RpcError, match="ValueError: no good"):
        await client.call("t", "boom", {})
    with pytest.raises(RpcError, match="does not support RPC method"):
        await client.call("t", "nope", {})
    await client.stop()
    await server.stop()
