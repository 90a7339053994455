"""Nova's DB access: every statement the boot path runs, each in a DB client span.

The same query functions run on SQLite (embedded default: a file in WAL mode, sync driver, run
inline on the event loop when one process owns the DB, in worker threads when several processes
share the file) and PostgreSQL (asyncpg, through SQLAlchemy's async engine).
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
    Connection, Engine, and_, bindparam, create_engine, event, func, insert, select, text, update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from harness.db.models import allocations, compute_nodes, flavors, instances, metadata
from harness.latency import LatencyModel
from harness.steps import Step
from harness.telemetry import step_attributes

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


Conn = Connection  # what a query function receives: a sync SQLAlchemy Connection in a transaction


class _ThreadRunner:
    """SQLite: a sync engine, one writer thread and a few reader threads.

    A whole operation (every statement of a claim, say) runs in one thread hop, instead of one hop
    per statement as an async driver makes; with a single writer SQLite never answers "database is
    locked", and WAL lets readers go on beside it.
    """

    def __init__(self, url: URL, readers: int) -> None:
        self.engine: Engine = create_engine(
            url.set(drivername="sqlite"), connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=readers + 1, max_overflow=2,
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="nova-db-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="nova-db-reader")

    async def run(self, fn: Callable[..., T], *args: Any, write: bool) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer if write else self._readers, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple) -> T:
        with self.engine.begin() as conn:
            return fn(conn, *args)

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
    """

    def __init__(self, url: URL) -> None:
        self.engine: Engine = create_engine(url.set(drivername="sqlite"), connect_args={"timeout": 30},
                                            poolclass=StaticPool)
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._conn: Connection | None = None

    async def run(self, fn: Callable[..., T], *args: Any, write: bool) -> T:
        conn = self._conn
        if conn is None:
            conn = self._conn = self.engine.connect()
        with conn.begin():
            return fn(conn, *args)

    async def close(self) -> None:
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

    def __init__(self, url: str, *, pool_size: int = 5, shared: bool = True) -> None:
        """``shared=False`` says no other process opens this DB (the embedded cloud with every
        DB-using service in it): SQLite then runs on the event loop instead of worker threads."""
        self.url = url
        u = make_url(url)
        self.system = u.get_backend_name()
        self.namespace = "nova"
        # OTel DB conventions: where the server is (absent for an embedded SQLite file)
        self.server: dict[str, Any] = {}
        if u.host:
            self.server = {"server.address": u.host, "server.port": u.port or _DEFAULT_PORTS.get(self.system, 0)}
        self._runner: _ThreadRunner | _InlineRunner | _AsyncRunner
        if self.system == "sqlite" and not shared:
            self._runner = _InlineRunner(u)
        elif self.system == "sqlite":
            self._runner = _ThreadRunner(u, readers=max(1, min(pool_size, 4)))
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
            attrs.update(step_attributes(step))
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
        return await self._read(_q_rows, select(flavors).order_by(flavors.c.memory_mb))

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
        if changed_since is None and changed_before is None:
            q = select(instances).where(instances.c.deleted.is_(False))
        else:
            q = select(instances)
            if changed_since is not None:
                q = q.where(instances.c.updated_at >= changed_since)
            if changed_before is not None:
                q = q.where(instances.c.updated_at <= changed_before)
        if project_id is not None:
            q = q.where(instances.c.project_id == project_id)
        if vm_states is not None:
            q = q.where(instances.c.vm_state.in_(sorted(vm_states)))
        if name:
            q = q.where(instances.c.name == name)
        if status_vm_state:
            q = q.where(instances.c.vm_state == status_vm_state)
        if marker_created is not None:
            created, uuid = marker_created
            q = q.where(
                (instances.c.created_at < created)
                | and_(instances.c.created_at == created, instances.c.uuid < uuid)
            )
        q = q.order_by(instances.c.created_at.desc(), instances.c.uuid.desc())
        if limit is not None:
            q = q.limit(limit)
        return await self._read(_q_rows, q)

    async def update_instance(
        self, uuid: str, values: dict[str, Any], *, expected_task_state: Iterable[str | None] | None = None
    ) -> bool:
        """Update an instance; with ``expected_task_state`` only from those states (atomic)."""
        expected = None if expected_task_state is None else tuple(expected_task_state)
        params = {**values, "updated_at": time.time(), "b_uuid": uuid}
        return await self._write(_q_rowcount, _update_instance_stmt(expected), params) == 1

    # -- compute nodes and claims -------------------------------------------------------------
    async def list_compute_nodes(self) -> list[dict[str, Any]]:
        return await self._read(_q_rows, select(compute_nodes).order_by(compute_nodes.c.id))

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
        c = compute_nodes.c
        await self._write(_q_exec, update(compute_nodes).where(c.host == host).values(
            failed_builds=c.failed_builds + 1))

    async def allocations_by_host(self) -> dict[str, list[str]]:
        rows = await self._read(_q_rows, select(allocations.c.host, allocations.c.instance_uuid))
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["host"], []).append(r["instance_uuid"])
        return out


# -- query functions: run in one transaction by a runner ------------------------------------------

def _q_exec(conn: Conn, stmt: Any, params: Mapping[str, Any] | None = None) -> None:
    conn.execute(stmt, params)


def _q_rowcount(conn: Conn, stmt: Any, params: Mapping[str, Any] | None = None) -> int:
    return conn.execute(stmt, params).rowcount


# The boot path's writes, built once: the SET columns come from the parameters at execution and
# SQLAlchemy caches the compiled form, so a write costs the SQL and not the statement building
# (building an UPDATE with its WHERE per call cost about as much as running it).
_INSERT_INSTANCE = insert(instances)
_INSERT_ALLOCATION = insert(allocations)


@functools.lru_cache(maxsize=32)
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
    return update(instances).where(cond)


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


_CLAIM = _claim_stmt()
_SET_HOST = update(instances).where(instances.c.uuid == bindparam("b_uuid")).values(
    host=bindparam("b_host"), availability_zone=bindparam("b_az"), updated_at=bindparam("b_now"))


def _q_rows(conn: Conn, stmt: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(stmt).mappings()]


# The most frequent read (every GET /servers/{id} poll, conductor's instance_get), built once with
# a bound parameter: building the statement per call cost twice what running it does (SQLite:
# 170 -> 56 us of CPU a read).
_GET_ANY_INSTANCE = select(instances).where(instances.c.uuid == bindparam("uuid"))
_GET_LIVE_INSTANCE = select(instances).where(
    and_(instances.c.uuid == bindparam("uuid"), instances.c.deleted.is_(False)))


def _q_first(conn: Conn, stmt: Any, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    row = conn.execute(stmt, params).mappings().first()
    return dict(row) if row else None


def _q_get_flavor(conn: Conn, flavor_id: str) -> dict[str, Any] | None:
    return _q_first(conn, select(flavors).where((flavors.c.id == flavor_id) | (flavors.c.name == flavor_id)))


def _q_count_instances(conn: Conn, project_id: str) -> int:
    return conn.execute(
        select(func.count()).select_from(instances).where(
            and_(instances.c.project_id == project_id, instances.c.deleted.is_(False)))
    ).scalar_one()


def _serialise_setup(conn: Conn) -> None:
    """PostgreSQL: one process at a time creates tables and seeds rows (the others then find
    them), as several ``harness serve`` processes start together."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SETUP_LOCK_KEY})


def _q_create_schema(conn: Conn) -> None:
    _serialise_setup(conn)
    metadata.create_all(conn)


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


def _q_free(conn: Conn, instance_uuid: str) -> bool:
    c = compute_nodes.c
    alloc = _q_first(conn, select(allocations).where(allocations.c.instance_uuid == instance_uuid))
    if alloc is None:
        return False
    conn.execute(update(compute_nodes).where(c.host == alloc["host"]).values(
        vcpus_used=c.vcpus_used - alloc["vcpus"],
        memory_mb_used=c.memory_mb_used - alloc["memory_mb"],
        local_gb_used=c.local_gb_used - alloc["disk_gb"],
        running_vms=c.running_vms - 1,
        generation=c.generation + 1,
    ))
    conn.execute(allocations.delete().where(allocations.c.instance_uuid == instance_uuid))
    return True


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
