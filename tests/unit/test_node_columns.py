"""The scheduler's per-request read of every compute node (SQLite: the changing columns, plus a
copy of the static ones kept while a trigger-kept counter says nobody changed them) must give
exactly what reading every column gives, whoever changed the hosts and how."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from harness.db import NovaDB, Resources, providers


def _host(i: int, **extra: Any) -> dict[str, Any]:
    row = dict(host=f"node-{i}", vcpus=8, memory_mb=16384, local_gb=100, cpu_allocation_ratio=16.0,
               ram_allocation_ratio=1.5, disk_allocation_ratio=1.0, availability_zone="nova",
               arch="x86_64")
    row.update(extra)
    return row


async def _full(db: NovaDB) -> dict[str, tuple]:
    return await db._read(providers._q_columns)


@pytest.mark.parametrize("fast_path", [True, False])
async def test_split_read_equals_full_read_through_every_kind_of_change(tmp_path: Path,
                                                                        fast_path: bool) -> None:
    path = tmp_path / "nova.db"
    db = NovaDB(f"sqlite:///{path}", shared=False, fast_path=fast_path)
    await db.create_schema()
    assert await providers.node_columns(db) == await _full(db)  # no hosts
    await db.seed([_host(i) for i in range(3)])

    async def same() -> dict[str, tuple]:
        got, full = await providers.node_columns(db), await _full(db)
        assert got == full and list(got) == list(full)
        return got

    await same()
    copy = db.node_statics
    assert copy is not None
    # a claim changes usage and generation only: the copy stays, the usage is read afresh
    await db.claim("0c4a1c6e-0000-4000-8000-000000000001", "node-1", 0, Resources(2, 1024, 10), az="nova")
    cols = await same()
    assert db.node_statics is copy and cols["vcpus_used"] == (0, 2, 0)
    await db.record_build_failure("node-2")
    assert (await same())["failed_builds"] == (0, 0, 1) and db.node_statics is copy

    # a host registering (another process's conductor) and hand edits from outside
    await db.seed([_host(3, availability_zone="az2")])
    assert (await same())["availability_zone"] == ("nova", "nova", "nova", "az2")
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE compute_nodes SET cpu_allocation_ratio = 4.0 WHERE host = 'node-0'")
        conn.commit()
        assert (await same())["cpu_allocation_ratio"][0] == 4.0
        conn.execute("UPDATE compute_nodes SET disabled = 1 WHERE host = 'node-3'")
        conn.commit()
        assert (await same())["disabled"] == (False, False, False, True)
        conn.execute("DELETE FROM compute_nodes WHERE host = 'node-2'")
        conn.commit()
        assert (await same())["host"] == ("node-0", "node-1", "node-3")
    finally:
        conn.close()
    await db.close()


async def test_schema_made_again_keeps_the_counter(tmp_path: Path) -> None:
    """create_schema on an existing file (another process starting) neither resets the counter
    nor fails on the triggers it finds."""
    db = NovaDB(f"sqlite:///{tmp_path / 'nova.db'}", shared=False)
    await db.create_schema()
    await db.seed([_host(0), _host(1)])
    await db.create_schema()
    version = await db._read(lambda conn: conn.execute(providers._STATIC_VERSION).scalar())
    assert version == 2
    await db.close()
