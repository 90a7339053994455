"""The span export process: it exports over OTLP as well as to the file, it never outlives the
cloud's process, and when it dies the spans it did not write are counted as dropped, loudly."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from harness.telemetry import Telemetry
from tests.real.otlp_receiver import HttpReceiver
from tests.spanfile import read_spans


def _spans(tel: Telemetry, n: int, service: str = "nova-api") -> None:
    tracer = tel.tracer(service)
    for i in range(n):
        with tracer.start_as_current_span(f"span {i}", attributes={"i": i}):
            pass


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # exited (a zombie until whoever adopted it reaps it)


def test_spans_go_to_the_file_and_over_otlp_from_the_child(tmp_path, monkeypatch):
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        tel = Telemetry(run_dir=tmp_path)
        assert tel.writer is not None and tel.otlp_exporter is None  # both in the child
        _spans(tel, 300)
        _spans(tel, 100, service="glance-api")
        counts = tel.shutdown()
        received = receiver.spans()
    assert counts == {"nova-api": {"started": 300, "ended": 300, "exported": 300, "dropped": 0},
                      "glance-api": {"started": 100, "ended": 100, "exported": 100, "dropped": 0}}
    in_file = read_spans(tmp_path / "spans.jsonl")
    assert {s.span_id for s in received} == {s.span_id for s in in_file} and len(in_file) == 400
    assert {s.service for s in received} == {"nova-api", "glance-api"}
    by_id = {s.span_id: s for s in in_file}
    assert all(by_id[s.span_id].name == s.name and by_id[s.span_id].attrs == s.attrs for s in received)


def test_without_a_file_the_otlp_export_is_what_is_counted(tmp_path, monkeypatch):
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint + "/v1/traces")
        tel = Telemetry(run_dir=None)
        _spans(tel, 50)
        tel.force_flush()
        assert tel.counters()["nova-api"]["exported"] == 50  # a flush waits for the collector
        counts = tel.shutdown()
        assert len(receiver.spans()) == 50
    assert counts["nova-api"] == {"started": 50, "ended": 50, "exported": 50, "dropped": 0}


def test_a_dead_child_costs_spans_counted_as_dropped_and_logged_once(tmp_path, caplog):
    tel = Telemetry(run_dir=tmp_path, use_env_otlp=False)
    _spans(tel, 10)
    tel.force_flush()
    assert tel.writer is not None
    os.kill(tel.writer.pid, signal.SIGKILL)
    with caplog.at_level(logging.ERROR):
        _spans(tel, 20)
        assert not tel.writer.force_flush(10_000)
        _spans(tel, 5)
        counts = tel.shutdown()
    assert counts["nova-api"] == {"started": 35, "ended": 35, "exported": 10, "dropped": 25}
    assert tel.dropped["nova-api"] == 25  # sent but not written, or submitted after it died
    gone = [r for r in caplog.records if "span export process" in r.getMessage()]
    assert len(gone) == 1, [r.getMessage() for r in gone]
    assert len(read_spans(tmp_path / "spans.jsonl")) == 10


def test_spans_queued_as_shutdown_begins_are_written_not_lost(tmp_path):
    """The sender's last round: its wait times out just as shutdown sets the stop flag. Spans
    still queued then must be sent (once, a CI run lost 5 here), never silently left behind."""
    tel = Telemetry(run_dir=tmp_path, use_env_otlp=False)
    writer = tel.writer
    assert writer is not None
    _spans(tel, 10)
    assert writer.force_flush(10_000)

    class LateWake(threading.Event):
        """Returns "not asked" only once shutdown has set the stop flag: the racy interleaving."""

        def wait(self, timeout=None):
            while not writer._stopping:
                time.sleep(0.002)
            return False

    writer._wake = LateWake()
    writer._delay = 3600.0  # and no scheduled send is due
    _spans(tel, 30)
    writer.shutdown(timeout_s=1)  # its flush times out (the sender is held), then it stops
    assert len(read_spans(tmp_path / "spans.jsonl")) == 40
    assert tel.dropped["nova-api"] == 0


def test_the_child_ignores_a_terminal_interrupt(tmp_path):
    """Ctrl-C reaches the whole process group: the child stays until the cloud has flushed."""
    tel = Telemetry(run_dir=tmp_path, use_env_otlp=False)
    _spans(tel, 10)
    assert tel.writer is not None and tel.writer.force_flush(10_000)
    os.kill(tel.writer.pid, signal.SIGINT)
    os.kill(tel.writer.pid, signal.SIGTERM)
    _spans(tel, 10)
    counts = tel.shutdown()
    assert counts["nova-api"]["exported"] == 20


def test_the_child_exits_with_its_parent_even_on_sigkill_and_keeps_what_it_got(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        from harness.telemetry import Telemetry
        tel = Telemetry(run_dir=Path(sys.argv[1]), use_env_otlp=False)
        tracer = tel.tracer("nova-api")
        for i in range(100):
            with tracer.start_as_current_span("before the kill"):
                pass
        tel.force_flush()
        print(tel.writer.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    child = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 20
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
    assert len(read_spans(tmp_path / "spans.jsonl")) == 100


def test_a_cloud_pays_little_to_start_its_export_process(tmp_path):
    """The child's start-up (interpreter, orjson, the encoder; no OpenTelemetry SDK without OTLP)
    runs beside the cloud; its CPU stays small because tests start many clouds."""
    t0 = time.perf_counter()
    tel = Telemetry(run_dir=tmp_path, use_env_otlp=False)
    started = time.perf_counter() - t0
    _spans(tel, 1)
    assert tel.writer is not None and tel.writer.force_flush(30_000)
    pid = tel.writer.pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tel.shutdown()
    assert started < 0.5  # Popen only: the cloud does not wait for the child's imports
    assert cpu_s < 1.0, cpu_s  # ~0.06 s on the 2-core box; generous for a busy one
