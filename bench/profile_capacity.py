"""Where a boot's CPU goes: py-spy on the cloud's process during a capacity run, grouped by part.

    pip install -e '.[profile]'
    python bench/profile_capacity.py [--boots 3000] [--seconds 12] [--no-tracing] [--raw FILE]

Starts ``bench_capacity.py`` (the cloud in its own process, the ``zero`` profile), waits until the
load is steady, samples the cloud's main process with py-spy for ``--seconds`` (its threads too),
and prints the self time of each part of the harness: the frame that was running decides the
part, by the file it is in (:data:`PARTS`, first match wins). Idle waits of the span-export
threads are left out. ``--raw`` keeps py-spy's raw output (``stack count`` per line) for a closer
look, e.g. with ``--top``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (part, substrings of a frame's file); the first part whose substring is in the frame wins.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("tracing", ("harness/tracer.py", "harness/light_span.py", "harness/propagation.py",
                 "harness/otlp_json.py", "harness/span_export.py", "harness/telemetry.py",
                 "opentelemetry/")),
    ("HTTP client", ("aiohttp/", "harness/services/rest.py", "http1_client", "yarl/", "multidict/")),
    ("HTTP server", ("uvicorn/", "starlette/", "harness/services/http.py", "routing.py",
                     "microversion.py", "uvicorn_proto", "validation.py")),
    ("Nova DB", ("harness/db/", "sqlite3", "sqlalchemy/")),
    ("messaging", ("harness/messaging/",)),
    ("scheduler", ("harness/scheduling/", "nova_scheduler")),
    ("step timing", ("harness/latency.py", "harness/step_clock.py", "harness/deadline.py")),
    ("asyncio", ("asyncio/", "uvloop/")),
    ("service code", ("harness/services/",)),
]
#: frames that are a thread waiting, not working
IDLE = ("Condition.wait", "_wait_for_tstate_lock")


def shares(raw: Path, top: int = 0) -> tuple[dict[str, float], float, int, list[tuple[str, float]]]:
    """Self-time share of each part, the inclusive share of tracing, the sample count, and the
    ``top`` frames outside every part."""
    by_part: Counter[str] = Counter()
    others: Counter[str] = Counter()
    total = tracing_incl = 0
    tracing_files = PARTS[0][1]
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        if any(mark in frames[-1] for mark in IDLE):
            continue
        total += n
        if any(key in f for f in frames for key in tracing_files):
            tracing_incl += n
        for part, keys in PARTS:
            if any(key in frames[-1] for key in keys):
                by_part[part] += n
                break
        else:
            by_part["other"] += n
            others[frames[-1]] += n
    if not total:
        raise SystemExit(f"no samples in {raw}")
    return ({part: n / total for part, n in by_part.most_common()}, tracing_incl / total, total,
            [(f, n / total) for f, n in others.most_common(top)])


def _cloud_pid(timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", "harness.cli up"], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.5)
    raise SystemExit("the cloud's process did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boots", type=int, default=3000, help="boots of the capacity run (long enough to cover the sampling)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=12.0, help="how long py-spy samples")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds from the cloud's start to the first sample")
    ap.add_argument("--no-tracing", action="store_true")
    ap.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    ap.add_argument("--top", type=int, default=10, help="frames outside every part to list")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[profile]'")
    cmd = [sys.executable, str(ROOT / "bench" / "bench_capacity.py"), "--boots", str(args.boots),
           "--concurrency", str(args.concurrency)] + (["--no-tracing"] if args.no_tracing else [])
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or Path(tmp) / "profile.txt"
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            pid = _cloud_pid()
            time.sleep(args.warmup)
            subprocess.run([spy, "record", "--pid", str(pid), "--rate", "250", "--duration",
                            str(int(args.seconds)), "--format", "raw", "--output", str(raw),
                            "--nonblocking"], check=True, capture_output=True)
            out, _ = load.communicate(timeout=600)
        finally:
            if load.poll() is None:
                load.kill()
        if load.returncode:
            raise SystemExit(f"the capacity run failed:\n{out}")
        by_part, tracing_incl, samples, others = shares(raw, args.top)
    print(out.strip().splitlines()[-1][:300])
    print(f"\nself time of the cloud's main process, {samples} samples:")
    for part, share in by_part.items():
        print(f"  {100 * share:5.1f} %  {part}")
    print(f"  (tracing inclusive: {100 * tracing_incl:.1f} %)")
    if others:
        print("\nlargest frames in 'other':")
        for frame, share in others:
            print(f"  {100 * share:5.1f} %  {frame[:110]}")


if __name__ == "__main__":
    main()
