"""Benchmark: scheduling time per request against the number of hosts, for every algorithm.

    python bench/bench_scheduling.py                          # 10, 30, 100, 300, 1000 hosts
    python bench/bench_scheduling.py --hosts 10 100 1000 10000 --requests 500 --json bench-out/sched.json

What nova-scheduler does per request, timed piece by piece on a seeded, heterogeneous, partly
loaded cloud (four host sizes, two zones, two architectures, a few disabled hosts, one image cached
on a third of the hosts):

* ``db_read``   - ``SELECT`` of every compute node from the Nova DB (SQLite file, as embedded),
  read as columns as the service does (:func:`harness.db.providers.node_columns`);
* ``build``     - those columns turned into the scheduler's arrays (:class:`HostTable`);
* ``decide``    - the algorithm itself over those columns (filters, weighers, ordering), the
  figure the scheduling span records as ``openstack.scheduler.algorithm_ms``;
* ``loop``      - for comparison, Nova's own shape of the filter scheduler: a Python loop per host
  per filter and per weigher over ``HostState`` objects (the harness's first version), only for
  ``filter_scheduler``.

Each request asks for a random standard flavor (and sometimes a zone or an arm image), so the
work is that of real requests. Medians and 95th percentiles are per request, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.db import NovaDB, providers  # noqa: E402
from harness.db.store import STANDARD_FLAVORS  # noqa: E402
from harness.scheduling import HostState, HostTable, RequestSpec, load_all, make_scheduler  # noqa: E402

SIZES = [(16, 32768, 500), (32, 65536, 1000), (64, 131072, 2000), (8, 16384, 200)]


def make_rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        vcpus, mem, disk = SIZES[i % len(SIZES)]
        fill = rng.random() * 0.9
        rows.append(dict(
            host=f"compute-{i + 1}", vcpus=vcpus, memory_mb=mem, local_gb=disk,
            vcpus_used=int(vcpus * 4 * fill * rng.random()), memory_mb_used=int(mem * fill),
            local_gb_used=int(disk * fill * rng.random()), running_vms=int(fill * 20),
            cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0, disk_allocation_ratio=1.0,
            availability_zone="az2" if i % 10 == 9 else "nova",
            arch="aarch64" if i % 20 == 7 else "x86_64", disabled=(i % 50 == 13),
            failed_builds=1 if i % 37 == 5 else 0, generation=rng.randrange(100),
        ))
    return rows


def make_specs(count: int, rng: random.Random) -> list[RequestSpec]:
    specs = []
    for i in range(count):
        _, _, vcpus, mem, disk = rng.choice(STANDARD_FLAVORS[:4])
        arm = rng.random() < 0.1
        specs.append(RequestSpec(
            instance_uuid=f"req-{i}", vcpus=vcpus, memory_mb=mem, disk_gb=disk,
            availability_zone="az2" if rng.random() < 0.1 else None, image_id="image-1",
            image_arch="aarch64" if arm else "x86_64", num_alternates=2,
        ))
    return specs


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_us": round(statistics.median(ordered), 1),
            "p95_us": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)}


# -- the per-host loop, Nova's shape (for comparison only) ------------------------------------------

def loop_filter_scheduler(states: list[HostState], spec: RequestSpec) -> list[HostState]:
    """Filters and weighers as Nova runs them: every plugin called once per host."""
    filters = [
        lambda h: not h.disabled,
        lambda h: spec.availability_zone is None or h.availability_zone == spec.availability_zone,
        lambda h: h.fits(spec),
        lambda h: spec.image_arch is None or h.arch == spec.image_arch,
    ]
    left = states
    for f in filters:
        left = [h for h in left if f(h)]
    weighers = [(1.0, lambda h: max(0, h.memory_mb - h.memory_mb_used), 0),
                (1.0, lambda h: max(0, h.free_vcpus), 0),
                (1.0, lambda h: max(0, (h.local_gb - h.local_gb_used) * 1024), 0),
                (-1e6, lambda h: h.failed_builds, None)]
    totals = [0.0] * len(left)
    for mult, raw, minval in weighers:
        values = [raw(h) for h in left]
        if not values:
            break
        lo = min(values) if minval is None else minval
        hi = max(values)
        if hi != lo:
            for i, v in enumerate(values):
                totals[i] += mult * (v - lo) / (hi - lo)
    order = sorted(range(len(left)), key=lambda i: totals[i], reverse=True)
    return [left[i] for i in order[:3]]


async def db_read_us(rows: list[dict[str, Any]], repeat: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = NovaDB(f"sqlite+aiosqlite:///{tmp}/nova.db")
        await db.create_schema()
        await db.seed(rows)
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await providers.node_columns(db)
            out.append((time.perf_counter() - t0) * 1e6)
        await db.close()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    ap.add_argument("--requests", type=int, default=300, help="timed requests per algorithm and size")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    algorithms = sorted(load_all())
    results: list[dict[str, Any]] = []
    header = f"{'hosts':>6} {'algorithm':<17} {'decide med':>11} {'p95':>8} {'build med':>10} {'db_read med':>12}" \
             f" {'loop med':>9}   (microseconds per request)"
    print(header)
    for n in args.hosts:
        rng = random.Random(args.seed + n)
        rows = make_rows(n, rng)
        cached = {r["host"] for r in rows if rng.random() < 1 / 3}
        specs = make_specs(args.requests, rng)
        columns = {k: tuple(r[k] for r in rows) for k in rows[0]}
        build = summary(timed(lambda: HostTable.from_columns(columns, images={"image-1": cached}), args.requests))
        db = summary(asyncio.run(db_read_us(rows, max(20, args.requests // 10))))
        states = list(HostTable.from_rows(rows, images={"image-1": cached}))
        for name in algorithms:
            sched = make_scheduler(name, seed=args.seed)
            it = iter(specs * 2)
            # a fresh table per request, as the service builds one per request (derived columns
            # such as free RAM are computed inside ``decide``, as they are in the service)
            for _ in range(5):  # warm-up
                sched.select(HostTable.from_columns(columns, images={"image-1": cached}), specs[0])
            tables = iter([HostTable.from_columns(columns, images={"image-1": cached})
                           for _ in range(args.requests)])
            decide = summary(timed(lambda: sched.select(next(tables), next(it)), args.requests))
            loop = None
            if name == "filter_scheduler":
                lit = iter(specs * 2)
                loop = summary(timed(lambda: loop_filter_scheduler(states, next(lit)), args.requests))
            row = {"hosts": n, "algorithm": name, "decide": decide, "build": build, "db_read": db,
                   "loop": loop}
            results.append(row)
            print(f"{n:>6} {name:<17} {decide['median_us']:>11} {decide['p95_us']:>8} "
                  f"{build['median_us']:>10} {db['median_us']:>12} "
                  f"{loop['median_us'] if loop else '':>9}")
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    print(f"[{machine}; {args.requests} requests per cell; seed {args.seed}]")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
