"""AvailabilityZoneFilter: the host is in the availability zone the request names.

Nova (``nova/scheduler/filters/availability_zone_filter.py``): a request without a zone passes
every host; a host outside any AZ aggregate is in ``[DEFAULT] default_availability_zone`` ("nova").
Current Nova does this in placement instead (the ``map_az_to_placement_aggregate`` request filter)
and removed this filter in 2024.1 Caracal; it is kept for clouds configured the older way.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters import BaseHostFilter, register_filter
from harness.scheduling.hosts import HostTable


@register_filter
class AvailabilityZoneFilter(BaseHostFilter):
    name = "AvailabilityZoneFilter"

    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray | None:
        if not spec.availability_zone:
            return None
        return hosts.availability_zone == spec.availability_zone
