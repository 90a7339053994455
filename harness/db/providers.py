"""One compute node (placement's resource provider) read on its own.

Placement answers a generation conflict on an allocation write by reading the provider again and
retrying while the allocation still fits (``[placement] allocation_conflict_retry_count``,
default 10); the scheduler does the same with this single-row read instead of re-reading every
host.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from harness.db.models import compute_nodes
from harness.db.store import NovaDB


async def get_node(db: NovaDB, host: str) -> dict[str, Any] | None:
    return await db._read(_q_node, host)


def _q_node(conn: Any, host: str) -> dict[str, Any] | None:
    row = conn.execute(select(compute_nodes).where(compute_nodes.c.host == host)).mappings().first()
    return dict(row) if row else None
