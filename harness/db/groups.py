"""Server groups (``os-server-groups``) in Nova's DB: the groups and their members.

Nova keeps them in the API database (``instance_groups``, ``instance_group_member``,
``instance_group_policy``); one policy per group since microversion 2.64, with an optional rule
``max_server_per_host`` for ``anti-affinity``. The scheduler reads, per request, the group and how
many of its live members sit on each host (what Nova's ``instance_group.hosts`` and the
anti-affinity filter's per-host count are made from). Module-level functions take the
:class:`~harness.db.NovaDB` so that the store's own file stays as it is.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Float, String, Table, and_, bindparam, func, insert, select, update

from harness.db.fastpath import prebuilt
from harness.db.models import instances, metadata
from harness.db.store import NovaDB

instance_groups = Table(
    "instance_groups",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("project_id", String(64), nullable=False, index=True),
    Column("user_id", String(64), nullable=False),
    Column("policy", String(32), nullable=False),
    Column("rules", JSON, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
)

instance_group_members = Table(
    "instance_group_members",
    metadata,
    Column("instance_uuid", String(36), primary_key=True),  # a server is in at most one group
    Column("group_uuid", String(36), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
)


async def create_group(db: NovaDB, *, name: str, project_id: str, user_id: str, policy: str,
                       rules: dict[str, Any]) -> dict[str, Any]:
    row = {"uuid": str(uuidlib.uuid4()), "name": name, "project_id": project_id, "user_id": user_id,
           "policy": policy, "rules": dict(rules), "created_at": time.time(), "deleted": False}
    await db._write(_q_insert_one, _INSERT_GROUP, row)
    return row


async def get_group(db: NovaDB, group_uuid: str) -> dict[str, Any] | None:
    return await db._read(_q_get_group, group_uuid)


async def list_groups(db: NovaDB, project_id: str | None) -> list[dict[str, Any]]:
    return await db._read(_q_list_groups, project_id)


async def delete_group(db: NovaDB, group_uuid: str) -> bool:
    return await db._write(_q_delete_group, group_uuid)


async def add_member(db: NovaDB, group_uuid: str, instance_uuid: str) -> None:
    await db._write(_q_insert_one, _INSERT_MEMBER,
                    {"instance_uuid": instance_uuid, "group_uuid": group_uuid, "created_at": time.time()})


async def members(db: NovaDB, group_uuid: str) -> list[str]:
    """The group's members that are not deleted (what ``GET /os-server-groups/{id}`` lists)."""
    return await db._read(_q_members, group_uuid)


async def member_hosts(db: NovaDB, group_uuid: str, *, exclude: str | None = None) -> dict[str, int]:
    """Live members per host (members not yet on a host are not counted), without ``exclude``."""
    return await db._read(_q_member_hosts, group_uuid, exclude)


async def group_of(db: NovaDB, instance_uuid: str) -> str | None:
    return await db._read(_q_group_of, instance_uuid)


# -- query functions (one transaction each, run by the store's runner) ----------------------------

# The statements a boot in a group runs (the scheduler reads the group and its members' hosts per
# request), built once: on SQLite they run from a plan on the driver (harness.db.fastpath).
_g, _m, _i = instance_groups.c, instance_group_members.c, instances.c
_INSERT_GROUP = prebuilt(insert(instance_groups))
_INSERT_MEMBER = prebuilt(insert(instance_group_members))
_GET_GROUP = prebuilt(select(instance_groups).where(and_(_g.uuid == bindparam("group_uuid"), _g.deleted.is_(False))))
_GROUP_OF = prebuilt(select(_m.group_uuid).where(_m.instance_uuid == bindparam("instance_uuid")))


def _live_members() -> Any:
    return (select(_m.instance_uuid, _i.host)
            .join(instances, _i.uuid == _m.instance_uuid)
            .where(and_(_m.group_uuid == bindparam("group_uuid"), _i.deleted.is_(False))))


def _member_hosts_stmt(exclude: bool) -> Any:
    live = _live_members().where(_i.host.is_not(None))
    if exclude:
        live = live.where(_m.instance_uuid != bindparam("exclude"))
    sub = live.subquery()
    return select(sub.c.host, func.count()).group_by(sub.c.host)


_MEMBERS = prebuilt(_live_members().order_by(_m.created_at))
_MEMBER_HOSTS = {False: prebuilt(_member_hosts_stmt(False)), True: prebuilt(_member_hosts_stmt(True))}


def _q_insert_one(conn: Any, stmt: Any, row: dict[str, Any]) -> None:
    conn.execute(stmt, row)


def _q_get_group(conn: Any, group_uuid: str) -> dict[str, Any] | None:
    row = conn.execute(_GET_GROUP, {"group_uuid": group_uuid}).mappings().first()
    return row if type(row) is dict or row is None else dict(row)


def _q_list_groups(conn: Any, project_id: str | None) -> list[dict[str, Any]]:
    g = instance_groups.c
    q = select(instance_groups).where(g.deleted.is_(False))
    if project_id is not None:
        q = q.where(g.project_id == project_id)
    return [dict(r) for r in conn.execute(q.order_by(g.created_at, g.uuid)).mappings()]


def _q_delete_group(conn: Any, group_uuid: str) -> bool:
    g = instance_groups.c
    done = conn.execute(update(instance_groups).where(and_(g.uuid == group_uuid, g.deleted.is_(False)))
                        .values(deleted=True)).rowcount == 1
    if done:
        conn.execute(instance_group_members.delete().where(instance_group_members.c.group_uuid == group_uuid))
    return done


def _q_members(conn: Any, group_uuid: str) -> list[str]:
    return [r.instance_uuid for r in conn.execute(_MEMBERS, {"group_uuid": group_uuid})]


def _q_member_hosts(conn: Any, group_uuid: str, exclude: str | None) -> dict[str, int]:
    rows = conn.execute(_MEMBER_HOSTS[exclude is not None], {"group_uuid": group_uuid, "exclude": exclude})
    return {host: int(n) for host, n in rows}


def _q_group_of(conn: Any, instance_uuid: str) -> str | None:
    return conn.execute(_GROUP_OF, {"instance_uuid": instance_uuid}).scalar_one_or_none()
