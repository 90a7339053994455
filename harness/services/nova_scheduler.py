"""nova-scheduler: steps 9-12 (take the request, choose a host, claim it, cast to its compute).

The algorithm is pluggable (:mod:`harness.scheduling`). Per round it reads the compute nodes, the
hosts whose image cache holds the requested image (when the algorithm looks at it) and, for a
server-group member, the group and its members' hosts, and runs the algorithm over them (step 10). The claim (step 11) is atomic in
the DB with a generation check, so several scheduler workers never over-commit a host; as placement
does, a generation conflict re-reads that one host and retries while the request still fits
(:mod:`harness.scheduling.claims`), then moves to the next
candidate; when every candidate is lost the hosts are read again (up to ``CLAIM_ROUNDS`` rounds).
Nothing fits: ``NoValidHost``, which nova-api turns into an ERROR server. Members of an
``affinity``/``anti-affinity`` group are scheduled one at a time per group (select and claim under
one lock), so concurrent workers cannot both place a member against the policy; real Nova catches
that race late, on the compute host (``_validate_instance_group_policy``), and reschedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import MappingProxyType
from typing import Any

from harness.db import Resources, groups, image_cache, providers
from harness.messaging.rpc import Method
from harness.scheduling.base import Decision, HostState, RequestSpec, ServerGroup, make_scheduler
from harness.scheduling.claims import claim_with_retries
from harness.scheduling.hosts import HostTable
from harness.services.base import CloudContext, Service
from harness.steps import Step
from harness.telemetry import mark_error

CLAIM_ROUNDS = 3
HARD_POLICIES = ("affinity", "anti-affinity")


class NoValidHost(Exception):
    def __init__(self, reason: str = "There are not enough hosts available.") -> None:
        super().__init__(f"No valid host was found. {reason}")


def request_spec(spec: dict[str, Any], *, num_alternates: int = 2, group: ServerGroup | None = None,
                 ignore_hosts: list[str] | None = None) -> RequestSpec:
    return RequestSpec(
        instance_uuid=spec["instance_uuid"], vcpus=spec["vcpus"], memory_mb=spec["memory_mb"],
        disk_gb=spec["disk_gb"], availability_zone=spec.get("availability_zone"),
        image_id=spec.get("image_id"), image_arch=spec.get("image_arch"),
        ignore_hosts=frozenset(ignore_hosts or ()), num_alternates=num_alternates, group=group,
    )


class NovaScheduler(Service):
    name = "nova-scheduler"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        if ctx.db is None:
            raise ValueError("nova-scheduler needs Nova's DB")
        self.db = ctx.db
        self.algorithm = make_scheduler(
            self.settings.scheduler, seed=self.settings.seed, options=self.settings.scheduler_options
        )
        self._group_locks: dict[str, asyncio.Lock] = {}
        self.compute = self.rpc_client("nova")
        self.rpc_server(
            "nova", "scheduler",
            {"select_destinations": Method(self.select_destinations, receive_step=Step.SCHEDULER_RECEIVE)},
            workers=self.settings.scheduler_workers,
        )

    async def select_destinations(self, spec: dict[str, Any]) -> dict[str, Any]:
        group_uuid = spec.get("group")
        group_row = await groups.get_group(self.db, group_uuid) if group_uuid else None
        lock: Any = contextlib.nullcontext()
        if group_row is not None and group_row["policy"] in HARD_POLICIES:
            lock = self._group_locks.setdefault(group_row["uuid"], asyncio.Lock())
        async with lock:
            chosen, decision, rounds, conflicts = await self._schedule(spec, group_row)
        alternates = [h.host for h in decision.candidates if h.host != chosen.host]
        await self.compute.cast(
            f"compute.{chosen.host}", "build_and_run_instance",
            {"instance_uuid": spec["instance_uuid"], "spec": spec, "alternates": alternates, "attempt": 1},
            step=Step.SCHEDULER_CAST_BUILD,
        )
        return {"host": chosen.host, "alternates": alternates, "rounds": rounds, "conflicts": conflicts}

    async def _schedule(self, spec: dict[str, Any], group_row: dict[str, Any] | None
                        ) -> tuple[HostState, Decision, int, int]:
        conflicts = 0
        for round_no in range(1, CLAIM_ROUNDS + 1):
            req, decision = await self._select(spec, group_row, round_no)
            if not decision.candidates:
                raise NoValidHost()
            chosen, lost = await self._claim(req, decision)
            conflicts += lost
            if chosen is not None:
                return chosen, decision, round_no, conflicts
        raise NoValidHost("Every candidate host was claimed by a concurrent request.")

    async def _read_state(self, spec: dict[str, Any], group_row: dict[str, Any] | None
                          ) -> tuple[HostTable, ServerGroup | None]:
        """The compute nodes, who caches the image and where the group's members are."""
        image_id = spec.get("image_id")

        async def nodes() -> dict[str, tuple]:
            async with self.db.span(self.tracer, "SELECT", "compute_nodes"):
                return await providers.node_columns(self.db)

        async def cached() -> list[str]:
            if not image_id or not self.algorithm.uses_image_cache:
                return []
            async with self.db.span(self.tracer, "SELECT", "compute_image_cache"):
                return await image_cache.hosts_with(self.db, image_id)

        async def members() -> dict[str, int]:
            if group_row is None:
                return {}
            async with self.db.span(self.tracer, "SELECT", "instance_group_members"):
                return await groups.member_hosts(self.db, group_row["uuid"], exclude=spec["instance_uuid"])

        columns, holders, per_host = await asyncio.gather(nodes(), cached(), members())
        table = HostTable.from_columns(columns, images={image_id: holders} if image_id else None)
        group = None
        if group_row is not None:
            group = ServerGroup(uuid=group_row["uuid"], policy=group_row["policy"],
                                member_hosts=MappingProxyType(per_host),
                                max_server_per_host=int((group_row["rules"] or {}).get("max_server_per_host", 1)))
        return table, group

    async def _select(self, spec: dict[str, Any], group_row: dict[str, Any] | None, round_no: int
                      ) -> tuple[RequestSpec, Decision]:
        """Step 10: read the hosts' state and run the algorithm over it."""
        async with self.latency.span(self.tracer, Step.SCHEDULER_SELECT_HOST, attributes={
            "openstack.scheduler.algorithm": self.algorithm.name,
            "openstack.scheduler.round": round_no,
            "openstack.instance.id": spec["instance_uuid"],
        }) as span:
            table, group = await self._read_state(spec, group_row)
            req = request_spec(spec, num_alternates=self.settings.max_attempts - 1, group=group)
            scan_ms = self.latency.cost("scheduler_ms_per_host") * len(table)
            if scan_ms > 0:
                await self.latency.sleep_ms(scan_ms)
            t0 = time.perf_counter()
            decision = self.algorithm.select(table, req)
            span.set_attributes({
                "openstack.scheduler.algorithm_ms": (time.perf_counter() - t0) * 1000,
                "openstack.scheduler.hosts_considered": decision.considered,
                "openstack.scheduler.hosts_passed": decision.passed,
                "openstack.scheduler.filters": [f"{n}={c}" for n, c in decision.filter_counts],
                "openstack.scheduler.candidates": [h.host for h in decision.candidates],
            })
            if group is not None:
                span.set_attributes({"openstack.server_group.id": group.uuid,
                                     "openstack.server_group.policy": group.policy})
            if decision.chosen is not None:
                chosen = decision.chosen
                span.set_attribute("openstack.scheduler.chosen_host", chosen.host)
                if self.algorithm.uses_image_cache:
                    span.set_attribute("openstack.scheduler.image_cached",
                                       bool(req.image_id) and req.image_id in chosen.cached_images)
                weight = decision.weights.get(chosen.host)
                if weight is not None:
                    span.set_attribute("openstack.scheduler.chosen_weight", weight)
            else:
                mark_error(span, "No valid host was found", event="scheduler.no_valid_host")
            return req, decision

    async def _claim(self, req: RequestSpec, decision: Decision) -> tuple[HostState | None, int]:
        """Step 11: claim a candidate with a generation check; on a conflict re-read that host and
        retry while it still fits (as placement does), else try the next candidate."""
        res = Resources(req.vcpus, req.memory_mb, req.disk_gb)
        conflicts = 0
        async with self.db.span(self.tracer, "UPDATE", "compute_nodes",
                                step=Step.SCHEDULER_CLAIM_HOST, latency=self.latency) as span:
            def lost(node: HostState) -> None:
                span.add_event("claim.conflict", {"host": node.host, "generation": node.generation})

            for cand in decision.candidates:
                claimed, n = await claim_with_retries(self.db, req.instance_uuid, cand, res, on_conflict=lost)
                conflicts += n
                if claimed is not None:
                    span.set_attributes({"openstack.scheduler.claimed_host": claimed.host,
                                         "openstack.scheduler.claim_conflicts": conflicts})
                    return claimed, conflicts
            span.set_attribute("openstack.scheduler.claim_conflicts", conflicts)
            return None, conflicts
