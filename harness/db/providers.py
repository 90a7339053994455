"""Compute nodes (placement's resource providers) as the scheduler reads them.

:func:`node_columns` reads every node as columns (one tuple per column, straight from the
result rows): a thousand nodes as dicts cost the scheduler several milliseconds per request, as
columns a fraction of that. :func:`get_node` reads one node: placement answers a generation
conflict on an allocation write by reading the provider again and retrying while the allocation
still fits (``[placement] allocation_conflict_retry_count``, default 10); the scheduler does the
same with this single-row read instead of re-reading every host.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from harness.db.fastpath import FastResult, prebuilt
from harness.db.models import compute_nodes
from harness.db.store import NovaDB


async def node_columns(db: NovaDB) -> dict[str, tuple]:
    """Every compute node, in registration order, as ``{column: (value per node, ...)}``."""
    return await db._read(_q_columns)


async def get_node(db: NovaDB, host: str) -> dict[str, Any] | None:
    return await db._read(_q_node, host)


# built once (and run from a plan on SQLite, harness.db.fastpath): read per request
_ALL_NODES = prebuilt(select(compute_nodes).order_by(compute_nodes.c.id))
_NODE = prebuilt(select(compute_nodes).where(compute_nodes.c.host == bindparam("host")))


def _q_node(conn: Any, host: str) -> dict[str, Any] | None:
    row = conn.execute(_NODE, {"host": host}).mappings().first()
    return dict(row) if row else None


def _q_columns(conn: Any) -> dict[str, tuple]:
    result = conn.execute(_ALL_NODES)
    if isinstance(result, FastResult):  # the bare-driver path transposes without row objects
        return result.columns()
    keys = list(result.keys())
    rows = result.all()
    if not rows:
        return {k: () for k in keys}
    return dict(zip(keys, zip(*rows)))
