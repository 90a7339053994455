"""BuildFailureWeigher: push hosts with recent failed builds to the back.

Nova (``nova/scheduler/weights/compute.py``): the raw value is the host's failed-build count and
the multiplier applied is ``-1 * build_failure_weight_multiplier`` (default 1000000.0), large
enough to outweigh every other weigher, so a failing host is tried last rather than disabled.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.hosts import HostTable
from harness.scheduling.weighers import BaseHostWeigher, register_weigher


@register_weigher
class BuildFailureWeigher(BaseHostWeigher):
    name = "BuildFailureWeigher"
    option = "build_failure_weight_multiplier"
    default_multiplier = 1000000.0
    help = "penalty per failed build (applied negated)"

    def multiplier(self, configured: float) -> float:
        return -1 * configured

    def raw(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> np.ndarray:
        return hosts.failed_builds[idx]
