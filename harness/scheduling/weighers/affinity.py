"""Soft (anti-)affinity weighers for ``soft-affinity`` and ``soft-anti-affinity`` server groups.

Nova (``nova/scheduler/weights/affinity.py``): the raw value is the number of the group's members
on the host (negated for soft-anti-affinity), 0 for requests of other groups or none; both
multipliers default to 1.0 and only positive values are meaningful.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.hosts import HostTable
from harness.scheduling.weighers import BaseHostWeigher, register_weigher


class _SoftAffinityWeigherBase(BaseHostWeigher):
    policy: str = ""
    sign: float = 1.0

    def raw(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> np.ndarray:
        group = spec.group
        if group is None or group.policy != self.policy or not group.member_hosts:
            return np.zeros(len(idx))
        return self.sign * hosts.counts_of(group.member_hosts)[idx]


@register_weigher
class ServerGroupSoftAffinityWeigher(_SoftAffinityWeigherBase):
    name = "ServerGroupSoftAffinityWeigher"
    option = "soft_affinity_weight_multiplier"
    default_multiplier = 1.0
    help = "prefer hosts with more members of a soft-affinity group"
    policy = "soft-affinity"


@register_weigher
class ServerGroupSoftAntiAffinityWeigher(_SoftAffinityWeigherBase):
    name = "ServerGroupSoftAntiAffinityWeigher"
    option = "soft_anti_affinity_weight_multiplier"
    default_multiplier = 1.0
    help = "prefer hosts with fewer members of a soft-anti-affinity group"
    policy = "soft-anti-affinity"
    sign = -1.0
