"""The sweep-based request timeout: overdue requests raise TimeoutError, others are untouched,
an outside cancellation still wins, and the REST client's calls are bounded by it."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from harness.latency import LatencyModel, load_profile
from harness.services import request_timeout
from harness.services.request_timeout import RequestTimeouts
from harness.services.rest import HttpError, RestClient


@pytest.fixture(autouse=True)
def fast_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_timeout, "SWEEP_S", 0.02)


async def test_overdue_work_raises_timeout_and_leaves_the_task_uncancelled() -> None:
    timeouts = RequestTimeouts(0.1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        with timeouts.limit():
            await asyncio.sleep(5)
    waited = time.monotonic() - t0
    assert 0.1 <= waited < 2.0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # no cancellation left pending on the task


async def test_work_within_the_timeout_is_untouched_and_sweeping_stops() -> None:
    timeouts = RequestTimeouts(1.0)

    async def quick(i: int) -> int:
        with timeouts.limit():
            await asyncio.sleep(0.01)
        return i

    assert await asyncio.gather(*(quick(i) for i in range(20))) == list(range(20))
    assert not timeouts._due and not timeouts._expired
    await asyncio.sleep(0.1)
    assert timeouts._sweeper is None  # idle: no timer left running


async def test_an_outside_cancellation_propagates_as_cancellation() -> None:
    timeouts = RequestTimeouts(0.05)
    entered = asyncio.Event()

    async def work() -> None:
        with timeouts.limit():
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(work())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_rest_client_call_to_a_silent_server_times_out_in_an_error_span() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # reads the request's first byte, never answers
        await asyncio.sleep(10)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = RestClient(provider.get_tracer("t"), LatencyModel(load_profile("zero"), seed=1),
                        user_agent="test", timeout=0.2)
    try:
        with pytest.raises(HttpError) as info:
            await client.request("GET", f"http://127.0.0.1:{port}/v2/images", template="/v2/images")
        assert isinstance(info.value, TimeoutError)
    finally:
        await client.close()
        server.close()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "TimeoutError"


def test_a_client_reused_on_a_new_loop_still_times_out() -> None:
    """A sweeper left pending on a closed loop must not stop the next loop's sweeps."""
    timeouts = RequestTimeouts(0.1)

    async def slow() -> None:
        with timeouts.limit():
            await asyncio.sleep(5)

    async def quick() -> None:
        with timeouts.limit():
            await asyncio.sleep(0)

    asyncio.run(quick())  # leaves a sweeper scheduled on a loop that is then closed
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(slow())
    assert time.monotonic() - t0 < 2.0
