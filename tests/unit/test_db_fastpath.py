"""The bare-driver path for prebuilt statements returns exactly what SQLAlchemy returned.

One script of NovaDB operations (every query function of ``harness.db``, the boot path's and the
others) runs on a fresh SQLite file per path: SQLAlchemy for everything (``fast_path=False``), the
inline runner's fast path, the thread runner's fast path. Every result is compared by ``repr``,
so a ``1`` where SQLAlchemy gave ``True``, a JSON text where it gave a dict or a different key
order fails. A counting spy proves the fast runs took no prebuilt statement through SQLAlchemy.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import bindparam, event, exc, select
from sqlalchemy.engine import Connection

from harness.db import NovaDB, Resources, groups, image_cache, providers
from harness.db import store
from harness.db.fastpath import Plan, is_prebuilt, make_plan, prebuilt
from harness.db.models import instances
from harness.services import nova_periodic

HOSTS = [
    dict(host=f"node-{i}", vcpus=4, memory_mb=4096, local_gb=40, cpu_allocation_ratio=r,
         ram_allocation_ratio=1.0, disk_allocation_ratio=1.0, availability_zone="az1" if i < 2 else "az2",
         arch="x86_64")
    for i, r in enumerate([1.0, 2.0, 16.0])
]


class _Clock:
    """time.time() for the DB modules: distinct, reproducible timestamps."""

    def __init__(self) -> None:
        self._n = itertools.count()

    def time(self) -> float:
        return 1_700_000_000.0 + next(self._n) * 0.25


def _instance(uuid: str, **extra: Any) -> dict[str, Any]:
    row = dict(uuid=uuid, name=f"vm-{uuid[:4]}", project_id="p1", user_id="u1", flavor_id="1",
               vcpus=1, memory_mb=512, root_gb=1, vm_state="building", task_state="scheduling")
    row.update(extra)
    return row


def _fail_after_write(conn: Any, uuid: str) -> None:
    """A fast-path UPDATE, then a duplicate INSERT: the whole operation must roll back."""
    conn.execute(store._SET_HOST, {"b_uuid": uuid, "b_host": "node-2", "b_az": "az2", "b_now": 1.0})
    conn.execute(store._INSERT_INSTANCE, {**_instance(uuid), "created_at": 1.0, "updated_at": 1.0})


def _fail_after_fallback(conn: Any, uuid: str) -> None:
    """A fast-path write, a write SQLAlchemy runs (not prebuilt), then an error."""
    conn.execute(store._SET_HOST, {"b_uuid": uuid, "b_host": "node-1", "b_az": "az1", "b_now": 2.0})
    conn.execute(instances.update().where(instances.c.uuid == uuid).values(progress=55))
    raise RuntimeError("after the fallback")


async def _script(db: NovaDB) -> list[tuple[str, Any]]:
    """Every operation, in order; returns (label, result) pairs."""
    out: list[tuple[str, Any]] = []

    async def rec(label: str, aw: Any) -> Any:
        try:
            value = await aw
        except Exception as e:  # the error's class is part of the result
            value = ("raised", type(e).__module__, type(e).__name__)
        out.append((label, value))
        return value

    await db.create_schema()
    await db.seed(HOSTS)
    await db.seed(HOSTS)  # idempotent
    await rec("flavors", db.list_flavors())
    await rec("flavor by id", db.get_flavor("2"))
    await rec("flavor by name", db.get_flavor("m1.large"))
    await rec("flavor missing", db.get_flavor("nope"))

    uuids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(5)]
    await rec("create minimal", db.create_instance(_instance(uuids[0])))  # Python defaults
    await rec("create full", db.create_instance(_instance(
        uuids[1], image_ref="img", power_state=1, request={"networks": [{"uuid": "n"}], "meta": {"a": None}},
        addresses={"private": [{"addr": "10.0.0.3", "version": 4}]}, deleted=False, requested_az="az1",
        launched_at=None)))
    await rec("create dup", db.create_instance(_instance(uuids[1])))
    for u in uuids[2:]:
        await db.create_instance(_instance(u, project_id="p2"))
    await rec("get live", db.get_instance(uuids[0]))
    await rec("get full", db.get_instance(uuids[1]))
    await rec("get missing", db.get_instance("ffffffff-0000-4000-8000-000000000000"))
    await rec("count p1", db.count_instances("p1"))
    await rec("count none", db.count_instances("nobody"))

    await rec("nodes", db.list_compute_nodes())
    await rec("node columns", providers.node_columns(db))
    node = await rec("node", providers.get_node(db, "node-1"))
    await rec("node missing", providers.get_node(db, "nowhere"))
    res = Resources(vcpus=2, memory_mb=1024, disk_gb=10)
    await rec("claim", db.claim(uuids[0], "node-1", node["generation"], res, az="az1"))
    await rec("claim stale generation", db.claim(uuids[1], "node-1", node["generation"], res, az="az1"))
    await rec("claim too big", db.claim(uuids[1], "node-0", 0, Resources(8, 1024, 1), az="az1"))
    await rec("claim cpu ratio", db.claim(uuids[1], "node-2", 0, Resources(40, 1024, 1), az="az2"))  # 4 x 16
    await rec("after claims", providers.node_columns(db))
    await rec("claimed instance", db.get_instance(uuids[0]))
    await rec("allocations", db.allocations_by_host())

    await rec("update", db.update_instance(uuids[0], {"vm_state": "active", "task_state": None, "power_state": 1,
                                                       "addresses": {"private": [{"addr": "10.0.0.9"}]},
                                                       "progress": 100, "launched_at": 5.5}))
    await rec("update expected ok", db.update_instance(uuids[1], {"task_state": "spawning"},
                                                        expected_task_state=["scheduling"]))
    await rec("update expected no", db.update_instance(uuids[1], {"task_state": "x"},
                                                        expected_task_state=["deleting"]))
    await rec("update expected none", db.update_instance(uuids[0], {"task_state": "deleting"},
                                                          expected_task_state=[None, "spawning"]))
    await rec("update missing", db.update_instance("ffffffff-0000-4000-8000-000000000000", {"progress": 1}))
    await rec("updated", db.get_instance(uuids[0]))

    await rec("cache add", image_cache.add(db, "node-1", "img-a"))
    await rec("cache add again", image_cache.add(db, "node-1", "img-a"))
    await image_cache.add(db, "node-2", "img-a")
    await image_cache.add(db, "node-2", "img-b")
    await rec("hosts with", image_cache.hosts_with(db, "img-a"))
    await rec("images by host", image_cache.images_by_host(db))

    await rec("rollback", db._write(_fail_after_write, uuids[2]))
    await rec("after rollback", db.get_instance(uuids[2]))
    await rec("rollback mixed", db._write(_fail_after_fallback, uuids[3]))
    await rec("after rollback mixed", db.get_instance(uuids[3]))

    await rec("list all", db.list_instances(project_id=None))
    await rec("list filtered", db.list_instances(project_id="p1", vm_states=["active", "building"], limit=5))
    await rec("list no states", db.list_instances(project_id="p1", vm_states=[]))
    await rec("list name status", db.list_instances(project_id="p2", name="vm-0000", status_vm_state="building"))
    page = await rec("list page", db.list_instances(project_id=None, limit=2))
    await rec("list next page", db.list_instances(project_id=None, limit=2, marker_created=(
        page[-1]["created_at"], page[-1]["uuid"])))
    await rec("list changes", db.list_instances(project_id=None, changed_since=1_700_000_001.0,
                                                vm_states={"active", "error"}))
    await rec("list changes before", db.list_instances(project_id="p2", changed_since=0.0,
                                                       changed_before=1_700_000_002.0))
    await rec("states", nova_periodic.instance_states(db, uuids[:3]))

    g = await groups.create_group(db, name="g", project_id="p1", user_id="u1", policy="anti-affinity",
                                  rules={"max_server_per_host": 2})
    await groups.add_member(db, g["uuid"], uuids[0])
    await rec("group", groups.get_group(db, g["uuid"]))
    await groups.add_member(db, g["uuid"], uuids[1])
    await rec("member hosts", groups.member_hosts(db, g["uuid"]))
    await rec("member hosts but", groups.member_hosts(db, g["uuid"], exclude=uuids[1]))
    await rec("members", groups.members(db, g["uuid"]))
    await rec("groups", groups.list_groups(db, "p1"))
    await rec("group of", groups.group_of(db, uuids[0]))

    await rec("free", db.free(uuids[0]))
    await rec("free again", db.free(uuids[0]))
    await rec("build failure", db.record_build_failure("node-1"))
    await rec("delete", db.update_instance(uuids[0], {"vm_state": "deleted", "task_state": None, "deleted": True}))
    await rec("get deleted live", db.get_instance(uuids[0]))
    await rec("get deleted any", db.get_instance(uuids[0], include_deleted=True))
    await rec("final nodes", db.list_compute_nodes())
    await rec("final allocations", db.allocations_by_host())
    return out


class _SASpy:
    """Counts statements SQLAlchemy's Connection.execute ran, prebuilt or not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.prebuilt = 0
        self.other = 0
        original = Connection.execute

        def execute(conn: Connection, stmt: Any, *a: Any, **kw: Any) -> Any:
            if is_prebuilt(stmt):
                self.prebuilt += 1
            else:
                self.other += 1
            return original(conn, stmt, *a, **kw)

        monkeypatch.setattr(Connection, "execute", execute)


async def _run(tmp: Path, name: str, monkeypatch: pytest.MonkeyPatch, *, fast: bool, shared: bool
               ) -> tuple[list[tuple[str, Any]], _SASpy]:
    clock = _Clock()
    for mod in (store, image_cache, groups):
        monkeypatch.setattr(mod, "time", clock)
    serial = itertools.count(1)
    monkeypatch.setattr(groups, "uuidlib", SimpleNamespace(uuid4=lambda: f"{next(serial):08d}-group"))
    spy = _SASpy(monkeypatch)
    db = NovaDB(f"sqlite:///{tmp}/{name}.db", shared=shared, fast_path=fast)
    try:
        return await _script(db), spy
    finally:
        await db.close()
        monkeypatch.undo()


@pytest.mark.parametrize("shared", [False, True], ids=["inline", "threads"])
async def test_fast_path_results_identical_to_sqlalchemy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         shared: bool) -> None:
    reference, sa_spy = await _run(tmp_path, "sa", monkeypatch, fast=False, shared=False)
    fast, fast_spy = await _run(tmp_path, "fast", monkeypatch, fast=True, shared=shared)
    assert sa_spy.prebuilt > 30  # the reference really ran the prebuilt statements through SQLAlchemy
    assert fast_spy.prebuilt == 0  # ... and the fast run none of them
    assert fast_spy.other > 0  # statements built per call still went through SQLAlchemy
    assert [label for label, _ in fast] == [label for label, _ in reference]
    for (label, want), (_, got) in zip(reference, fast):
        assert repr(got) == repr(want), label
    results = dict(reference)
    # the script meant what it says: these are not vacuous comparisons
    assert results["claim"] is True and results["claim stale generation"] is False
    assert results["create dup"] == ("raised", "sqlalchemy.exc", "IntegrityError")
    assert results["after rollback"]["host"] is None and results["after rollback mixed"]["progress"] == 0
    assert results["get live"]["request"] == {} and results["get live"]["deleted"] is False
    assert results["cache add"] is True and results["cache add again"] is False
    assert len(results["list page"]) == 2 and results["list next page"]
    assert results["list next page"][0]["uuid"] not in {r["uuid"] for r in results["list page"]}
    assert [r["vm_state"] for r in results["list changes"]] == ["active"]
    assert results["list name status"] and results["list changes before"] and results["list no states"] == []
    assert results["claim cpu ratio"] is True and results["claim too big"] is False
    assert results["member hosts"] == {"node-1": 1, "node-2": 1} and len(results["members"]) == 2
    assert results["member hosts but"] == {"node-1": 1}


def test_plan_matches_sqlalchemy_compilation() -> None:
    """A plan's SQL and parameters are what SQLAlchemy sends for the same execution."""
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    sent: list[tuple[str, tuple]] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cur, sql, params, ctx, many: sent.append((sql, params)))
    store.metadata.create_all(engine)
    stmt = store._update_instance_stmt(("spawning", None))
    params = {"vm_state": "active", "addresses": {"x": [1]}, "deleted": True, "updated_at": 2.0, "b_uuid": "u"}
    with engine.begin() as conn:
        conn.execute(stmt, params)
    plan: Plan = make_plan(stmt, params, engine.dialect)
    assert (plan.sql, plan.arguments(params)) == sent[-1]
    assert "IN (?)" in plan.sql  # the fixed IN list expanded when the plan was made


async def test_driver_errors_are_sqlalchemy_errors(tmp_path: Path) -> None:
    """image_cache.add relies on IntegrityError; a bad value raises what SQLAlchemy raised."""
    db = NovaDB(f"sqlite:///{tmp_path}/e.db", shared=False)
    try:
        await db.create_schema()
        await db.create_instance(_instance("a"))
        with pytest.raises(exc.IntegrityError):
            await db.create_instance(_instance("a"))
        with pytest.raises(exc.IntegrityError):  # NOT NULL
            await db._write(store._q_exec, store._INSERT_ALLOCATION, {"instance_uuid": "x", "host": None,
                                                                     "vcpus": 1, "memory_mb": 1, "disk_gb": 1,
                                                                     "created_at": 1.0})
        assert await db.get_instance("a") is not None  # the connection is usable after the errors
    finally:
        await db.close()


def test_statement_built_per_call_is_not_prebuilt() -> None:
    s = instances.select()
    assert not is_prebuilt(s)
    assert is_prebuilt(prebuilt(s)) and not is_prebuilt(s.where(instances.c.uuid == "x"))


_BY_IDS = prebuilt(select(instances.c.uuid).where(instances.c.uuid.in_(bindparam("ids", expanding=True)))
                   .order_by(instances.c.uuid))


def _q_by_ids(conn: Any, ids: list[str]) -> list[str]:
    return [r.uuid for r in conn.execute(_BY_IDS, {"ids": ids})]


async def test_what_a_plan_cannot_reproduce_runs_through_sqlalchemy(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An IN list given at execution changes the SQL per call: SQLAlchemy runs it, same transaction."""
    spy = _SASpy(monkeypatch)
    db = NovaDB(f"sqlite:///{tmp_path}/x.db", shared=False)
    try:
        await db.create_schema()
        for u in "abc":
            await db.create_instance(_instance(u))
        before = spy.prebuilt
        assert await db._read(_q_by_ids, ["c", "a"]) == ["a", "c"]
        assert await db._read(_q_by_ids, ["b"]) == ["b"]
        assert spy.prebuilt == before + 2
    finally:
        await db.close()


async def test_engine_events_see_every_statement(tmp_path: Path) -> None:
    """Cursor events (instrumentation) only fire when SQLAlchemy runs the statement: with a
    listener attached the runner uses SQLAlchemy for everything."""
    db = NovaDB(f"sqlite:///{tmp_path}/x.db", shared=False)
    seen: list[str] = []
    try:
        await db.create_schema()
        await db.create_instance(_instance("a"))
        event.listen(db._runner.engine, "before_cursor_execute",
                     lambda conn, cur, sql, params, ctx, many: seen.append(sql.split()[0]))
        assert (await db.get_instance("a"))["uuid"] == "a"
        assert await db.update_instance("a", {"progress": 3})
        assert seen == ["SELECT", "UPDATE"]
    finally:
        await db.close()
