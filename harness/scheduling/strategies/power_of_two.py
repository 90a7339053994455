"""power_of_two: two feasible hosts at random, the less loaded of the two wins.

The "power of two choices" (Mitzenmacher, 2001): nearly as even as looking at every host, for the
price of looking at two. Load is the share of the host's ``resource`` capacity (allocation ratio
applied) in use, so hosts of different sizes compare fairly; on a tie the first drawn wins. The
loser is the first alternate, then further random hosts.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness.scheduling.base import RequestSpec, register
from harness.scheduling.hosts import HostTable
from harness.scheduling.options import Option
from harness.scheduling.strategies import RESOURCE, FeasibleScheduler, used_share


@register
class PowerOfTwoScheduler(FeasibleScheduler):
    name = "power_of_two"
    summary = "the less loaded of two random feasible hosts"
    options: ClassVar[dict[str, Option]] = {"resource": RESOURCE}

    def order(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> tuple[np.ndarray, np.ndarray]:
        k = min(len(idx), max(2, 1 + max(0, spec.num_alternates)))
        picks = idx[self.rng.sample(range(len(idx)), k)]
        load = used_share(hosts, self.opts["resource"])[picks]
        if len(picks) >= 2 and load[1] < load[0]:
            picks[[0, 1]] = picks[[1, 0]]
            load[[0, 1]] = load[[1, 0]]
        return picks, -load
