"""ImagePropertiesFilter on the image's ``hw_architecture``.

Nova (``nova/scheduler/filters/image_props_filter.py``): an image that names no architecture (nor
hypervisor type or VM mode) passes every host; one that does passes the hosts whose supported
instances include it, after canonicalising the name (``nova/objects/fields.py``
``Architecture.canonicalize``: lower case, i386/i486/i586/x86_32 -> i686, amd64 -> x86_64).
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters import BaseHostFilter, register_filter
from harness.scheduling.hosts import HostTable

_ALIASES = {"i386": "i686", "i486": "i686", "i586": "i686", "x86_32": "i686", "x86_32p": "i686",
            "amd64": "x86_64"}


def canonical_arch(name: str) -> str:
    lowered = name.strip().lower()
    return _ALIASES.get(lowered, lowered)


def spellings(arch: str) -> list[str]:
    """Every name that canonicalises to ``arch`` (hosts report lower-case names)."""
    canonical = canonical_arch(arch)
    return [canonical, *(alias for alias, target in _ALIASES.items() if target == canonical)]


@register_filter
class ImagePropertiesFilter(BaseHostFilter):
    name = "ImagePropertiesFilter"

    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray | None:
        if not spec.image_arch:
            return None
        names = spellings(spec.image_arch)
        keep = hosts.arch == names[0]
        for alias in names[1:]:
            keep |= hosts.arch == alias
        return keep
