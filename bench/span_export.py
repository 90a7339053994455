"""CPU the spans file costs per span: in the cloud's process (the span's thread and all of the
process) and in the span export process, plus the export process's start-up.

Spans like a boot's (a 9-attribute SERVER span and a 2-attribute child, alternating over three
services) are recorded through :class:`harness.telemetry.Telemetry`'s tracer twice: without a
spans file (recording alone) and with one; the difference is what exporting costs the cloud. The
child's CPU comes from /proc after a flush. Each case runs ``--n`` spans ``--repeats`` times; the
best run counts (other work on a shared box only ever slows a run down).

    python bench/span_export.py
    python bench/span_export.py --n 20000 --repeats 9

Figures (2-core box, 2026-11-25, light spans): the spans file cost the span's thread 6.6-7.0 us
a span and the process 7.5-8.0 us when each span was encoded as it ended (commit a399dc7);
with the export process 2.4-2.6 us and 2.5-2.8 us; the child ~4-5 us a span here (~10 us in
the running cloud: 0.6 ms a boot of ``bench/bench_capacity.py``), on the other core; its start-up
~40-50 ms of CPU. With the light spans' own capture (``capture_light``, short records, the
group by tracer): recording 4.7 -> 3.8 us, the spans file on the span's thread 2.3 -> 1.5 us.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.trace import SpanKind  # noqa: E402

from harness.telemetry import Telemetry  # noqa: E402


def _record(tel: Telemetry, n: int) -> None:
    tracers = [tel.tracer(s) for s in ("nova-api", "glance-api", "nova-compute")]
    for i in range(n // 2):
        tracer = tracers[i % 3]
        with tracer.start_as_current_span("POST /v2.1/servers", kind=SpanKind.SERVER, attributes={
            "http.request.method": "POST", "url.path": "/v2.1/servers", "server.address": "127.0.0.1",
            "server.port": 8774, "openstack.boot.step": 3, "openstack.boot.phase": "api",
            "openstack.instance.id": f"9b0e6f4c-2f7e-4d2a-8d5e-{i:012d}",
            "openstack.request_id": f"req-{i}", "http.response.status_code": 202}):
            with tracer.start_as_current_span("db.select", attributes={
                    "db.system": "sqlite", "db.operation.name": "SELECT"}):
                pass


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192, help="spans per run")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    # a run without a spans file has no exporter: Telemetry would report every span as dropped
    logging.getLogger("harness.telemetry").setLevel(logging.CRITICAL)
    gc.collect()
    gc.freeze()
    best: dict[str, float] = {}
    for with_file in (False, True):
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                tel = Telemetry(run_dir=Path(tmp) if with_file else None, use_env_otlp=False)
                _record(tel, 64)  # warm: providers, groups, the child's imports
                tel.force_flush()
                child = tel.writer.pid if tel.writer is not None else None
                c0 = _cpu_s(child) if child else 0.0
                p0, t0 = time.process_time(), time.thread_time()
                _record(tel, args.n)
                t1 = time.thread_time()
                tel.force_flush()
                p1 = time.process_time()
                c1 = _cpu_s(child) if child else 0.0
                tel.shutdown()
            key = "file" if with_file else "none"
            for name, value in ((f"{key}.thread", t1 - t0), (f"{key}.process", p1 - p0),
                                (f"{key}.child", c1 - c0)):
                best[name] = min(best.get(name, float("inf")), value * 1e6 / args.n)
    start = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            tel = Telemetry(run_dir=Path(tmp), use_env_otlp=False)
            _record(tel, 2)
            tel.force_flush()
            assert tel.writer is not None
            start.append(_cpu_s(tel.writer.pid))
            tel.shutdown()
    base = best["none.thread"]
    print(f"recording alone: {base:.2f} us a span (span's thread)")
    print(f"with the spans file: the span's thread {best['file.thread'] - base:.2f} us a span more, "
          f"the cloud's process {best['file.process'] - base:.2f} us more; the export process "
          f"{best['file.child']:.1f} us a span (/proc, 10 ms ticks: coarse below ~2,000 spans)")
    print(f"export process start-up: {1000 * min(start):.0f} ms of CPU (best of 3)")


if __name__ == "__main__":
    main()
