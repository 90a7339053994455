"""Claiming a chosen host as placement does: atomically, with the generation the host was read at.

Placement answers a generation conflict on an allocation write by reading the provider again and
retrying while the allocation still fits (``[placement] allocation_conflict_retry_count``, default
10, ``placement/objects/allocation.py``); only when the host is truly full does the caller move to
its next candidate. nova-scheduler (step 11) and nova-conductor (a reschedule to an alternate) both
claim through :func:`claim_with_retries`.
"""

from __future__ import annotations

from typing import Any

from harness.db import NovaDB, Resources, providers
from harness.scheduling.base import HostState

CONFLICT_RETRIES = 10


async def claim_with_retries(db: NovaDB, instance_uuid: str, node: HostState, res: Resources,
                             *, on_conflict: Any = None) -> tuple[HostState | None, int]:
    """Claim ``res`` on ``node``; returns (the host as claimed, or None when it no longer fits,
    conflicts met). ``on_conflict(node)`` is called at each lost race (a span event, say)."""
    conflicts = 0
    current: HostState | None = node
    for _ in range(CONFLICT_RETRIES):
        if current is None or not current.fits(res):
            return None, conflicts
        if await db.claim(instance_uuid, current.host, current.generation, res, az=current.availability_zone):
            return current, conflicts
        conflicts += 1
        if on_conflict is not None:
            on_conflict(current)
        row = await providers.get_node(db, current.host)
        current = HostState.from_row(row) if row else None
    return None, conflicts
