"""Capacity as placement checks it, per resource class (shared by the three capacity filters).

Placement (``placement/objects/allocation_candidate.py``) keeps a provider for a request of
``amount`` of a resource class when ``used + amount <= (total - reserved) * allocation_ratio`` and
``amount <= max_unit``; nova-compute reports ``max_unit = total`` (no single instance larger than
the physical host, however overcommitted) and ``reserved`` 0 here. A resource class the request
asks 0 of is simply not in the request (a boot from volume asks no DISK_GB).
"""

from __future__ import annotations

import numpy as np


def fits(amount: float, free: np.ndarray, total: np.ndarray) -> np.ndarray | None:
    """Mask of providers with room for ``amount`` (``None``: nothing requested, all pass)."""
    if amount <= 0:
        return None
    return (free >= amount) & (total >= amount)
