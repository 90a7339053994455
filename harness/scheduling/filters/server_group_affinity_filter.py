"""ServerGroupAffinityFilter: a member of an ``affinity`` group goes where the others are.

Nova (``nova/scheduler/filters/affinity_filter.py``, ``_GroupAffinityFilter``): only for a group
whose policy is ``affinity``; when the group's members already run on some hosts
(``instance_group.hosts``) only those pass; the first member may go anywhere.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters import BaseHostFilter, register_filter
from harness.scheduling.hosts import HostTable


@register_filter
class ServerGroupAffinityFilter(BaseHostFilter):
    name = "ServerGroupAffinityFilter"
    policy = "affinity"

    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray | None:
        group = spec.group
        if group is None or group.policy != self.policy or not group.hosts:
            return None
        return hosts.mask_of(group.hosts)
