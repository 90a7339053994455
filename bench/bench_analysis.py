"""Benchmark: load N synthetic spans and build the per-boot table (issue 7: 1,000,000 spans in
under 10 s and 2 GB on the 2-core box).

    python bench/bench_analysis.py                 # 1,000,000 spans, file cached in bench-out/
    python bench/bench_analysis.py --spans 200000 --out /tmp/bench

The spans file is generated once (not timed) with :func:`analysis.synthetic.synthetic_run`, laid
out as the harness writes it. Each measured stage runs in a fresh child process so that its peak
resident memory (``ru_maxrss``) is its own; the table printed is wall time, CPU time (both cores
counted: Arrow parses on two threads), peak RSS and the machine's load average per stage (a busy
shared box stretches wall time; CPU time does not move much).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("load", "load+boot_table", "load+boot_table+phase_table", "parquet_cache_hit")


def _measure(path: Path, stage: str) -> dict[str, float]:
    """Run in the child: time the stage, report peak RSS."""
    import analysis
    from analysis.load import load_spans

    if stage == "parquet_cache_hit":
        load_spans(path, cache=True)  # writes the cache (not timed)
    t0, c0 = time.perf_counter(), time.process_time()
    spans = load_spans(path, cache=stage == "parquet_cache_hit")
    t_load = time.perf_counter() - t0
    boots = None
    if stage.startswith("load+boot_table"):
        boots = analysis.boot_table(spans)
    if stage.endswith("phase_table"):
        analysis.phase_table(boots)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "stage": stage,
        "spans": len(spans),
        "boots": 0 if boots is None else len(boots),
        "load_s": round(t_load, 2),
        "total_s": round(total, 2),
        "cpu_s": round(cpu, 2),
        "loadavg": round(os.getloadavg()[0], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "malformed_lines": spans.attrs.get("malformed_lines", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(_measure(args.file, args.stage)))
        return

    from analysis.synthetic import synthetic_run

    path = args.out / f"synthetic-{args.spans}-{args.seed}" / "spans.jsonl"
    if not path.is_file():
        t0 = time.perf_counter()
        counts = synthetic_run(path, n_spans=args.spans, seed=args.seed)
        print(
            f"generated {counts['spans']} spans, {counts['boots']} boots, "
            f"{path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s -> {path}"
        )
    results = []
    for stage in STAGES:
        proc = subprocess.run(
            [sys.executable, __file__, "--stage", stage, "--file", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        f"{'stage':30} {'spans':>9} {'boots':>7} {'load s':>7} {'total s':>8} {'CPU s':>6} "
        f"{'peak RSS MB':>12} {'loadavg':>8}"
    )
    for r in results:
        print(
            f"{r['stage']:30} {r['spans']:>9} {r['boots']:>7} {r['load_s']:>7} {r['total_s']:>8} "
            f"{r['cpu_s']:>6} {r['peak_rss_mb']:>12} {r['loadavg']:>8}"
        )


if __name__ == "__main__":
    main()
