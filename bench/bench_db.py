"""Benchmark: CPU per Nova DB operation, SQLAlchemy against the bare-driver fast path.

    python bench/bench_db.py                    # 64 hosts, 2000 rounds, inline SQLite runner
    python bench/bench_db.py --hosts 1000 --rounds 500 --json bench-out/db.json

Each operation the boot path runs is timed as the services call it (``await db.<op>``) on the
embedded cloud's runner (SQLite file in WAL mode, run inline on the event loop), once with every
statement through SQLAlchemy Core (``NovaDB(fast_path=False)``, how it ran before) and once with
the prebuilt statements on the sqlite3 driver (:mod:`harness.db.fastpath`). Figures are CPU
microseconds (``time.process_time``) per call, the best of ``--repeats`` batches (other work on a
shared box only ever adds), and the same operation on the bare driver with hand-written SQL as the
floor. Paths alternate so a busy spell hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.db import NovaDB, Resources, image_cache, providers  # noqa: E402

Op = Callable[[int], Awaitable[Any]]


def host_rows(n: int) -> list[dict[str, Any]]:
    return [dict(host=f"compute-{i + 1}", vcpus=64, memory_mb=262144, local_gb=10000,
                 cpu_allocation_ratio=16.0, ram_allocation_ratio=1.5, disk_allocation_ratio=1.0,
                 availability_zone="nova", arch="x86_64") for i in range(n)]


def instance_row(i: int) -> dict[str, Any]:
    return dict(uuid=f"{i:08d}-0000-4000-8000-000000000000", name=f"vm-{i}", project_id="demo",
                user_id="demo", flavor_id="1", image_ref="cirros", vcpus=1, memory_mb=512, root_gb=1,
                vm_state="building", task_state="scheduling", requested_az=None,
                request={"networks": [{"uuid": "net"}], "key_name": None, "metadata": {}})


async def prepare(path: Path, *, fast: bool, hosts: int, rounds: int) -> tuple[NovaDB, dict[str, Op]]:
    db = NovaDB(f"sqlite:///{path}", shared=False, fast_path=fast)
    await db.create_schema()
    await db.seed(host_rows(hosts))
    for i in range(rounds):
        await db.create_instance(instance_row(i))
    for i in range(64):  # a project of its own for the list: 64 servers, as a watcher's page
        await db.create_instance({**instance_row(10**6 + i), "project_id": "watch", "vm_state": "active"})
    await image_cache.add(db, "compute-1", "cirros")
    gens: dict[str, int] = {}
    res = Resources(1, 512, 1)

    async def claim_free(i: int) -> None:
        """A claim with its generation check, then the release (two operations)."""
        host = f"compute-{i % hosts + 1}"
        gen = gens.get(host, 0)
        assert await db.claim(instance_row(i)["uuid"], host, gen, res, az="nova")
        await db.free(instance_row(i)["uuid"])
        gens[host] = gen + 2

    n = [rounds]

    async def create(i: int) -> None:
        n[0] += 1
        await db.create_instance(instance_row(n[0]))

    ops: dict[str, Op] = {
        "get_instance (SELECT 1 row, JSON+bool)": lambda i: db.get_instance(instance_row(i)["uuid"]),
        "create_instance (INSERT, defaults)": create,
        "update_instance (UPDATE, expected state)": lambda i: db.update_instance(
            instance_row(i)["uuid"], {"task_state": "scheduling"}, expected_task_state=["scheduling"]),
        "update_instance (UPDATE, JSON values)": lambda i: db.update_instance(
            instance_row(i)["uuid"], {"vm_state": "active", "task_state": None, "power_state": 1,
                                      "addresses": {"private": [{"addr": "10.0.0.2"}]}, "progress": 100}),
        "claim + free (5 statements, 2 txns)": claim_free,
        "image_cache.add (SELECT, already there)": lambda i: image_cache.add(db, "compute-1", "cirros"),
        f"node_columns ({hosts} rows x 17)": lambda i: providers.node_columns(db),
        "get_node (SELECT 1 node)": lambda i: providers.get_node(db, f"compute-{i % hosts + 1}"),
        "list_instances (64 rows, JSON+bool)": lambda i: db.list_instances(
            project_id="watch", vm_states={"active", "error"}, limit=1000),
        "count_instances (SELECT count)": lambda i: db.count_instances("demo"),
    }
    return db, ops


def bare_ops(path: Path) -> dict[str, Callable[[int], Any]]:
    """The floor: the same reads on the sqlite3 driver, SQL by hand, rows as tuples."""
    con = sqlite3.connect(path)
    cur = con.cursor()

    def get(i: int) -> Any:
        cur.execute("SELECT * FROM instances WHERE uuid = ? AND deleted IS 0", (instance_row(i)["uuid"],))
        row = cur.fetchall()
        con.commit()
        return row

    def nodes(i: int) -> Any:
        cur.execute("SELECT * FROM compute_nodes ORDER BY id")
        rows = cur.fetchall()
        con.commit()
        return rows

    return {"get_instance (SELECT 1 row, JSON+bool)": get, "node_columns": nodes}


async def time_op(op: Op, rounds: int) -> float:
    t0 = time.process_time()
    for i in range(rounds):
        await op(i)
    return (time.process_time() - t0) / rounds * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2000, help="calls per batch")
    ap.add_argument("--repeats", type=int, default=3, help="batches per path; the best counts")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.hosts < 1 or a.rounds < 1 or a.repeats < 1:
        ap.error("--hosts, --rounds and --repeats must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"sqlalchemy": Path(tmp, "sa.db"), "fast": Path(tmp, "fast.db")}
        dbs = {k: await prepare(p, fast=(k == "fast"), hosts=a.hosts, rounds=a.rounds) for k, p in paths.items()}
        best: dict[str, dict[str, float]] = {k: {} for k in dbs}
        for name in dbs["fast"][1]:
            for _ in range(a.repeats):
                for kind, (_db, ops) in dbs.items():
                    us = await time_op(ops[name], a.rounds)
                    best[kind][name] = min(us, best[kind].get(name, float("inf")))
        floor: dict[str, float] = {}
        for name, fn in bare_ops(paths["fast"]).items():
            for _ in range(a.repeats):
                t0 = time.process_time()
                for i in range(a.rounds):
                    fn(i)
                us = (time.process_time() - t0) / a.rounds * 1e6
                floor[name] = min(us, floor.get(name, float("inf")))
        for db, _ops in dbs.values():
            await db.close()
    print(f"CPU us per call, best of {a.repeats} x {a.rounds}; {a.hosts} hosts; inline SQLite runner")
    print(f"{'operation':46s} {'SQLAlchemy':>11s} {'fast path':>10s} {'saved':>7s}")
    for name in best["fast"]:
        sa, fast = best["sqlalchemy"][name], best["fast"][name]
        print(f"{name:46s} {sa:11.1f} {fast:10.1f} {1 - fast / sa:7.0%}")
    for name, us in floor.items():
        print(f"bare sqlite3, hand-written SQL: {name:30s} {us:8.1f}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"hosts": a.hosts, "rounds": a.rounds, "us_per_call": best,
                                      "bare_driver_us": floor,
                                      "machine": f"{platform.machine()} {platform.python_version()}"}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
