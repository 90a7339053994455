"""DiskWeigher: weigh hosts by free local disk.

Nova (``nova/scheduler/weights/disk.py``): the raw value is ``HostState.free_disk_mb`` (free GB *
1024, no allocation ratio), clamped at ``minval = 0``. Default ``disk_weight_multiplier = 1.0``
spreads; negative stacks.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.hosts import HostTable
from harness.scheduling.weighers import BaseHostWeigher, register_weigher


@register_weigher
class DiskWeigher(BaseHostWeigher):
    name = "DiskWeigher"
    option = "disk_weight_multiplier"
    default_multiplier = 1.0
    help = "positive spreads on free disk, negative packs"
    minval = 0

    def raw(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> np.ndarray:
        return hosts.host_free_disk_mb[idx]
