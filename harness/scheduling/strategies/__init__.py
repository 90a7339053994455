"""The algorithms, one file each; each registers itself by the name the command line uses.

Every strategy but ``filter_scheduler`` starts from the same feasible set: the placement stage
(capacity with allocation ratios, availability zone, enabled computes; see
:mod:`harness.scheduling.placement`) and then Nova's default hard filters (image architecture,
server-group affinity and anti-affinity), so that a comparison shows how each one *chooses*, never
one that breaks a rule the others keep. :class:`FeasibleScheduler` does that part; a subclass only
orders the feasible hosts.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from harness.scheduling.base import Decision, RequestSpec, Scheduler
from harness.scheduling.filters import make_filters, run_filters
from harness.scheduling.hosts import HostTable
from harness.scheduling.options import Option, as_choice
from harness.scheduling.placement import STAGE, allocation_candidates

#: The hard filters of current Nova's default ``enabled_filters`` that the fake hosts can model
#: (ComputeCapabilitiesFilter needs flavor extra specs, which the harness does not have).
HARD_FILTERS = ("ComputeFilter", "ImagePropertiesFilter", "ServerGroupAntiAffinityFilter",
                "ServerGroupAffinityFilter")

RESOURCE = Option("ram", "the resource the choice looks at: ram, vcpu or disk",
                  as_choice("ram", "vcpu", "disk"))


def free_of(hosts: HostTable, resource: str) -> np.ndarray:
    """Placement's free amount (allocation ratio applied) of ``resource`` on every host."""
    return {"ram": hosts.free_ram_mb, "vcpu": hosts.free_vcpus, "disk": hosts.free_disk_gb}[resource]


def used_share(hosts: HostTable, resource: str) -> np.ndarray:
    """Fraction of placement's capacity of ``resource`` in use on every host (its load)."""
    if resource == "ram":
        cap, used = hosts.memory_mb * hosts.ram_allocation_ratio, hosts.memory_mb_used
    elif resource == "vcpu":
        cap, used = hosts.vcpus * hosts.cpu_allocation_ratio, hosts.vcpus_used
    else:
        cap, used = hosts.local_gb * hosts.disk_allocation_ratio, hosts.local_gb_used
    return used / np.maximum(cap, 1e-9)


def make_decision(hosts: HostTable, spec: RequestSpec, order: np.ndarray, counts: list[tuple[str, int]],
                  weights: np.ndarray | None = None) -> Decision:
    """The first ``1 + num_alternates`` hosts of ``order``; ``weights`` is aligned with ``order``."""
    take = order[: 1 + max(0, spec.num_alternates)]
    named = {}
    if weights is not None:
        named = {hosts.names[int(i)]: float(w) for i, w in zip(take, weights[: len(take)])}
    return Decision(candidates=hosts.states(take), considered=len(hosts), weights=named,
                    filter_counts=counts)


class FeasibleScheduler(Scheduler):
    """Placement + Nova's hard filters, then :meth:`order` chooses among what is left."""

    def __init__(self, *, rng: Any, **options: Any) -> None:
        super().__init__(rng=rng, **options)
        self.filters = make_filters(HARD_FILTERS)

    def feasible(self, hosts: HostTable, spec: RequestSpec) -> tuple[np.ndarray, list[tuple[str, int]]]:
        keep = allocation_candidates(hosts, spec)
        counts = [(STAGE, int(np.count_nonzero(keep)))]
        keep, more = run_filters(hosts, spec, keep, self.filters)
        return np.flatnonzero(keep), counts + more

    def decide(self, hosts: HostTable, spec: RequestSpec) -> Decision:
        idx, counts = self.feasible(hosts, spec)
        if len(idx) == 0:
            return Decision(candidates=[], considered=len(hosts), filter_counts=counts)
        order, weights = self.order(hosts, idx, spec)
        return make_decision(hosts, spec, order, counts, weights)

    @abc.abstractmethod
    def order(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> tuple[np.ndarray, np.ndarray | None]:
        """Feasible host indices ``idx`` (ascending) -> the preferred order (at least the first
        ``1 + num_alternates``), and their weights when the algorithm has any."""
