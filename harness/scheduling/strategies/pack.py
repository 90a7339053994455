"""pack (best fit): the feasible host with the least free ``resource`` left, so hosts fill up one
after another and empty hosts stay empty (what ``ram_weight_multiplier < 0`` does in Nova, without
the other weighers).

The weight reported is minus the free amount (higher wins); ties go to the host registered first.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness.scheduling.base import RequestSpec, register
from harness.scheduling.hosts import HostTable
from harness.scheduling.options import Option
from harness.scheduling.strategies import RESOURCE, FeasibleScheduler, free_of


@register
class PackScheduler(FeasibleScheduler):
    name = "pack"
    summary = "best fit: the feasible host with the least free resource left (fills hosts in turn)"
    options: ClassVar[dict[str, Option]] = {"resource": RESOURCE}

    def order(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> tuple[np.ndarray, np.ndarray]:
        free = free_of(hosts, self.opts["resource"])[idx]
        by = np.argsort(free, kind="stable")
        return idx[by], -free[by]
