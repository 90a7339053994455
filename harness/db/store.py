"""Nova's DB access: every statement the boot path runs, each in a DB client span.

The same code runs on SQLite (embedded default: a file in WAL mode) and PostgreSQL (asyncpg).
Resource claims are atomic: usage is added in one ``UPDATE ... WHERE generation = :seen AND
<fits>`` (as placement's generation check works), so concurrent schedulers never over-commit; a
claim that loses the race returns ``False`` and the scheduler tries its next candidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable, Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import and_, event, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from harness.db.models import allocations, compute_nodes, flavors, instances, metadata
from harness.latency import LatencyModel
from harness.steps import Step
from harness.telemetry import step_attributes

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


class NovaDB:
    """Nova's DB, reached only by nova-api, nova-scheduler and nova-conductor."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        u = make_url(url)
        self.system = "sqlite" if u.get_backend_name() == "sqlite" else u.get_backend_name()
        self.namespace = "nova"
        kwargs: dict[str, Any] = {}
        if self.system == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=0)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # One process owns an embedded SQLite file: serialise writers here instead of letting
        # SQLite answer "database is locked" (PostgreSQL relies on the generation check alone).
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.system == "sqlite" else None
        if self.system == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    # -- life cycle ---------------------------------------------------------------------------
    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def seed(self, hosts: Iterable[Mapping[str, Any]]) -> None:
        """Seed flavors and compute nodes (idempotent: existing rows are kept)."""
        async with self._write() as conn:
            have = set((await conn.execute(select(flavors.c.id))).scalars())
            rows = [
                dict(id=i, name=n, vcpus=c, memory_mb=m, root_gb=d, ephemeral_gb=0, swap=0,
                     is_public=True)
                for i, n, c, m, d in STANDARD_FLAVORS if i not in have
            ]
            if rows:
                await conn.execute(insert(flavors), rows)
            known = set((await conn.execute(select(compute_nodes.c.host))).scalars())
            new = [dict(h) for h in hosts if h["host"] not in known]
            if new:
                await conn.execute(insert(compute_nodes), new)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

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
        }
        if step is not None:
            attrs.update(step_attributes(step))
        with tracer.start_as_current_span(
            f"{operation} {self.namespace}.{table}", kind=SpanKind.CLIENT, attributes=attrs
        ) as span:
            if step is not None and latency is not None:
                await latency.delay(step)
            yield span

    # -- flavors ------------------------------------------------------------------------------
    async def get_flavor(self, flavor_id: str) -> dict[str, Any] | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(flavors).where((flavors.c.id == flavor_id) | (flavors.c.name == flavor_id))
                )
            ).mappings().first()
        return dict(row) if row else None

    async def list_flavors(self) -> list[dict[str, Any]]:
        async with self._read() as conn:
            rows = (await conn.execute(select(flavors).order_by(flavors.c.memory_mb))).mappings()
            return [dict(r) for r in rows]

    # -- instances ----------------------------------------------------------------------------
    async def count_instances(self, project_id: str) -> int:
        async with self._read() as conn:
            return (
                await conn.execute(
                    select(func.count()).select_from(instances).where(
                        and_(instances.c.project_id == project_id, instances.c.deleted.is_(False))
                    )
                )
            ).scalar_one()

    async def create_instance(self, row: dict[str, Any]) -> None:
        now = time.time()
        row = {"created_at": now, "updated_at": now, **row}
        async with self._write() as conn:
            await conn.execute(insert(instances), row)

    async def get_instance(self, uuid: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        cond = instances.c.uuid == uuid
        if not include_deleted:
            cond = and_(cond, instances.c.deleted.is_(False))
        async with self._read() as conn:
            row = (await conn.execute(select(instances).where(cond))).mappings().first()
        return dict(row) if row else None

    async def list_instances(
        self,
        *,
        project_id: str | None,
        name: str | None = None,
        status_vm_state: str | None = None,
        limit: int | None = None,
        marker_created: tuple[float, str] | None = None,
    ) -> list[dict[str, Any]]:
        q = select(instances).where(instances.c.deleted.is_(False))
        if project_id is not None:
            q = q.where(instances.c.project_id == project_id)
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
        async with self._read() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings()]

    async def update_instance(
        self, uuid: str, values: dict[str, Any], *, expected_task_state: Iterable[str | None] | None = None
    ) -> bool:
        """Update an instance; with ``expected_task_state`` only from those states (atomic)."""
        cond = and_(instances.c.uuid == uuid, instances.c.deleted.is_(False))
        if expected_task_state is not None:
            states = list(expected_task_state)
            named = [s for s in states if s is not None]
            clause = instances.c.task_state.in_(named) if named else None
            if None in states:
                null = instances.c.task_state.is_(None)
                clause = null if clause is None else (clause | null)
            cond = and_(cond, clause)
        values = {**values, "updated_at": time.time()}
        async with self._write() as conn:
            res = await conn.execute(update(instances).where(cond).values(**values))
        return res.rowcount == 1

    # -- compute nodes and claims -------------------------------------------------------------
    async def list_compute_nodes(self) -> list[dict[str, Any]]:
        async with self._read() as conn:
            rows = (await conn.execute(select(compute_nodes).order_by(compute_nodes.c.id))).mappings()
            return [dict(r) for r in rows]

    async def claim(
        self, instance_uuid: str, host: str, generation: int, res: Resources, *, az: str
    ) -> bool:
        """Claim ``res`` on ``host`` if its generation is still ``generation`` and it fits.

        One transaction: usage, allocation record and the instance's host. Returns False when
        another scheduler changed the host first (the caller retries its next candidate).
        """
        c = compute_nodes.c
        fits = and_(
            c.host == host,
            c.generation == generation,
            c.vcpus_used + res.vcpus <= c.vcpus * c.cpu_allocation_ratio,
            c.memory_mb_used + res.memory_mb <= c.memory_mb * c.ram_allocation_ratio,
            c.local_gb_used + res.disk_gb <= c.local_gb * c.disk_allocation_ratio,
        )
        async with self._write() as conn:
            res_upd = await conn.execute(
                update(compute_nodes).where(fits).values(
                    vcpus_used=c.vcpus_used + res.vcpus,
                    memory_mb_used=c.memory_mb_used + res.memory_mb,
                    local_gb_used=c.local_gb_used + res.disk_gb,
                    running_vms=c.running_vms + 1,
                    generation=c.generation + 1,
                )
            )
            if res_upd.rowcount != 1:
                return False
            await conn.execute(
                insert(allocations).values(
                    instance_uuid=instance_uuid, host=host, vcpus=res.vcpus,
                    memory_mb=res.memory_mb, disk_gb=res.disk_gb, created_at=time.time(),
                )
            )
            await conn.execute(
                update(instances).where(instances.c.uuid == instance_uuid).values(
                    host=host, availability_zone=az,
                    updated_at=time.time(),
                )
            )
        return True

    async def free(self, instance_uuid: str) -> bool:
        """Give back an instance's allocation (idempotent: False when it had none)."""
        c = compute_nodes.c
        async with self._write() as conn:
            alloc = (
                await conn.execute(select(allocations).where(allocations.c.instance_uuid == instance_uuid))
            ).mappings().first()
            if alloc is None:
                return False
            await conn.execute(
                update(compute_nodes).where(c.host == alloc["host"]).values(
                    vcpus_used=c.vcpus_used - alloc["vcpus"],
                    memory_mb_used=c.memory_mb_used - alloc["memory_mb"],
                    local_gb_used=c.local_gb_used - alloc["disk_gb"],
                    running_vms=c.running_vms - 1,
                    generation=c.generation + 1,
                )
            )
            await conn.execute(allocations.delete().where(allocations.c.instance_uuid == instance_uuid))
        return True

    async def record_build_failure(self, host: str) -> None:
        async with self._write() as conn:
            await conn.execute(
                update(compute_nodes).where(compute_nodes.c.host == host).values(
                    failed_builds=compute_nodes.c.failed_builds + 1
                )
            )

    async def allocations_by_host(self) -> dict[str, list[str]]:
        async with self._read() as conn:
            rows = (await conn.execute(select(allocations.c.host, allocations.c.instance_uuid))).all()
        out: dict[str, list[str]] = {}
        for host, uuid in rows:
            out.setdefault(host, []).append(uuid)
        return out


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
