"""CPUWeigher: weigh hosts by free vCPUs.

Nova (``nova/scheduler/weights/cpu.py``): the raw value is ``vcpus_total * cpu_allocation_ratio -
vcpus_used`` (this one does apply the ratio), clamped at ``minval = 0``. Default
``cpu_weight_multiplier = 1.0`` spreads; negative stacks.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.hosts import HostTable
from harness.scheduling.weighers import BaseHostWeigher, register_weigher


@register_weigher
class CPUWeigher(BaseHostWeigher):
    name = "CPUWeigher"
    option = "cpu_weight_multiplier"
    default_multiplier = 1.0
    help = "positive spreads on free vCPUs (with the ratio), negative packs"
    minval = 0

    def raw(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> np.ndarray:
        return hosts.free_vcpus[idx]
