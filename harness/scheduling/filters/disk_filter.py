"""DiskFilter: room for the flavor's root disk, with ``disk_allocation_ratio``, as placement does.

Removed from Nova in 19.0.0 Stein in favour of placement's DISK_GB inventory (same arithmetic, see
:mod:`harness.scheduling.filters.capacity`). A boot from volume requests no local disk.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters import BaseHostFilter, register_filter
from harness.scheduling.filters.capacity import fits
from harness.scheduling.hosts import HostTable


@register_filter
class DiskFilter(BaseHostFilter):
    name = "DiskFilter"

    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray | None:
        return fits(spec.disk_gb, hosts.free_disk_gb, hosts.local_gb)
