"""Nova's periodic tasks that keep the cloud honest when a message, a host or a request is lost.

Faults (and bugs) can leave a boot nobody is working on: a lost ``build_and_run_instance`` cast, a
compute host that hung, a reply that never came. The guarantee "every accepted boot ends ACTIVE or
ERROR within a bound, and dead servers hold no resources" is kept here, as Nova keeps it:

* :class:`ConductorTasks` (runs beside nova-conductor, which owns the DB):
  - **build timeout** (Nova's ``instance_build_timeout``, ``_check_instance_build_time``): a build
    still in BUILD ``instance_build_timeout`` seconds after it was accepted goes to ERROR with
    Nova's fault "Instance build timed out. Set to error state." and its claim is freed. The
    transition is conditional on the task state, so it never races a build that just succeeded.
  - **stuck deletes**: a server in ``deleting`` for that long (its compute host never answered)
    is deleted locally, its claim freed, as nova-api deletes servers of a down host.
  - **orphaned allocations** (placement's heal): an allocation whose instance is deleted, missing
    or in ERROR is freed.
* :class:`ComputeTasks` (runs beside nova-compute): a VM the fake hypervisor still runs for a
  server that is deleted, in ERROR or placed elsewhere is destroyed and its ports released
  (Nova's ``_cleanup_running_deleted_instances`` with ``running_deleted_instance_action=reap``).

So the bound on a boot is ``instance_build_timeout + periodic_interval``. Each run that acts opens
a span (``nova.periodic.<task>``) with an event per server it touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from opentelemetry import trace
from sqlalchemy import and_, or_, select

from harness.db.models import allocations, instances

if TYPE_CHECKING:
    from harness.db import NovaDB
    from harness.services.nova_compute import NovaCompute
    from harness.services.nova_conductor import NovaConductor

log = logging.getLogger(__name__)

BUILD_TIMEOUT_FAULT = "Instance build timed out. Set to error state."


class PeriodicTask:
    """Runs ``fn`` every ``interval`` seconds until stopped; a failing run is logged, not fatal."""

    def __init__(self, name: str, interval: float, fn: Callable[[], Awaitable[Any]]) -> None:
        self.name, self.interval, self.fn = name, interval, fn
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"periodic-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic task %s failed (it runs again in %g s)", self.name, self.interval)


# -- the conductor's tasks --------------------------------------------------------------------------

class ConductorTasks:
    """Build timeout, stuck deletes and orphaned allocations, against Nova's DB."""

    def __init__(self, conductor: "NovaConductor") -> None:
        self.db: NovaDB = conductor.db
        self.tracer = conductor.tracer
        self.settings = conductor.settings
        self.periodic = PeriodicTask("nova-conductor", self.settings.periodic_interval, self.run_once)

    async def run_once(self, now: float | None = None) -> dict[str, int]:
        """One pass; returns how many servers each task acted on."""
        now = time.time() if now is None else now
        done = {"build_timeout": 0, "stuck_delete": 0, "orphaned_allocation": 0}
        timeout = self.settings.instance_build_timeout
        if timeout > 0:
            cutoff = now - timeout
            stuck = await self.db._read(_q_stuck, cutoff)
            if stuck:
                with self.tracer.start_as_current_span("nova.periodic.build_timeout") as span:
                    for uuid, task_state in stuck:
                        if task_state == "deleting":
                            await self._finish_delete(uuid, span)
                            done["stuck_delete"] += 1
                        elif await self._time_out(uuid, span):
                            done["build_timeout"] += 1
        orphans = await self.db._read(_q_orphans)
        if orphans:
            with self.tracer.start_as_current_span("nova.periodic.heal_allocations") as span:
                for uuid in orphans:
                    if await self.db.free(uuid):
                        done["orphaned_allocation"] += 1
                        span.add_event("allocation.freed", {"openstack.instance.id": uuid})
        if any(done.values()):
            log.warning("periodic tasks acted: %s", done)
        return done

    async def _time_out(self, uuid: str, span: trace.Span) -> bool:
        ok = await self.db.update_instance(uuid, {
            "vm_state": "error", "task_state": None, "host": None,
            "fault_message": BUILD_TIMEOUT_FAULT, "fault_code": 500,
        }, expected_task_state=["scheduling"])
        if ok:
            await self.db.free(uuid)
            span.add_event("instance.build_timed_out", {"openstack.instance.id": uuid})
        return ok

    async def _finish_delete(self, uuid: str, span: trace.Span) -> None:
        await self.db.free(uuid)
        await self.db.update_instance(uuid, {"vm_state": "deleted", "task_state": None, "deleted": True},
                                      expected_task_state=["deleting"])
        span.add_event("instance.deleted_locally", {"openstack.instance.id": uuid})


def _q_stuck(conn: Any, cutoff: float) -> list[tuple[str, str]]:
    """Builds accepted before ``cutoff`` still building; deletes asked before it still deleting."""
    c = instances.c
    building = and_(c.vm_state == "building", c.task_state == "scheduling", c.created_at < cutoff)
    deleting = and_(c.task_state == "deleting", c.updated_at < cutoff)
    rows = conn.execute(select(c.uuid, c.task_state).where(and_(c.deleted.is_(False),
                                                                or_(building, deleting))))
    return [(r.uuid, r.task_state) for r in rows]


def _q_orphans(conn: Any) -> list[str]:
    """Allocations of instances that are gone, deleted or in ERROR."""
    i = instances.c
    q = (select(allocations.c.instance_uuid)
         .select_from(allocations.outerjoin(instances, allocations.c.instance_uuid == i.uuid))
         .where(or_(i.uuid.is_(None), i.deleted.is_(True), i.vm_state == "error")))
    return [r[0] for r in conn.execute(q)]


def _q_states(conn: Any, uuids: list[str]) -> dict[str, dict[str, Any]]:
    c = instances.c
    rows = conn.execute(select(c.uuid, c.vm_state, c.task_state, c.host, c.deleted).where(c.uuid.in_(uuids)))
    return {r.uuid: {"vm_state": r.vm_state, "task_state": r.task_state, "host": r.host,
                     "deleted": bool(r.deleted)} for r in rows}


async def instance_states(db: "NovaDB", uuids: list[str]) -> dict[str, dict[str, Any]]:
    """State of each instance (deleted ones too; unknown ones are absent)."""
    if not uuids:
        return {}
    return await db._read(_q_states, list(uuids))


# -- the compute side -------------------------------------------------------------------------------

class ComputeTasks:
    """Reaps VMs the fake hypervisors run for servers that are no longer theirs."""

    def __init__(self, compute: "NovaCompute") -> None:
        self.compute = compute
        self.tracer = compute.tracer
        self.periodic = PeriodicTask("nova-compute", compute.settings.periodic_interval, self.run_once)

    async def run_once(self) -> int:
        running = {uuid: host for host in self.compute.hosts.values() for uuid in host.driver.instances
                   if uuid not in host.building}
        if not running:
            return 0
        states = await self.compute.conductor.call("conductor", "instance_states",
                                                   {"uuids": sorted(running)}, timeout=30)
        reaped = 0
        for uuid, host in running.items():
            st = states.get(uuid)
            gone = st is None or st["deleted"] or st["vm_state"] in ("error", "deleted")
            elsewhere = st is not None and not gone and st["host"] not in (None, host.name)
            if not (gone or elsewhere) or uuid in host.building:
                continue
            with self.tracer.start_as_current_span("nova.periodic.reap_vm", attributes={
                    "openstack.instance.id": uuid, "openstack.host": host.name}) as span:
                span.add_event("vm.reaped", {"reason": "placed elsewhere" if elsewhere else "server gone"})
                await host.driver.destroy(uuid)
                if gone and st is not None:  # its ports are ours to give back, not another host's
                    try:
                        await self.compute._release_network({"uuid": uuid})
                    except Exception as exc:
                        span.add_event("ports.not_released", {"reason": str(exc) or type(exc).__name__})
            reaped += 1
        if reaped:
            log.warning("nova-compute reaped %d VMs of servers that are gone", reaped)
        return reaped
