"""round_robin: the next feasible host after the one chosen last, cycling in host order.

Hosts are in ``compute_nodes`` order (the order they registered); a host that cannot take the
request is skipped, and the cursor moves to the host chosen. Alternates follow in the same cycle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.scheduling.base import RequestSpec, register
from harness.scheduling.hosts import HostTable
from harness.scheduling.strategies import FeasibleScheduler


@register
class RoundRobinScheduler(FeasibleScheduler):
    name = "round_robin"
    summary = "the next feasible host after the last one chosen, cycling through the hosts"

    def __init__(self, *, rng: Any, **options: Any) -> None:
        super().__init__(rng=rng, **options)
        self.last: str | None = None

    def order(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> tuple[np.ndarray, None]:
        last = hosts.index.get(self.last, -1) if self.last is not None else -1
        start = int(np.searchsorted(idx, last, side="right"))
        order = np.concatenate([idx[start:], idx[:start]])
        self.last = hosts.names[int(order[0])]
        return order, None
