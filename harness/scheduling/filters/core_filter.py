"""CoreFilter: room for the flavor's vCPUs, with ``cpu_allocation_ratio``, as placement computes it.

Removed from Nova in 19.0.0 Stein in favour of placement's VCPU inventory (same arithmetic, see
:mod:`harness.scheduling.filters.capacity`).
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters import BaseHostFilter, register_filter
from harness.scheduling.filters.capacity import fits
from harness.scheduling.hosts import HostTable


@register_filter
class CoreFilter(BaseHostFilter):
    name = "CoreFilter"

    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray | None:
        return fits(spec.vcpus, hosts.free_vcpus, hosts.vcpus)
