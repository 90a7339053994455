"""RamFilter: room for the flavor's RAM, with ``ram_allocation_ratio``, as placement computes it.

Nova removed RamFilter in 19.0.0 Stein: placement's MEMORY_MB inventory does the same check
(see :mod:`harness.scheduling.filters.capacity`). It exists here so the count of hosts with RAM to
spare can show in a trace; the placement stage applies the same arithmetic in every algorithm.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters import BaseHostFilter, register_filter
from harness.scheduling.filters.capacity import fits
from harness.scheduling.hosts import HostTable


@register_filter
class RamFilter(BaseHostFilter):
    name = "RamFilter"

    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray | None:
        return fits(spec.memory_mb, hosts.free_ram_mb, hosts.memory_mb)
