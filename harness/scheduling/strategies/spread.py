"""spread (worst fit): the feasible host with the most free ``resource``, so load evens out over
every host (what Nova's default ``ram_weight_multiplier = 1.0`` does, without the other weighers).

The weight reported is the free amount; ties go to the host registered first.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness.scheduling.base import RequestSpec, register
from harness.scheduling.hosts import HostTable
from harness.scheduling.options import Option
from harness.scheduling.strategies import RESOURCE, FeasibleScheduler, free_of


@register
class SpreadScheduler(FeasibleScheduler):
    name = "spread"
    summary = "worst fit: the feasible host with the most free resource (evens out the load)"
    options: ClassVar[dict[str, Option]] = {"resource": RESOURCE}

    def order(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> tuple[np.ndarray, np.ndarray]:
        free = free_of(hosts, self.opts["resource"])[idx]
        by = np.argsort(-free, kind="stable")
        return idx[by], free[by]
