"""Nova's DB access: every statement the boot path runs, each in a DB client span.

The same query functions run on SQLite (embedded default: a file in WAL mode, sync driver, run
inline on the event loop when one process owns the DB, in worker threads when several processes
share the file) and PostgreSQL (asyncpg, through SQLAlchemy's async engine). On SQLite the statements marked
``prebuilt`` run on the bare sqlite3 driver from plans SQLAlchemy compiled once
(:mod:`harness.db.fastpath`): the same SQL and conversions for a third to a half of the CPU.
Resource claims are atomic: usage is added in one ``UPDATE ... WHERE generation = :seen AND
<fits>`` (as placement's generation check works), so concurrent schedulers never over-commit; a
claim that loses the race returns ``False`` and the scheduler tries its next candidate.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import (
    Connection, Engine, String, and_, bindparam, create_engine, event, func, insert, select, text, update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from harness.db.fastpath import FastConnection, PlanCache, events_attached, prebuilt, wrap_error
from harness.db.models import (
    SQLITE_NODE_VERSION_DDL, allocations, compute_nodes, flavors, instances, metadata, sqlite_only,
)
from harness.latency import LatencyModel
from harness.steps import Step
from harness.telemetry import STEP_ATTRS

T = TypeVar("T")
#: PostgreSQL advisory lock taken while creating the schema and seeding ("nova" in ASCII)
SETUP_LOCK_KEY = 0x6E6F7661
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}

#: OpenStack's standard flavors (as devstack seeds them): id, name, vcpus, RAM MB, disk GB.
STANDARD_FLAVORS = [
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
]


@dataclass(frozen=True, slots=True)
class Resources:
    vcpus: int
    memory_mb: int
    disk_gb: int


class DBError(Exception):
    pass


#: what a query function receives, in a transaction: a sync SQLAlchemy Connection, or on SQLite a
#: FastConnection (its ``execute`` runs prebuilt statements on the driver, the rest on SQLAlchemy)
Conn = Connection | FastConnection


class _ThreadRunner:
    """SQLite: a sync engine, one writer thread and a few reader threads.

    A whole operation (every statement of a claim, say) runs in one thread hop, instead of one hop
    per statement as an async driver makes; with a single writer SQLite never answers "database is
    locked", and WAL lets readers go on beside it.
    """

    def __init__(self, url: URL, readers: int, *, fast: bool = True) -> None:
        self.engine: Engine = create_engine(
            url.set(drivername="sqlite"), connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=readers + 1, max_overflow=2,
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._plans = PlanCache(self.engine.dialect) if fast else None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="nova-db-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="nova-db-reader")

    async def run(self, fn: Callable[..., T], *args: Any, write: bool) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer if write else self._readers, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple) -> T:
        with self.engine.begin() as conn:  # SQLAlchemy's transaction: prebuilt statements run inside it
            if self._plans is None or events_attached(conn):
                return fn(conn, *args)
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                return fn(FastConnection(conn, self._plans, cursor), *args)
            finally:
                cursor.close()

    async def close(self) -> None:
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.engine.dispose()


class _InlineRunner:
    """SQLite owned by this process alone: each operation runs to completion on the event loop.

    A boot's statements take 20-60 us of SQLite and SQLAlchemy work each; handing one to a worker
    thread and back cost several times that in CPU (future, wake-up, GIL hand-offs) and made the
    DB threads the second biggest CPU user of a boot. Run on the loop, every operation is one
    transaction that no other coroutine can interleave with, which is the single-writer rule
    for free. Only when several processes share the file (``harness up --processes`` on SQLite)
    can a lock wait block; then the thread runner is used.

    With ``fast`` (the default) an operation receives a :class:`FastConnection` and its
    transaction is the driver's: the sqlite3 module begins one before the first write (as under
    SQLAlchemy, whose pysqlite dialect emits no BEGIN) and the operation ends with the DB-API
    connection's commit, or rollback when it raised; when a statement fell back to SQLAlchemy,
    whose connection then began a transaction of its own, SQLAlchemy commits or rolls back.
    """

    def __init__(self, url: URL, *, fast: bool = True) -> None:
        self.engine: Engine = create_engine(url.set(drivername="sqlite"), connect_args={"timeout": 30},
                                            poolclass=StaticPool)
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._conn: Connection | None = None
        self._plans = PlanCache(self.engine.dialect) if fast else None
        self._raw: Any = None
        self._cursor: Any = None

    async def run(self, fn: Callable[..., T], *args: Any, write: bool) -> T:
        conn = self._conn
        if conn is None:
            conn = self._conn = self.engine.connect()
            self._raw = conn.connection.driver_connection
            self._cursor = self._raw.cursor()
        if self._plans is None or events_attached(conn):
            with conn.begin():
                return fn(conn, *args)
        try:
            out = fn(FastConnection(conn, self._plans, self._cursor), *args)
        except BaseException:
            self._finish(conn, commit=False)
            raise
        self._finish(conn, commit=True)
        return out

    def _finish(self, conn: Connection, *, commit: bool) -> None:
        if conn.in_transaction():  # a fallback statement made SQLAlchemy begin: it ends it
            conn.commit() if commit else conn.rollback()
            return
        raw = self._raw
        try:
            raw.commit() if commit else raw.rollback()
        except conn.dialect.loaded_dbapi.Error as e:
            raise wrap_error(None, None, e, conn.dialect) from e

    async def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()


class _AsyncRunner:
    """Server databases (PostgreSQL via asyncpg): an async engine, the same query functions run
    through ``run_sync`` in one transaction; concurrency is the pool's."""

    def __init__(self, url: URL, pool_size: int) -> None:
        # pre-ping: connections broken by a server restart are replaced, not handed out
        self.engine: AsyncEngine = create_async_engine(url, pool_size=pool_size, max_overflow=0,
                                                       pool_pre_ping=True)

    async def run(self, fn: Callable[..., T], *args: Any, write: bool) -> T:
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn, *args)

    async def close(self) -> None:
        await self.engine.dispose()


class NovaDB:
    """Nova's DB, reached only by nova-api, nova-scheduler and nova-conductor.

    Each public method is one transaction: a sync query function (``_q_*``) run by the backend's
    runner, so the SQL is written once for SQLite and PostgreSQL.
    """

    def __init__(self, url: str, *, pool_size: int = 5, shared: bool = True, fast_path: bool = True) -> None:
        """``shared=False`` says no other process opens this DB (the embedded cloud with every
        DB-using service in it): SQLite then runs on the event loop instead of worker threads.
        ``fast_path=False`` runs every SQLite statement through SQLAlchemy (comparisons, benchmarks)."""
        self.url = url
        u = make_url(url)
        self.system = u.get_backend_name()
        self.namespace = "nova"
        # OTel DB conventions: where the server is (absent for an embedded SQLite file)
        self.server: dict[str, Any] = {}
        if u.host:
            self.server = {"server.address": u.host, "server.port": u.port or _DEFAULT_PORTS.get(self.system, 0)}
        #: the scheduler's copy of the hosts' static columns (harness.db.providers.node_columns)
        self.node_statics: Any = None
        self._runner: _ThreadRunner | _InlineRunner | _AsyncRunner
        if self.system == "sqlite" and not shared:
            self._runner = _InlineRunner(u, fast=fast_path)
        elif self.system == "sqlite":
            self._runner = _ThreadRunner(u, readers=max(1, min(pool_size, 4)), fast=fast_path)
        else:
            self._runner = _AsyncRunner(u, pool_size)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._runner.run(fn, *args, write=False)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._runner.run(fn, *args, write=True)

    # -- life cycle ---------------------------------------------------------------------------
    async def create_schema(self) -> None:
        """Create missing tables (safe when several processes start at once on PostgreSQL)."""
        await self._write(_q_create_schema)

    async def seed(self, hosts: Iterable[Mapping[str, Any]]) -> None:
        """Seed flavors and compute nodes (idempotent: existing rows are kept)."""
        await self._write(_q_seed, [dict(h) for h in hosts])

    async def close(self) -> None:
        await self._runner.close()

    # -- tracing ------------------------------------------------------------------------------
    @asynccontextmanager
    async def span(
        self,
        tracer: trace.Tracer,
        operation: str,
        table: str,
        *,
        step: Step | None = None,
        latency: LatencyModel | None = None,
    ) -> AsyncIterator[trace.Span]:
        """A DB client span per the OTel DB conventions (``SELECT nova.instances``)."""
        attrs: dict[str, Any] = {
            "db.system.name": self.system,
            "db.namespace": self.namespace,
            "db.operation.name": operation,
            "db.collection.name": table,
            **self.server,
        }
        if step is not None:
            attrs.update(STEP_ATTRS[step])
        with tracer.start_as_current_span(
            f"{operation} {self.namespace}.{table}", kind=SpanKind.CLIENT, attributes=attrs
        ) as span:
            if step is not None and latency is not None:
                async with latency.step(step):  # the statement's own time is part of the step's
                    yield span
            else:
                yield span

    # -- flavors ------------------------------------------------------------------------------
    async def get_flavor(self, flavor_id: str) -> dict[str, Any] | None:
        return await self._read(_q_get_flavor, flavor_id)

    async def list_flavors(self) -> list[dict[str, Any]]:
        return await self._read(_q_rows, _LIST_FLAVORS)

    # -- instances ----------------------------------------------------------------------------
    async def count_instances(self, project_id: str) -> int:
        return await self._read(_q_count_instances, project_id)

    async def create_instance(self, row: dict[str, Any]) -> None:
        now = time.time()
        await self._write(_q_exec, _INSERT_INSTANCE, {**row, "created_at": now, "updated_at": now})

    async def get_instance(self, uuid: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        stmt = _GET_ANY_INSTANCE if include_deleted else _GET_LIVE_INSTANCE
        return await self._read(_q_first, stmt, {"uuid": uuid})

    async def list_instances(
        self,
        *,
        project_id: str | None,
        name: str | None = None,
        status_vm_state: str | None = None,
        limit: int | None = None,
        marker_created: tuple[float, str] | None = None,
        changed_since: float | None = None,
        changed_before: float | None = None,
        vm_states: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Instances newest first; with ``changed_since``/``changed_before`` (Nova's
        ``changes-since``/``changes-before``) deleted ones are included, as Nova lists them."""
        states = None if vm_states is None else sorted(vm_states)
        stmt = _list_instances_stmt(
            changed_since is None and changed_before is None, changed_since is not None,
            changed_before is not None, project_id is not None, None if states is None else len(states),
            bool(name), bool(status_vm_state), marker_created is not None, limit is not None)
        params: dict[str, Any] = {"b_since": changed_since, "b_before": changed_before, "b_project": project_id,
                                  "b_name": name, "b_status": status_vm_state, "b_limit": limit}
        if states:
            params.update((f"b_state{i}", s) for i, s in enumerate(states))
        if marker_created is not None:
            params["b_marker_created"], params["b_marker_uuid"] = marker_created
        return await self._read(_q_rows, stmt, params)

    async def update_instance(
        self, uuid: str, values: dict[str, Any], *, expected_task_state: Iterable[str | None] | None = None
    ) -> bool:
        """Update an instance; with ``expected_task_state`` only from those states (atomic)."""
        expected = None if expected_task_state is None else tuple(expected_task_state)
        params = {**values, "updated_at": time.time(), "b_uuid": uuid}
        return await self._write(_q_rowcount, _update_instance_stmt(expected), params) == 1

    # -- compute nodes and claims -------------------------------------------------------------
    async def list_compute_nodes(self) -> list[dict[str, Any]]:
        return await self._read(_q_rows, _LIST_NODES)

    async def claim(
        self, instance_uuid: str, host: str, generation: int, res: Resources, *, az: str
    ) -> bool:
        """Claim ``res`` on ``host`` if its generation is still ``generation`` and it fits.

        One transaction: usage, allocation record and the instance's host. Returns False when
        another scheduler changed the host first (the caller retries its next candidate).
        """
        return await self._write(_q_claim, instance_uuid, host, generation, res, az)

    async def free(self, instance_uuid: str) -> bool:
        """Give back an instance's allocation (idempotent: False when it had none)."""
        return await self._write(_q_free, instance_uuid)

    async def record_build_failure(self, host: str) -> None:
        await self._write(_q_exec, _RECORD_BUILD_FAILURE, {"b_host": host})

    async def allocations_by_host(self) -> dict[str, list[str]]:
        rows = await self._read(_q_rows, _ALLOCATIONS_BY_HOST)
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["host"], []).append(r["instance_uuid"])
        return out


# -- query functions: run in one transaction by a runner ------------------------------------------

def _q_exec(conn: Conn, stmt: Any, params: Mapping[str, Any] | None = None) -> None:
    conn.execute(stmt, params)


def _q_rowcount(conn: Conn, stmt: Any, params: Mapping[str, Any] | None = None) -> int:
    return conn.execute(stmt, params).rowcount


# The boot path's statements, built once and marked ``prebuilt``: values that change per call are
# bind parameters, the SET columns of a write come from the parameters at execution, and on SQLite
# each runs from a plan compiled once (harness.db.fastpath). Building an UPDATE with its WHERE per
# call cost about as much as running it through SQLAlchemy.
_INSERT_INSTANCE = prebuilt(insert(instances))
_INSERT_ALLOCATION = prebuilt(insert(allocations))
_LIST_FLAVORS = prebuilt(select(flavors).order_by(flavors.c.memory_mb))
_GET_FLAVOR = prebuilt(select(flavors).where(
    (flavors.c.id == bindparam("flavor")) | (flavors.c.name == bindparam("flavor"))))
_COUNT_INSTANCES = prebuilt(select(func.count()).select_from(instances).where(
    and_(instances.c.project_id == bindparam("project_id"), instances.c.deleted.is_(False))))
_LIST_NODES = prebuilt(select(compute_nodes).order_by(compute_nodes.c.id))
_RECORD_BUILD_FAILURE = prebuilt(update(compute_nodes).where(compute_nodes.c.host == bindparam("b_host")).values(
    failed_builds=compute_nodes.c.failed_builds + 1))
_ALLOCATIONS_BY_HOST = prebuilt(select(allocations.c.host, allocations.c.instance_uuid))


@functools.lru_cache(maxsize=None)  # a handful of variants in the whole code; each stays prebuilt
def _update_instance_stmt(expected: tuple[str | None, ...] | None) -> Any:
    """``UPDATE instances SET <params> WHERE uuid = :b_uuid AND NOT deleted [AND task_state in
    expected]``; one statement per distinct ``expected`` (a handful in the whole code)."""
    cond = and_(instances.c.uuid == bindparam("b_uuid"), instances.c.deleted.is_(False))
    if expected is not None:
        named = [s for s in expected if s is not None]
        clause = instances.c.task_state.in_(named) if named else None
        if None in expected:
            null = instances.c.task_state.is_(None)
            clause = null if clause is None else (clause | null)
        cond = and_(cond, clause)
    return prebuilt(update(instances).where(cond))


def _claim_stmt() -> Any:
    c = compute_nodes.c
    cpu, ram, disk = bindparam("b_vcpus"), bindparam("b_memory_mb"), bindparam("b_disk_gb")
    fits = and_(
        c.host == bindparam("b_host"),
        c.generation == bindparam("b_generation"),
        c.vcpus_used + cpu <= c.vcpus * c.cpu_allocation_ratio,
        c.memory_mb_used + ram <= c.memory_mb * c.ram_allocation_ratio,
        c.local_gb_used + disk <= c.local_gb * c.disk_allocation_ratio,
    )
    return update(compute_nodes).where(fits).values(
        vcpus_used=c.vcpus_used + cpu, memory_mb_used=c.memory_mb_used + ram,
        local_gb_used=c.local_gb_used + disk, running_vms=c.running_vms + 1,
        generation=c.generation + 1,
    )


_CLAIM = prebuilt(_claim_stmt())
_SET_HOST = prebuilt(update(instances).where(instances.c.uuid == bindparam("b_uuid")).values(
    host=bindparam("b_host"), availability_zone=bindparam("b_az"), updated_at=bindparam("b_now")))


def _q_rows(conn: Conn, stmt: Any, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    rows = conn.execute(stmt, params).mappings()
    return [r if type(r) is dict else dict(r) for r in rows]  # the fast path's rows are fresh dicts


class unindexed(FunctionElement):
    """A column SQLite's planner must not search an index by (SQLite's unary ``+``, its documented
    way to disqualify a term); the bare column elsewhere.

    For ``changes-since`` lists: SQLite prefers an equality on ``project_id`` to the range on
    ``updated_at`` and then reads every server the project ever had (what the status watchers
    poll 20 times a second: ~0.55 ms a poll at 3,000 servers against ~0.13 ms through the
    ``updated_at`` index for the 30 that changed). An index on both columns would do the same
    but costs every instance update a third index write (~+12 us, and a boot has several)."""

    type = String()
    inherit_cache = True
    name = "unindexed"


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


@functools.lru_cache(maxsize=None)  # one per combination of filters used (a few in practice)
def _list_instances_stmt(live_only: bool, since: bool, before: bool, project: bool, n_states: int | None,
                         name: bool, status: bool, marker: bool, limit: bool) -> Any:
    """``SELECT instances`` newest first with the filters asked for, their values bound (``b_*``
    parameters; unused ones are ignored): a server list runs from a plan instead of building and
    compiling its statement per request (the status watchers poll it 20 times a second)."""
    c = instances.c
    q = select(instances).where(c.deleted.is_(False)) if live_only else select(instances)
    if since:
        q = q.where(c.updated_at >= bindparam("b_since"))
    if before:
        q = q.where(c.updated_at <= bindparam("b_before"))
    if project:  # with changes-since, found through the updated_at index (see unindexed)
        q = q.where((unindexed(c.project_id) if since else c.project_id) == bindparam("b_project"))
    if n_states is not None:
        q = q.where(c.vm_state.in_([bindparam(f"b_state{i}") for i in range(n_states)]))
    if name:
        q = q.where(c.name == bindparam("b_name"))
    if status:
        q = q.where(c.vm_state == bindparam("b_status"))
    if marker:
        created, uuid = bindparam("b_marker_created"), bindparam("b_marker_uuid")
        q = q.where((c.created_at < created) | and_(c.created_at == created, c.uuid < uuid))
    q = q.order_by(c.created_at.desc(), c.uuid.desc())
    if limit:
        q = q.limit(bindparam("b_limit"))
    return prebuilt(q)


# The most frequent read (every GET /servers/{id} poll, conductor's instance_get), built once with
# a bound parameter: building the statement per call cost twice what running it does (SQLite:
# 170 -> 56 us of CPU a read).
_GET_ANY_INSTANCE = prebuilt(select(instances).where(instances.c.uuid == bindparam("uuid")))
_GET_LIVE_INSTANCE = prebuilt(select(instances).where(
    and_(instances.c.uuid == bindparam("uuid"), instances.c.deleted.is_(False))))


def _q_first(conn: Conn, stmt: Any, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    row = conn.execute(stmt, params).mappings().first()
    return row if type(row) is dict or row is None else dict(row)  # the fast path's rows are fresh dicts


def _q_get_flavor(conn: Conn, flavor_id: str) -> dict[str, Any] | None:
    return _q_first(conn, _GET_FLAVOR, {"flavor": flavor_id})


def _q_count_instances(conn: Conn, project_id: str) -> int:
    return conn.execute(_COUNT_INSTANCES, {"project_id": project_id}).scalar_one()


def _serialise_setup(conn: Conn) -> None:
    """PostgreSQL: one process at a time creates tables and seeds rows (the others then find
    them), as several ``harness serve`` processes start together."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SETUP_LOCK_KEY})


def _q_create_schema(conn: Conn) -> None:
    _serialise_setup(conn)
    sa = conn.sa if isinstance(conn, FastConnection) else conn
    metadata.create_all(sa)
    if sa.dialect.name == "sqlite":  # also on a file made before the counter existed
        sqlite_only.create_all(sa)
        for ddl in SQLITE_NODE_VERSION_DDL:
            sa.exec_driver_sql(ddl)


def _q_seed(conn: Conn, hosts: list[dict[str, Any]]) -> None:
    _serialise_setup(conn)
    have = set(conn.execute(select(flavors.c.id)).scalars())
    rows = [
        dict(id=i, name=n, vcpus=c, memory_mb=m, root_gb=d, ephemeral_gb=0, swap=0, is_public=True)
        for i, n, c, m, d in STANDARD_FLAVORS if i not in have
    ]
    if rows:
        conn.execute(insert(flavors), rows)
    known = set(conn.execute(select(compute_nodes.c.host)).scalars())
    new = [h for h in hosts if h["host"] not in known]
    if new:
        conn.execute(insert(compute_nodes), new)


def _q_claim(conn: Conn, instance_uuid: str, host: str, generation: int, res: Resources, az: str) -> bool:
    claimed = conn.execute(_CLAIM, {
        "b_host": host, "b_generation": generation, "b_vcpus": res.vcpus,
        "b_memory_mb": res.memory_mb, "b_disk_gb": res.disk_gb,
    }).rowcount
    if claimed != 1:
        return False
    now = time.time()
    conn.execute(_INSERT_ALLOCATION, {
        "instance_uuid": instance_uuid, "host": host, "vcpus": res.vcpus, "memory_mb": res.memory_mb,
        "disk_gb": res.disk_gb, "created_at": now})
    conn.execute(_SET_HOST, {"b_uuid": instance_uuid, "b_host": host, "b_az": az, "b_now": now})
    return True


def _release_stmt() -> Any:
    c = compute_nodes.c
    return update(compute_nodes).where(c.host == bindparam("b_host")).values(
        vcpus_used=c.vcpus_used - bindparam("b_vcpus"),
        memory_mb_used=c.memory_mb_used - bindparam("b_memory_mb"),
        local_gb_used=c.local_gb_used - bindparam("b_disk_gb"),
        running_vms=c.running_vms - 1,
        generation=c.generation + 1,
    )


_GET_ALLOCATION = prebuilt(select(allocations).where(allocations.c.instance_uuid == bindparam("b_uuid")))
_RELEASE = prebuilt(_release_stmt())
_DELETE_ALLOCATION = prebuilt(allocations.delete().where(allocations.c.instance_uuid == bindparam("b_uuid")))


def _q_free(conn: Conn, instance_uuid: str) -> bool:
    alloc = _q_first(conn, _GET_ALLOCATION, {"b_uuid": instance_uuid})
    if alloc is None:
        return False
    conn.execute(_RELEASE, {"b_host": alloc["host"], "b_vcpus": alloc["vcpus"],
                            "b_memory_mb": alloc["memory_mb"], "b_disk_gb": alloc["disk_gb"]})
    conn.execute(_DELETE_ALLOCATION, {"b_uuid": instance_uuid})
    return True


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
