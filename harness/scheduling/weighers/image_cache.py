"""ImageCacheWeigher (the harness's own, not Nova's): prefer hosts that already hold the image.

A host's image cache makes a boot of a cached image nearly free and an uncached one cost the
image's size over the download bandwidth (``image_download_s_per_gb``), as Nova's image cache
behaves. Nova has no weigher for it (operators pre-cache images on aggregates instead), so the
multiplier defaults to 0.0 and the filter scheduler stays Nova's; set
``image_cache_weight_multiplier`` (e.g. 1.0, or larger than the RAM multiplier) to trade spreading
for warm caches. The raw value is 1 for a host holding the image, else 0 (``minval`` 0,
``maxval`` 1, so "all hosts cached" still weighs 1 each).
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.hosts import HostTable
from harness.scheduling.weighers import BaseHostWeigher, register_weigher


@register_weigher
class ImageCacheWeigher(BaseHostWeigher):
    name = "ImageCacheWeigher"
    option = "image_cache_weight_multiplier"
    default_multiplier = 0.0
    help = "positive prefers hosts whose image cache holds the image (harness extension)"
    minval = 0
    maxval = 1

    def raw(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> np.ndarray:
        return hosts.has_image(spec.image_id)[idx].astype(np.float64)
