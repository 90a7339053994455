"""Compute nodes (placement's resource providers) as the scheduler reads them.

:func:`node_columns` reads every node as columns (one tuple per column, straight from the
result rows): a thousand nodes as dicts cost the scheduler several milliseconds per request, as
columns a fraction of that. :func:`get_node` reads one node: placement answers a generation
conflict on an allocation write by reading the provider again and retrying while the allocation
still fits (``[placement] allocation_conflict_retry_count``, default 10); the scheduler does the
same with this single-row read instead of re-reading every host.

On SQLite the per-request read asks only for the columns a claim changes (usage, disabled,
failed builds, generation) and the counter of changes to the others
(:data:`harness.db.models.SQLITE_NODE_VERSION_DDL`, kept by triggers); the static columns (name,
size, ratios, zone, arch) come from the copy made when the counter last moved. Every request
still reads every host's current usage, as Nova's HostManager does; the result is the same dict
the full read gives. SQLite's cost is per column read: 64 hosts cost ~155 us read whole and
~70 us this way, and the scheduler reads them once or twice a boot.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from harness.db.fastpath import FastResult, prebuilt
from harness.db.models import NODE_STATIC_COLUMNS, compute_nodes, compute_nodes_static_version
from harness.db.store import NovaDB


async def node_columns(db: NovaDB) -> dict[str, tuple]:
    """Every compute node, in registration order, as ``{column: (value per node, ...)}``."""
    if db.system == "sqlite":
        return await db._read(_q_columns_split, db)
    return await db._read(_q_columns)


async def get_node(db: NovaDB, host: str) -> dict[str, Any] | None:
    return await db._read(_q_node, host)


# built once (and run from a plan on SQLite, harness.db.fastpath): read per request
_ALL_NODES = prebuilt(select(compute_nodes).order_by(compute_nodes.c.id))
_NODE = prebuilt(select(compute_nodes).where(compute_nodes.c.host == bindparam("host")))
_KEYS = tuple(c.key for c in compute_nodes.c)
_DYNAMIC_KEYS = tuple(k for k in _KEYS if k not in NODE_STATIC_COLUMNS)  # "id" first: it orders
_DYNAMIC_NODES = prebuilt(select(*(compute_nodes.c[k] for k in _DYNAMIC_KEYS)).order_by(compute_nodes.c.id))
_STATIC_VERSION = prebuilt(select(compute_nodes_static_version.c.n).where(
    compute_nodes_static_version.c.id == 1))


def _q_node(conn: Any, host: str) -> dict[str, Any] | None:
    row = conn.execute(_NODE, {"host": host}).mappings().first()
    return dict(row) if row else None


def _q_columns(conn: Any) -> dict[str, tuple]:
    return _as_columns(conn.execute(_ALL_NODES))


def _as_columns(result: Any) -> dict[str, tuple]:
    if isinstance(result, FastResult):  # the bare-driver path transposes without row objects
        return result.columns()
    keys = list(result.keys())
    rows = result.all()
    if not rows:
        return {k: () for k in keys}
    return dict(zip(keys, zip(*rows)))


def _q_columns_split(conn: Any, db: NovaDB) -> dict[str, tuple]:
    """:func:`_q_columns` from the changing columns and the copy of the static ones (SQLite).

    The copy is used only while the change counter is the one read with it and the hosts' ids
    are the same, in the same order (one transaction: counter, ids and usage read together)."""
    version = conn.execute(_STATIC_VERSION).scalar()
    dynamic = _as_columns(conn.execute(_DYNAMIC_NODES))
    ids = dynamic["id"]
    statics = db.node_statics
    if version is None or statics is None or statics[0] != version or statics[1] != ids:
        full = _q_columns(conn)
        if full["id"] == ids:  # the static columns of this very read
            db.node_statics = (version, ids, {k: full[k] for k in NODE_STATIC_COLUMNS})
        return full
    static = statics[2]
    return {k: static[k] if k in static else dynamic[k] for k in _KEYS}
