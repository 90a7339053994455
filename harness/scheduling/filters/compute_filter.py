"""ComputeFilter: only hosts whose nova-compute service is enabled.

Nova (``nova/scheduler/filters/compute_filter.py``) also drops a service that has not reported in
``service_down_time``; the fake hosts always report, so here only ``disabled`` counts.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters import BaseHostFilter, register_filter
from harness.scheduling.hosts import HostTable


@register_filter
class ComputeFilter(BaseHostFilter):
    name = "ComputeFilter"

    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray:
        return ~hosts.disabled
