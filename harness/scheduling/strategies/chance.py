"""random: any feasible host, uniformly (Nova's old ChanceScheduler, removed in 19.0.0 Stein).

The baseline every other algorithm should beat; its alternates are further random picks.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec, register
from harness.scheduling.hosts import HostTable
from harness.scheduling.strategies import FeasibleScheduler


@register
class RandomScheduler(FeasibleScheduler):
    name = "random"
    summary = "a uniformly random feasible host (Nova's old ChanceScheduler)"

    def order(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> tuple[np.ndarray, None]:
        k = min(len(idx), 1 + max(0, spec.num_alternates))
        return idx[self.rng.sample(range(len(idx)), k)], None
