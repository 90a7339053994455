"""CPU to record one span in a service: start, attributes, end, the provider's span processor.

The provider is built as :class:`harness.telemetry.Telemetry` builds a service's (its
:class:`~harness.telemetry.ServiceSpanProcessor` as the active processor) but with no spans file,
so the figure is recording alone (encoding is :mod:`harness.otlp_json`'s, measured apart).
Each case runs ``--n`` spans ``--repeats`` times; the best run counts (other work on a shared box
only ever slows a run down).

    python bench/span_record.py              # the harness tracer and the SDK's, side by side
    python bench/span_record.py --n 50000 --repeats 9
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from harness.telemetry import ServiceSpanProcessor  # noqa: E402
from harness.tracer import HarnessTracer  # noqa: E402

ATTRS = {  # what a server span starts with (harness/services/http.py)
    "http.request.method": "POST",
    "url.path": "/v2.1/servers",
    "url.scheme": "http",
    "server.address": "127.0.0.1",
    "server.port": 8774,
    "client.address": "127.0.0.1",
    "network.protocol.version": "1.1",
}


def _tracers() -> tuple[trace.Tracer, HarnessTracer]:
    processor = ServiceSpanProcessor("bench", {}, {}, ())  # plain dicts, as Telemetry counts
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}),
                              active_span_processor=processor)  # type: ignore[arg-type]
    sdk = provider.get_tracer("harness", schema_url="https://opentelemetry.io/schemas/1.26.0")
    return sdk, HarnessTracer(sdk)


def _start_end(tracer: trace.Tracer) -> Callable[[int], None]:
    def run(n: int) -> None:
        start = tracer.start_span
        for _ in range(n):
            span = start("POST", None, SpanKind.SERVER, ATTRS)
            span.set_attributes({"http.route": "/v2.1/servers", "http.response.status_code": 202})
            span.end()
    return run


def _as_current(tracer: trace.Tracer) -> Callable[[int], None]:
    def run(n: int) -> None:
        cm = tracer.start_as_current_span
        for _ in range(n):
            with cm("POST", kind=SpanKind.SERVER, attributes=ATTRS) as span:
                span.set_attribute("http.response.status_code", 202)
    return run


def _nested(tracer: trace.Tracer) -> Callable[[int], None]:
    """A child under a current parent (the parent is looked up in the context)."""
    def run(n: int) -> None:
        cm = tracer.start_as_current_span
        with cm("parent"):
            for _ in range(n):
                with cm("child", attributes={"openstack.boot.step": 5, "openstack.boot.phase": "api"}):
                    pass
    return run


def _best_us(run: Callable[[int], None], n: int, repeats: int) -> float:
    run(min(n, 2000))  # warm up
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t0 = time.process_time()
        run(n)
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="spans per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs per case (best counts)")
    args = parser.parse_args(argv)
    sdk, ours = _tracers()
    mode: Any = getattr(ours, "mode", None) or ("fast" if getattr(ours, "fast", False) else "sdk")
    print(f"harness tracer path: {mode}")
    cases = [("start_span + 2 late attributes + end, 7 attributes", _start_end),
             ("start_as_current_span, 7 attributes + 1", _as_current),
             ("start_as_current_span under a current parent, 2 attributes", _nested)]
    for title, make in cases:
        theirs = _best_us(make(sdk), args.n, args.repeats)
        mine = _best_us(make(ours), args.n, args.repeats)
        print(f"{title:60s} SDK {theirs:6.2f} us   harness {mine:6.2f} us")


if __name__ == "__main__":
    main()
