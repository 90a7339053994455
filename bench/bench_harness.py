"""Benchmarks of the harness itself, each figure a ratio measured in one run (issue 9).

* capacity: boots/s to ACTIVE with the ``zero`` profile (all 29 steps, embedded cloud, tracing on),
  and the same against the machine's plain HTTP ceiling on the same server stack
  (``plain_http.py``) divided by the HTTP requests a boot makes (counted from the spans);
* tracing overhead: capacity with tracing on over capacity with tracing off;
* timing fidelity: per step, the median of the step span's exclusive time (its duration minus its
  children's) over the profile's modeled median, with the ``fast`` and ``realistic`` profiles
  below saturation.

    python bench/bench_harness.py                       # everything (~3 minutes)
    python bench/bench_harness.py --only fidelity
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_capacity as cap  # noqa: E402
import plain_http  # noqa: E402

from harness import aio  # noqa: E402
from harness.latency import load_profile  # noqa: E402
from harness.steps import CATALOGUE, Step  # noqa: E402


def _capacity(tracing: bool, *, boots: int, concurrency: int, profile: str = "zero",
              keep_dir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = keep_dir or Path(tmp)
        proc, url = cap.start_cloud(run_dir, profile=profile, hosts=64, tracing=tracing)
        try:
            res = aio.run(cap.drive(url, boots=boots, concurrency=concurrency, poll=0.05, pid=proc.pid))
        finally:
            proc.send_signal(2)
            proc.wait(60)
    return res


def http_requests_per_boot(run_dir: Path) -> float:
    """HTTP requests the cloud served per boot (SERVER spans with an HTTP method / boots)."""
    from analysis.load import load_spans

    spans = load_spans(run_dir)
    server = spans[(spans["kind"].astype(str).str.contains("SERVER")) & spans["http.request.method"].notna()]
    boots = int((spans["step"] == 3).sum())
    return len(server) / max(1, boots)


def capacity_and_overhead(boots: int, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory() as keep:
        on = _capacity(True, boots=boots, concurrency=concurrency, keep_dir=Path(keep))
        per_boot = http_requests_per_boot(Path(keep))
    off = _capacity(False, boots=boots, concurrency=concurrency)
    plain = plain_http.measure(concurrency=64, seconds=5)
    ceiling = plain["requests_per_s"] / per_boot
    return {
        "capacity_boots_per_s": on["boots_per_s"], "cpu_ms_per_boot": on["cpu_ms_per_boot"],
        "capacity_no_tracing_boots_per_s": off["boots_per_s"], "cpu_ms_per_boot_no_tracing": off["cpu_ms_per_boot"],
        "tracing_overhead_pct": round(100 * (1 - on["boots_per_s"] / off["boots_per_s"]), 1),
        "tracing_cpu_overhead_pct": round(100 * (on["cpu_ms_per_boot"] / off["cpu_ms_per_boot"] - 1), 1),
        "http_requests_per_boot": round(per_boot, 1), "plain_http_requests_per_s": plain["requests_per_s"],
        "http_ceiling_boots_per_s": round(ceiling, 1),
        "capacity_over_ceiling": round(on["boots_per_s"] / ceiling, 3),
    }


def fidelity(profile: str, *, boots: int, concurrency: int) -> dict:
    """Measured exclusive step medians over modeled medians (below saturation: low concurrency)."""
    import numpy as np

    from analysis.load import load_spans

    model = load_profile(profile)
    with tempfile.TemporaryDirectory() as tmp:
        _capacity(True, boots=boots, concurrency=concurrency, profile=profile, keep_dir=Path(tmp))
        spans = load_spans(Path(tmp))
    own = _own_time_ms(spans)
    # Time the model adds on purpose beside the step's delay: queue wait inside receive spans
    # (9, 13, 15, 19) and the scheduler's per-host scan cost in step 10.
    wait = spans.get("messaging.harness.queue_wait_ms")
    if wait is not None:
        w = wait.astype(float).fillna(0.0).to_numpy()
        own = [o - w[i] for i, o in enumerate(own)]
    scan_ms = model.costs.get("scheduler_ms_per_host", 0.0) * 64
    rows = {}
    steps = spans["step"]
    for step in CATALOGUE:
        if step in (Step.AUTH_REQUEST, Step.AUTH_ISSUE_TOKEN):
            continue  # the client authenticates once per run, not per boot
        measured = [own[i] for i in np.flatnonzero((steps == int(step)).fillna(False).to_numpy())]
        if step == Step.SCHEDULER_SELECT_HOST:
            measured = [m - scan_ms for m in measured]
        modeled = model.median_ms(step)
        if not measured or modeled <= 0:
            continue
        med = float(statistics.median(measured))
        rows[int(step)] = {"modeled_ms": round(modeled, 3), "measured_ms": round(med, 3),
                           "ratio": round(med / modeled, 4)}
    worst = max(rows.items(), key=lambda kv: abs(kv[1]["ratio"] - 1))
    return {"profile": profile, "boots": boots, "steps": rows,
            "worst_step": worst[0], "worst_ratio": worst[1]["ratio"],
            "within_2pct": sum(1 for r in rows.values() if abs(r["ratio"] - 1) <= 0.02), "of": len(rows)}


def _own_time_ms(spans) -> list[float]:
    """A span's own time: its duration minus the union of the intervals of *all* its descendants
    (not only its children: a ``call`` step's reply arrives after work done under the receive
    span, which ends first, so direct children alone would count that work as the call's)."""
    ids = spans["span_id"].tolist()
    parents = spans["parent_span_id"].tolist()
    start, end = spans["start_ns"].to_numpy(), spans["end_ns"].to_numpy()
    pos = {sid: i for i, sid in enumerate(ids)}
    kids: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        j = pos.get(p) if isinstance(p, str) else None
        if j is not None:
            kids.setdefault(j, []).append(i)
    out = []
    for i in range(len(ids)):
        stack, intervals = list(kids.get(i, ())), []
        while stack:
            k = stack.pop()
            intervals.append((max(start[k], start[i]), min(end[k], end[i])))
            stack.extend(kids.get(k, ()))
        covered, cur_s, cur_e = 0, None, None
        for a, b in sorted(iv for iv in intervals if iv[1] > iv[0]):
            if cur_e is None or a > cur_e:
                if cur_e is not None:
                    covered += cur_e - cur_s
                cur_s, cur_e = a, b
            else:
                cur_e = max(cur_e, b)
        if cur_e is not None:
            covered += cur_e - cur_s
        out.append(float(end[i] - start[i] - covered) / 1e6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["capacity", "fidelity"])
    ap.add_argument("--boots", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    out: dict = {}
    if args.only in (None, "capacity"):
        out["capacity"] = capacity_and_overhead(args.boots, args.concurrency)
        print(json.dumps(out["capacity"]))
    if args.only in (None, "fidelity"):
        out["fidelity_fast"] = fidelity("fast", boots=100, concurrency=4)
        out["fidelity_realistic"] = fidelity("realistic", boots=24, concurrency=8)
        for k in ("fidelity_fast", "fidelity_realistic"):
            f = out[k]
            print(f"{k}: {f['within_2pct']}/{f['of']} steps within 2 %, worst step {f['worst_step']} "
                  f"ratio {f['worst_ratio']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
