"""No lost spans, or a loud report of them: the counters catch what the SDK drops."""

from __future__ import annotations

import logging
import threading
import time

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from harness import telemetry
from harness.telemetry import Telemetry


class SlowExporter(SpanExporter):
    """An exporter that cannot keep up (a collector far away)."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def export(self, spans):
        self.gate.wait(2)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.gate.set()


def test_a_full_queue_drops_spans_and_the_drop_is_counted_and_logged(monkeypatch, caplog):
    monkeypatch.setattr(telemetry, "MAX_QUEUE_SIZE", 8)
    monkeypatch.setattr(telemetry, "MAX_EXPORT_BATCH", 4)
    exporter = SlowExporter()
    tel = Telemetry(run_dir=None, extra_exporters=[exporter], use_env_otlp=False)
    tracer = tel.tracer("nova-api")
    for i in range(200):
        with tracer.start_as_current_span(f"span {i}"):
            pass
    exporter.gate.set()
    with caplog.at_level(logging.ERROR, logger="harness.telemetry"):
        counts = tel.shutdown()
    c = counts["nova-api"]
    assert c["started"] == c["ended"] == 200
    assert c["exported"] < 200 and c["dropped"] == 200 - c["exported"] > 0
    assert any("spans were dropped" in r.getMessage() for r in caplog.records)


def test_a_sized_queue_under_a_burst_drops_nothing(tmp_path):
    tel = Telemetry(run_dir=tmp_path, use_env_otlp=False)
    tracers = [tel.tracer(s) for s in ("nova-api", "nova-compute", "keystone")]
    t0 = time.perf_counter()
    for i in range(20000):  # ~500 boots' worth of spans at once
        with tracers[i % 3].start_as_current_span("burst"):
            pass
    counts = tel.shutdown()
    assert time.perf_counter() - t0 < 60
    for svc, c in counts.items():
        assert c["started"] == c["ended"] == c["exported"] and c["dropped"] == 0, (svc, c)
    lines = (tmp_path / "spans.jsonl").read_text().count('"spanId"')
    assert lines == 20000
