"""The server list the status watchers poll reads only the rows it returns (SQLite's plan).

``GET /servers/detail?changes-since=T&status=ACTIVE&status=ERROR`` runs 20 times a second per
watcher; if SQLite answers it from the ``project_id`` index it reads every server the project
ever had, a cost that grows with the run. It must search the ``updated_at`` index (the project
is then a filter on the few rows that changed). The plan is checked, not a timing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.db import NovaDB
from harness.db.fastpath import make_plan
from harness.db.store import _list_instances_stmt


def _plan_of(db_path: Path, stmt, params: dict) -> str:
    db = NovaDB(f"sqlite:///{db_path}", shared=False)
    plan = make_plan(stmt, params, db._runner.engine.dialect)
    args = plan.arguments(params)
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + plan.sql, args).fetchall()
    finally:
        conn.close()
    return " | ".join(r[-1] for r in rows)


async def test_changes_since_list_of_a_project_searches_by_time(tmp_path: Path) -> None:
    path = tmp_path / "nova.db"
    db = NovaDB(f"sqlite:///{path}", shared=False)
    await db.create_schema()
    await db.close()
    # the watcher's query: changes-since, a project, two states (ACTIVE, ERROR), no limit
    stmt = _list_instances_stmt(False, True, False, True, 2, False, False, False, False)
    params = {"b_since": 1.0, "b_before": None, "b_project": "p1", "b_name": None,
              "b_status": None, "b_limit": None, "b_state0": "active", "b_state1": "error"}
    plan = _plan_of(path, stmt, params)
    assert "USING INDEX ix_instances_updated_at (updated_at>?)" in plan, plan
    # without changes-since the project's index still serves the list
    stmt = _list_instances_stmt(True, False, False, True, None, False, False, False, True)
    plan = _plan_of(path, stmt, {**params, "b_since": None, "b_limit": 10})
    assert "ix_instances_project_id" in plan or "ix_instances_deleted" in plan, plan
