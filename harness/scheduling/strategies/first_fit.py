"""first_fit: the first feasible host in host order (``compute_nodes`` order, as registered).

Cheap and deterministic; it fills the first hosts and leaves the last ones empty, but unlike
``pack`` it does not look for the tightest fit.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec, register
from harness.scheduling.hosts import HostTable
from harness.scheduling.strategies import FeasibleScheduler


@register
class FirstFitScheduler(FeasibleScheduler):
    name = "first_fit"
    summary = "the first feasible host in host order"

    def order(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> tuple[np.ndarray, None]:
        return idx, None
