"""The placement stage every algorithm starts from: which hosts could hold the request at all.

Since Stein, nova-scheduler does not filter capacity itself: it asks placement
(``GET /allocation_candidates``) for providers with room for the flavor's VCPU, MEMORY_MB and
DISK_GB (with allocation ratios and ``max_unit``, see :mod:`harness.scheduling.filters.capacity`),
with request filters that add the availability zone (``map_az_to_placement_aggregate``) and drop
disabled computes (``compute_status_filter``, the ``COMPUTE_STATUS_DISABLED`` trait). Hosts the
request must avoid (``ignore_hosts``) are dropped next, as Nova's host manager does. Every
algorithm here starts from this same set, so they differ only in how they choose within it, and
the atomic claim (:meth:`harness.db.NovaDB.claim`) repeats the capacity check under the
generation guard.
"""

from __future__ import annotations

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.filters.capacity import fits
from harness.scheduling.hosts import HostTable

STAGE = "placement"


def allocation_candidates(hosts: HostTable, spec: RequestSpec, *, limit: int | None = None) -> np.ndarray:
    """Mask of the hosts placement would return for ``spec`` (at most ``limit`` of them).

    ``limit`` is Nova's ``[scheduler] max_placement_results`` (default 1000): placement returns
    the first ones in provider order, so a larger cloud is only partly considered.
    """
    keep = ~hosts.disabled
    for m in (fits(spec.vcpus, hosts.free_vcpus, hosts.vcpus),
              fits(spec.memory_mb, hosts.free_ram_mb, hosts.memory_mb),
              fits(spec.disk_gb, hosts.free_disk_gb, hosts.local_gb)):
        if m is not None:
            keep &= m
    if spec.availability_zone:
        keep &= hosts.availability_zone == spec.availability_zone
    if limit is not None and limit < len(hosts):
        idx = np.flatnonzero(keep)
        if len(idx) > limit:
            keep = np.zeros(len(hosts), dtype=bool)
            keep[idx[:limit]] = True
    if spec.ignore_hosts:
        keep &= ~hosts.mask_of(spec.ignore_hosts)
    return keep
