"""RAMWeigher: weigh hosts by free RAM.

Nova (``nova/scheduler/weights/ram.py``): the raw value is ``HostState.free_ram_mb`` (physical RAM
minus used, no allocation ratio; clamped at ``minval = 0``). The default multiplier
``ram_weight_multiplier = 1.0`` spreads instances over the hosts; a negative multiplier stacks
them (fills the fullest host first).
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.hosts import HostTable
from harness.scheduling.weighers import BaseHostWeigher, register_weigher


@register_weigher
class RAMWeigher(BaseHostWeigher):
    name = "RAMWeigher"
    option = "ram_weight_multiplier"
    default_multiplier = 1.0
    help = "positive spreads on free RAM, negative packs"
    minval = 0

    def raw(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> np.ndarray:
        return hosts.host_free_ram_mb[idx]
