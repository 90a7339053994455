"""Which compute hosts hold which images in their image cache.

nova-compute keeps a cache of the images it has downloaded (``[image_cache]`` in Nova; a cached
image starts an instance nearly for free, an uncached one costs its size over the download
bandwidth). Real Nova does not tell the scheduler; here a host reports an image once it has
fetched it (nova-compute -> nova-conductor -> this table), so an algorithm can prefer warm hosts
and the comparison of algorithms can show what that is worth. Eviction is not modelled (Nova's
image cache manager removes images unused for a day).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Column, Float, String, Table, and_, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from harness.db.fastpath import prebuilt
from harness.db.models import metadata
from harness.db.store import NovaDB

compute_image_cache = Table(
    "compute_image_cache",
    metadata,
    Column("image_id", String(36), primary_key=True),
    Column("host", String(255), primary_key=True),
    Column("cached_at", Float, nullable=False),
)


async def add(db: NovaDB, host: str, image_id: str) -> bool:
    """Record that ``host`` holds ``image_id``; False when it was recorded already."""
    try:
        return await db._write(_q_add, host, image_id)
    except IntegrityError:  # another process recorded it between our check and insert
        return False


async def hosts_with(db: NovaDB, image_id: str) -> list[str]:
    return await db._read(_q_hosts_with, image_id)


async def images_by_host(db: NovaDB) -> dict[str, set[str]]:
    return await db._read(_q_by_host)


# built once (run from a plan on SQLite, harness.db.fastpath): a boot records its host's image
_c = compute_image_cache.c
_HAS = prebuilt(select(_c.host).where(and_(_c.image_id == bindparam("image_id"), _c.host == bindparam("host"))))
_INSERT = prebuilt(insert(compute_image_cache))
_HOSTS_WITH = prebuilt(select(_c.host).where(_c.image_id == bindparam("image_id")))
_ALL = prebuilt(select(_c.host, _c.image_id))


def _q_add(conn: Any, host: str, image_id: str) -> bool:
    key = {"image_id": image_id, "host": host}
    if conn.execute(_HAS, key).first():
        return False
    conn.execute(_INSERT, {**key, "cached_at": time.time()})
    return True


def _q_hosts_with(conn: Any, image_id: str) -> list[str]:
    return list(conn.execute(_HOSTS_WITH, {"image_id": image_id}).scalars())


def _q_by_host(conn: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for host, image_id in conn.execute(_ALL):
        out.setdefault(host, set()).add(image_id)
    return out
