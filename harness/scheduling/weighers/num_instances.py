"""NumInstancesWeigher: weigh hosts by their number of instances.

Nova (``nova/scheduler/weights/num_instances.py``, 2023.2 Bobcat): the raw value is the host's
instance count. ``num_instances_weight_multiplier`` defaults to 0.0 (off); negative prefers hosts
with fewer instances (spread), positive prefers busier hosts (pack).
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.hosts import HostTable
from harness.scheduling.weighers import BaseHostWeigher, register_weigher


@register_weigher
class NumInstancesWeigher(BaseHostWeigher):
    name = "NumInstancesWeigher"
    option = "num_instances_weight_multiplier"
    default_multiplier = 0.0
    help = "negative prefers hosts with fewer instances, positive busier ones"

    def raw(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> np.ndarray:
        return hosts.running_vms[idx]
