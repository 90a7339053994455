"""The spans file, written by the span export process: every span ended is written once, grouped
as the SDK groups, or counted as dropped; a flush returns only when what came before it is on
disk."""

from __future__ import annotations

import json
import threading
from collections import Counter

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness.otlp_json import via_protobuf
from harness.span_export import SpanExportProcess
from harness.telemetry import Telemetry


def _ended_spans(n: int, services=("nova-api", "keystone")):
    exporter = InMemorySpanExporter()
    tracers = []
    for svc in services:
        provider = TracerProvider(resource=Resource.create({"service.name": svc}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracers.append(provider.get_tracer("harness", schema_url="https://opentelemetry.io/schemas/1.26.0"))
    for i in range(n):
        with tracers[i % len(tracers)].start_as_current_span(f"s{i}", attributes={"i": i}):
            pass
    return exporter.get_finished_spans()


def _writer(tmp_path, **kw):
    counts = {"exported": Counter(), "dropped": Counter()}
    args = {"max_queue": 1000, "send_batch": 64, "delay_ms": 10_000, **kw}
    writer = SpanExportProcess(spans_path=tmp_path / "spans.jsonl", otlp=False, count="file",
                               lock=threading.Lock(), **counts, **args)
    return writer, counts


def _lines(tmp_path):
    return [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]


def _span_ids(request):
    return [sp["spanId"] for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]


def test_lines_are_batches_grouped_by_resource_and_the_same_as_the_protobuf_encoder(tmp_path):
    spans = _ended_spans(150)
    writer, counts = _writer(tmp_path)
    for s in spans:
        writer.submit(s)
    assert writer.force_flush(10_000)
    writer.shutdown()
    got = _lines(tmp_path)
    assert 3 <= len(got) <= 6  # batches of at most 64, sent as the queue fills (and at the flush)
    order = [format(s.context.span_id, "016x") for s in spans]
    written = 0
    for request in got:
        ids = _span_ids(request)
        assert 0 < len(ids) <= 64
        batch = spans[written:written + len(ids)]  # lines are consecutive runs of ended spans
        assert set(ids) == set(order[written:written + len(ids)])
        assert request == via_protobuf(batch)  # each line says what the SDK's encoder says
        written += len(ids)
        services = [a["value"]["stringValue"] for rs in request["resourceSpans"]
                    for a in rs["resource"]["attributes"] if a["key"] == "service.name"]
        assert sorted(services) == sorted(set(services))  # one entry per resource
    assert written == len(spans)
    assert counts["exported"] == {"nova-api": 75, "keystone": 75} and not counts["dropped"]


def test_a_full_queue_counts_the_drops_and_a_flush_writes_the_rest(tmp_path):
    spans = _ended_spans(50, services=("nova-api",))
    writer, counts = _writer(tmp_path, max_queue=20, send_batch=1000)
    for s in spans:  # the sender sleeps 10 s and no batch is full: the queue fills
        writer.submit(s)
    assert counts["dropped"] == {"nova-api": 30}
    assert writer.force_flush(10_000)
    assert counts["exported"] == {"nova-api": 20}
    writer.shutdown()
    writer.submit(spans[0])  # after shutdown: dropped, never written
    assert counts["dropped"] == {"nova-api": 31}
    assert (tmp_path / "spans.jsonl").read_text().count('"spanId"') == 20


def test_telemetry_counters_balance_with_the_file(tmp_path):
    tel = Telemetry(run_dir=tmp_path, use_env_otlp=False)
    tracers = [tel.tracer(s) for s in ("nova-api", "glance")]
    for i in range(500):
        with tracers[i % 2].start_as_current_span("parent"):
            with tracers[(i + 1) % 2].start_as_current_span("child"):
                pass
    counts = tel.shutdown()
    assert counts == {s: {"started": 500, "ended": 500, "exported": 500, "dropped": 0}
                      for s in ("glance", "nova-api")}
    lines = (tmp_path / "spans.jsonl").read_text().splitlines()
    spans = [sp for line in lines for rs in json.loads(line)["resourceSpans"]
             for ss in rs["scopeSpans"] for sp in ss["spans"]]
    assert len(spans) == len({sp["spanId"] for sp in spans}) == 1000
    by_id = {sp["spanId"]: sp for sp in spans}
    children = [sp for sp in spans if sp["name"] == "child"]
    assert all(by_id[c["parentSpanId"]]["name"] == "parent" for c in children)


def test_the_service_processor_is_the_providers_active_one_and_serves_added_processors(tmp_path):
    """Processors added to a service's provider (the latency model's step ledger) still see its
    spans start, end and shut down, after the spans file has them; the tracer's fast path stays on."""
    from opentelemetry.sdk.trace import SpanProcessor

    from harness.telemetry import ServiceSpanProcessor

    class Recorder(SpanProcessor):
        def __init__(self) -> None:
            self.events: list[str] = []

        def on_start(self, span, parent_context=None) -> None:
            self.events.append(f"start {span.name}")

        def on_end(self, span) -> None:
            self.events.append(f"end {span.name}")

        def shutdown(self) -> None:
            self.events.append("shutdown")

    tel = Telemetry(run_dir=tmp_path, use_env_otlp=False)
    tracer = tel.tracer("nova-api")
    provider = tel._providers["nova-api"]
    assert isinstance(provider._active_span_processor, ServiceSpanProcessor) and tracer.fast
    recorder = Recorder()
    provider.add_span_processor(recorder)
    with tracer.start_as_current_span("outer"):
        with tracer.start_as_current_span("inner"):
            pass
    counts = tel.shutdown()
    assert recorder.events == ["start outer", "start inner", "end inner", "end outer", "shutdown"]
    assert counts["nova-api"] == {"started": 2, "ended": 2, "exported": 2, "dropped": 0}


def test_a_value_marshal_cannot_carry_is_written_as_the_encoder_shows_it(tmp_path):
    """A span type that does not clean its attributes (ReadableSpan made by hand) may hold any
    object: the batch still reaches the file, the value as its str, as the in-process encoder
    writes it."""
    from opentelemetry.sdk.trace import ReadableSpan

    from harness.otlp_json import encode_request

    class Odd:
        def __str__(self) -> str:
            return "odd value"

    base = _ended_spans(2, services=("nova-api",))
    spans = [ReadableSpan(name=s.name, context=s.context, parent=s.parent, resource=s.resource,
                          attributes={"odd": Odd(), "ok": 1}, kind=s.kind, start_time=s.start_time,
                          end_time=s.end_time, instrumentation_scope=s.instrumentation_scope)
             for s in base]
    writer, counts = _writer(tmp_path)
    for s in spans:
        writer.submit(s)
    assert writer.force_flush(10_000)
    writer.shutdown()
    assert (tmp_path / "spans.jsonl").read_bytes() == encode_request(spans) + b"\n"
    assert counts["exported"] == {"nova-api": 2}


def test_without_the_export_process_the_file_is_written_in_process(tmp_path):
    """Under gevent (Locust) the exporters stay in the process: the same file, the same counts."""
    tel = Telemetry(run_dir=tmp_path, use_env_otlp=False, export_process=False)
    assert tel.writer is None and tel.file_exporter is not None
    tracer = tel.tracer("nova-api")
    for i in range(300):
        with tracer.start_as_current_span("s", attributes={"i": i}):
            pass
    counts = tel.shutdown()
    assert counts == {"nova-api": {"started": 300, "ended": 300, "exported": 300, "dropped": 0}}
    assert sum(len(_span_ids(r)) for r in _lines(tmp_path)) == 300


def test_light_spans_submitted_light_write_what_the_generic_submit_writes(tmp_path):
    """``submit_light`` (a light span's hand-on: its short record inline, or capture_light's)
    writes the lines ``submit`` writes for the same spans: plain ones, and ones with events,
    links, a status, a remote parent with a trace state."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    from harness.light_span import LightSpan
    from harness.propagation import HarnessPropagator
    from harness.telemetry import ServiceSpanProcessor

    from harness.tracer import HarnessTracer

    ended: list = []
    processor = ServiceSpanProcessor("nova-api", {}, {}, [SimpleSpanProcessor(_Collect(ended))])
    provider = TracerProvider(resource=Resource.create({"service.name": "nova-api"}),
                              active_span_processor=processor)
    tracer = HarnessTracer(provider.get_tracer("harness", schema_url="https://opentelemetry.io/schemas/1.26.0"))
    assert tracer.mode == "light"
    stated = HarnessPropagator().extract({
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=x"})
    for i in range(40):
        with tracer.start_as_current_span(f"s{i}", attributes={"i": i}) as span:
            if i % 5 == 1:
                span.add_event("e", {"k": i})
            if i % 5 == 2:
                span.set_status(Status(StatusCode.ERROR, "x"))
            if i % 5 == 3:
                span.add_link(trace.SpanContext(0x1, 0x2, is_remote=True))
            if i % 5 == 4:
                with tracer.start_as_current_span("remote", context=stated, kind=trace.SpanKind.SERVER):
                    pass
    assert ended and all(type(s) is LightSpan for s in ended)
    texts = []
    for light in (True, False):
        out = tmp_path / ("light" if light else "generic")
        out.mkdir()
        writer, counts = _writer(out, send_batch=16)
        for s in ended:
            (writer.submit_light if light else writer.submit)(s)
        assert writer.force_flush(10_000)
        writer.shutdown()
        assert counts["exported"] == {"nova-api": len(ended)} and not counts["dropped"]
        texts.append((out / "spans.jsonl").read_text())
    assert texts[0] == texts[1]


class _Collect:
    """A span exporter keeping what it gets (the spans themselves)."""

    def __init__(self, into: list) -> None:
        self.into = into

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.into.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass
