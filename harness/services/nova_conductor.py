"""nova-conductor: nova-compute's only way to the DB (seed, part 3.1), steps 15-18.

Besides ``instance_get`` (the boot's steps 15-18) it saves the instance state compute reports,
reschedules a failed build to an alternate host (Nova's ``max_attempts``) and destroys deleted
instances, always giving their resources back.
"""

from __future__ import annotations

import time
from typing import Any

from harness.db import Resources, image_cache, providers
from harness.messaging.rpc import Method
from harness.scheduling.base import HostState
from harness.scheduling.claims import claim_with_retries
from harness.services.base import CloudContext, Service
from harness.services.nova_periodic import ConductorTasks, instance_states
from harness.steps import Step
from harness.telemetry import caller_step, step_span


class NovaConductor(Service):
    name = "nova-conductor"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        if ctx.db is None:
            raise ValueError("nova-conductor needs Nova's DB")
        self.db = ctx.db
        self.compute = self.rpc_client("nova")
        self.rpc_server("nova", "conductor", {
            "instance_get": Method(self.instance_get, receive_step=Step.CONDUCTOR_RECEIVE,
                                   reply_step=Step.CONDUCTOR_REPLY,
                                   caller_step=Step.COMPUTE_CALL_CONDUCTOR),
            "instance_update": Method(self.instance_update),
            "build_failed": Method(self.build_failed),
            "instance_destroy": Method(self.instance_destroy),
            "compute_node_register": Method(self.compute_node_register),
            "image_cached": Method(self.image_cached),
            "instance_states": Method(self.instance_states),
        }, workers=self.settings.conductor_workers)
        self.tasks = ConductorTasks(self)  # build timeout, stuck deletes, orphaned allocations

    async def start(self) -> None:
        await super().start()
        self.tasks.periodic.start()

    async def stop(self) -> None:
        await self.tasks.periodic.stop()
        await super().stop()

    async def instance_states(self, uuids: list[str]) -> dict[str, dict[str, Any]]:
        """nova-compute's periodic task asks which of its VMs still have a live server."""
        async with self.db.span(self.tracer, "SELECT", "instances"):
            return await instance_states(self.db, uuids)

    async def instance_get(self, instance_uuid: str) -> dict[str, Any]:
        in_boot = caller_step() == Step.COMPUTE_CALL_CONDUCTOR  # steps 16-17, else unnumbered
        if in_boot:
            with step_span(self.tracer, Step.CONDUCTOR_LOOKUP_INSTANCE,
                           attributes={"openstack.instance.id": instance_uuid}):
                await self.latency.delay(Step.CONDUCTOR_LOOKUP_INSTANCE)
        async with self.db.span(self.tracer, "SELECT", "instances",
                                step=Step.CONDUCTOR_DB_READ if in_boot else None, latency=self.latency):
            inst = await self.db.get_instance(instance_uuid)
        if inst is None:
            raise LookupError(f"Instance {instance_uuid} could not be found.")
        return inst

    async def instance_update(self, instance_uuid: str, values: dict[str, Any],
                              expected_task_state: list[str | None] | None = None) -> bool:
        async with self.db.span(self.tracer, "UPDATE", "instances"):
            return await self.db.update_instance(instance_uuid, values,
                                                 expected_task_state=expected_task_state)

    async def build_failed(self, instance_uuid: str, host: str, reason: str, spec: dict[str, Any],
                           alternates: list[str], attempt: int) -> str:
        """Free the failed host's claim; try an alternate, or put the instance in ERROR."""
        async with self.db.span(self.tracer, "UPDATE", "compute_nodes"):
            await self.db.free(instance_uuid)
            await self.db.record_build_failure(host)
        inst = await self.db.get_instance(instance_uuid)
        if inst is None or inst["task_state"] == "deleting":
            return "deleted"
        if inst["vm_state"] != "building":  # timed out to ERROR meanwhile: nothing to retry
            return inst["vm_state"]
        if attempt < self.settings.max_attempts:
            res = Resources(spec["vcpus"], spec["memory_mb"], spec["disk_gb"])
            for i, alt in enumerate(alternates):
                row = await providers.get_node(self.db, alt)
                if row is None:
                    continue
                async with self.db.span(self.tracer, "UPDATE", "compute_nodes") as span:
                    span.set_attribute("openstack.scheduler.reschedule_to", alt)
                    claimed, conflicts = await claim_with_retries(self.db, instance_uuid,
                                                                  HostState.from_row(row), res)
                    span.set_attribute("openstack.scheduler.claim_conflicts", conflicts)
                if claimed is not None:
                    await self.compute.cast(f"compute.{alt}", "build_and_run_instance", {
                        "instance_uuid": instance_uuid, "spec": spec,
                        "alternates": alternates[i + 1:], "attempt": attempt + 1,
                    })
                    return f"rescheduled to {alt}"
        message = (f"Build of instance {instance_uuid} aborted: {reason}" if attempt == 1 else
                   f"Exceeded maximum number of retries. Exhausted all hosts available for retrying "
                   f"build failures for instance {instance_uuid}. Last error: {reason}")
        ok = await self.db.update_instance(instance_uuid, {
            "vm_state": "error", "task_state": None, "host": None,
            "fault_message": message, "fault_code": 500,
        }, expected_task_state=["scheduling"])  # not over a delete or a timeout that came first
        return "error" if ok else "gone"

    async def compute_node_register(self, nodes: list[dict[str, Any]]) -> int:
        """A nova-compute in its own process reports its hosts (as Nova's resource tracker creates
        compute nodes through the conductor); known hosts are kept as they are."""
        async with self.db.span(self.tracer, "INSERT", "compute_nodes") as span:
            span.set_attribute("openstack.compute.hosts", len(nodes))
            await self.db.seed(nodes)
        return len(nodes)

    async def image_cached(self, host: str, image_id: str) -> bool:
        """A compute host now holds ``image_id`` in its image cache (the scheduler can use it)."""
        async with self.db.span(self.tracer, "INSERT", "compute_image_cache"):
            return await image_cache.add(self.db, host, image_id)

    async def instance_destroy(self, instance_uuid: str) -> None:
        async with self.db.span(self.tracer, "UPDATE", "instances"):
            await self.db.free(instance_uuid)
            await self.db.update_instance(instance_uuid, {
                "vm_state": "deleted", "task_state": None, "deleted": True, "updated_at": time.time(),
            })
