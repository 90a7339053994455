"""image_affinity: hosts whose image cache holds the image first, then the others; worst fit on
free RAM within each group.

The harness's own comparison point for the image cache (a cached image costs nearly nothing to
start, an uncached one its size over the download bandwidth): it keeps each image on the hosts
that already paid for it, and spreads when none has room. Weight: 1 for a cached host plus the
host's share of free RAM (so cached hosts always rank first).
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec, register
from harness.scheduling.hosts import HostTable
from harness.scheduling.strategies import FeasibleScheduler


@register
class ImageAffinityScheduler(FeasibleScheduler):
    name = "image_affinity"
    summary = "hosts with the image cached first, then worst fit on free RAM"
    uses_image_cache = True

    def order(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> tuple[np.ndarray, np.ndarray]:
        cached = hosts.has_image(spec.image_id)[idx].astype(np.float64)
        free = hosts.free_ram_mb[idx]
        top = float(free.max()) if len(free) else 0.0
        weight = cached + (free / top if top > 0 else 0.0)
        by = np.argsort(-weight, kind="stable")
        return idx[by], weight[by]
