"""nova-scheduler: steps 9-12 (take the request, choose a host, claim it, cast to its compute).

The algorithm is pluggable (:mod:`harness.scheduling`); the claim is atomic in the DB with a
generation check, so several scheduler workers never over-commit a host. A lost race tries the
next candidate; when every candidate is lost the host states are read again (up to
``CLAIM_ROUNDS`` times). Nothing fits: ``NoValidHost``, which nova-api turns into an ERROR server.
"""

from __future__ import annotations

import time
from typing import Any

from harness.db import Resources
from harness.messaging.rpc import Method
from harness.scheduling.base import Decision, HostState, RequestSpec, make_scheduler
from harness.services.base import CloudContext, Service
from harness.steps import Step
from harness.telemetry import mark_error, step_span

CLAIM_ROUNDS = 3


class NoValidHost(Exception):
    def __init__(self, reason: str = "There are not enough hosts available.") -> None:
        super().__init__(f"No valid host was found. {reason}")


def request_spec(spec: dict[str, Any], *, ignore_hosts: list[str] | None = None) -> RequestSpec:
    return RequestSpec(
        instance_uuid=spec["instance_uuid"], vcpus=spec["vcpus"], memory_mb=spec["memory_mb"],
        disk_gb=spec["disk_gb"], availability_zone=spec.get("availability_zone"),
        image_id=spec.get("image_id"), image_arch=spec.get("image_arch"),
        ignore_hosts=frozenset(ignore_hosts or ()),
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
        self.compute = self.rpc_client("nova")
        self.rpc_server(
            "nova", "scheduler",
            {"select_destinations": Method(self.select_destinations, receive_step=Step.SCHEDULER_RECEIVE)},
            workers=self.settings.scheduler_workers,
        )

    async def select_destinations(self, spec: dict[str, Any]) -> dict[str, Any]:
        req = request_spec(spec)
        chosen: HostState | None = None
        decision: Decision | None = None
        for round_no in range(1, CLAIM_ROUNDS + 1):
            decision = await self._select(req, round_no)
            if not decision.candidates:
                raise NoValidHost()
            chosen = await self._claim(req, decision)
            if chosen is not None:
                break
        if chosen is None or decision is None:
            raise NoValidHost("Every candidate host was claimed by a concurrent request.")
        alternates = [h.host for h in decision.candidates if h.host != chosen.host]
        await self.compute.cast(
            f"compute.{chosen.host}", "build_and_run_instance",
            {"instance_uuid": req.instance_uuid, "spec": spec, "alternates": alternates, "attempt": 1},
            step=Step.SCHEDULER_CAST_BUILD,
        )
        return {"host": chosen.host, "alternates": alternates}

    async def _select(self, req: RequestSpec, round_no: int) -> Decision:
        """Step 10: read the compute nodes and run the algorithm over them."""
        with step_span(self.tracer, Step.SCHEDULER_SELECT_HOST, attributes={
            "openstack.scheduler.algorithm": self.algorithm.name,
            "openstack.scheduler.round": round_no,
            "openstack.instance.id": req.instance_uuid,
        }) as span:
            await self.latency.delay(Step.SCHEDULER_SELECT_HOST)
            async with self.db.span(self.tracer, "SELECT", "compute_nodes"):
                hosts = [HostState.from_row(r) for r in await self.db.list_compute_nodes()]
            scan_ms = self.latency.cost("scheduler_ms_per_host") * len(hosts)
            if scan_ms > 0:
                await self.latency.sleep_ms(scan_ms)
            t0 = time.perf_counter()
            decision = self.algorithm.select(hosts, req)
            span.set_attributes({
                "openstack.scheduler.algorithm_ms": (time.perf_counter() - t0) * 1000,
                "openstack.scheduler.hosts_considered": decision.considered,
                "openstack.scheduler.hosts_passed": len(decision.candidates),
                "openstack.scheduler.filters": [f"{n}={c}" for n, c in decision.filter_counts],
            })
            if decision.chosen is not None:
                span.set_attribute("openstack.scheduler.chosen_host", decision.chosen.host)
                weight = decision.weights.get(decision.chosen.host)
                if weight is not None:
                    span.set_attribute("openstack.scheduler.chosen_weight", weight)
            else:
                mark_error(span, "No valid host was found", event="scheduler.no_valid_host")
            return decision

    async def _claim(self, req: RequestSpec, decision: Decision) -> HostState | None:
        """Step 11: claim the first candidate whose generation is unchanged; write its host."""
        res = Resources(req.vcpus, req.memory_mb, req.disk_gb)
        async with self.db.span(self.tracer, "UPDATE", "compute_nodes",
                                step=Step.SCHEDULER_CLAIM_HOST, latency=self.latency) as span:
            for lost, cand in enumerate(decision.candidates):
                if await self.db.claim(req.instance_uuid, cand.host, cand.generation, res,
                                       az=cand.availability_zone):
                    span.set_attributes({"openstack.scheduler.claimed_host": cand.host,
                                         "openstack.scheduler.claim_conflicts": lost})
                    return cand
                span.add_event("claim.conflict", {"host": cand.host, "generation": cand.generation})
            span.set_attribute("openstack.scheduler.claim_conflicts", len(decision.candidates))
            return None
