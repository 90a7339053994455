"""ServerGroupAntiAffinityFilter: members of an ``anti-affinity`` group keep apart.

Nova (``nova/scheduler/filters/affinity_filter.py``, ``_GroupAntiAffinityFilter``): only for a
group whose policy is ``anti-affinity``; a host passes when the group's members on it number fewer
than the rule ``max_server_per_host`` (default 1, i.e. no member there yet).
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters import BaseHostFilter, register_filter
from harness.scheduling.hosts import HostTable


@register_filter
class ServerGroupAntiAffinityFilter(BaseHostFilter):
    name = "ServerGroupAntiAffinityFilter"
    policy = "anti-affinity"

    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray | None:
        group = spec.group
        if group is None or group.policy != self.policy or not group.member_hosts:
            return None
        return hosts.counts_of(group.member_hosts) < group.max_server_per_host
