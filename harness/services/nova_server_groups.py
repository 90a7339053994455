"""``/os-server-groups``: server groups, and the ``group`` scheduler hint of a boot.

As Nova's API (``nova/api/openstack/compute/server_groups.py`` and its schemas): create answers
200; before microversion 2.64 a group has ``policies`` (one of affinity / anti-affinity, plus the
soft ones from 2.15) and an empty ``metadata``, from 2.64 one ``policy`` and ``rules`` (only
``max_server_per_host``, only for anti-affinity); ``project_id``/``user_id`` show from 2.13;
``members`` lists the group's servers that are not deleted. Quotas ``server_groups`` and
``server_group_members`` (default 10 each) answer 403. A boot names its group with
``os:scheduler_hints: {"group": <id>}``; the server becomes a member before it is scheduled and
nova-scheduler's affinity filters and weighers read the members' hosts.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import Route

from harness.db import groups
from harness.services.http import ApiError, json_body
from harness.services.microversion import Version, api_version
from harness.services.rest import AuthContext
from harness.services.validation import Schema, is_uuid

if TYPE_CHECKING:
    from harness.services.nova_api import NovaApi

_NAME = {"type": "string", "minLength": 1, "maxLength": 255,
         "pattern": r"^(?![\s])[^\x00-\x1f]*(?<![\s])$"}
_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {"server_group": {
        "type": "object",
        "properties": {
            "name": _NAME,
            "policies": {"type": "array", "items": [{"type": "string", "enum": ["anti-affinity", "affinity"]}],
                         "uniqueItems": True, "minItems": 1, "maxItems": 1, "additionalItems": False},
        },
        "required": ["name", "policies"],
        "additionalProperties": False,
    }},
    "required": ["server_group"],
    "additionalProperties": False,
}
_CREATE_215 = copy.deepcopy(_CREATE)
_CREATE_215["properties"]["server_group"]["properties"]["policies"]["items"][0]["enum"] += [
    "soft-anti-affinity", "soft-affinity"]
_CREATE_264 = copy.deepcopy(_CREATE_215)
_sg = _CREATE_264["properties"]["server_group"]
del _sg["properties"]["policies"]
_sg["required"] = ["name", "policy"]
_sg["properties"]["policy"] = {"type": "string",
                               "enum": ["anti-affinity", "affinity", "soft-anti-affinity", "soft-affinity"]}
_sg["properties"]["rules"] = {"type": "object",
                              "properties": {"max_server_per_host": {"type": ["integer", "string"],
                                                                     "pattern": "^[0-9]*$", "minimum": 1,
                                                                     "minLength": 1}},
                              "additionalProperties": False}
SCHEMAS = {Version(2, 1): Schema(_CREATE), Version(2, 15): Schema(_CREATE_215), Version(2, 64): Schema(_CREATE_264)}


def _schema(ver: Version) -> Schema:
    return SCHEMAS[max(v for v in SCHEMAS if v <= ver)]


def _not_found(group_id: str) -> ApiError:
    return ApiError(404, f"Instance group {group_id} could not be found.")


class ServerGroupsController:
    def __init__(self, api: "NovaApi") -> None:
        self.api = api

    def routes(self, v: str) -> list[Route]:
        ep = self.api.endpoint
        return [
            Route(f"{v}/os-server-groups", ep(self.create), methods=["POST"]),
            Route(f"{v}/os-server-groups", ep(self.index), methods=["GET"]),
            Route(f"{v}/os-server-groups/{{group_id}}", ep(self.show), methods=["GET"]),
            Route(f"{v}/os-server-groups/{{group_id}}", ep(self.delete), methods=["DELETE"]),
        ]

    async def view(self, group: dict[str, Any], ver: Version) -> dict[str, Any]:
        out: dict[str, Any] = {"id": group["uuid"], "name": group["name"]}
        if ver >= Version(2, 64):
            out["policy"] = group["policy"]
            out["rules"] = dict(group["rules"] or {})
        else:
            out["policies"] = [group["policy"]]
            out["metadata"] = {}
        out["members"] = await groups.members(self.api.db, group["uuid"])
        if ver >= Version(2, 13):
            out["project_id"] = group["project_id"]
            out["user_id"] = group["user_id"]
        return out

    async def _visible(self, auth: AuthContext, group_id: str) -> dict[str, Any]:
        group = await groups.get_group(self.api.db, group_id) if is_uuid(group_id) else None
        if group is None or (group["project_id"] != auth.project_id and not auth.is_admin):
            raise _not_found(group_id)
        return group

    async def create(self, request: Request):
        auth = await self.api.authenticate(request)
        ver = api_version(request)
        body = await json_body(request)
        _schema(ver).check(body)
        sg = body["server_group"]
        if ver >= Version(2, 64):
            policy, rules = sg["policy"], dict(sg.get("rules") or {})
            if rules and policy != "anti-affinity":
                raise ApiError(400, "Only anti-affinity policy supports rules.")
            if "max_server_per_host" in rules:
                rules["max_server_per_host"] = int(rules["max_server_per_host"])
                if rules["max_server_per_host"] < 1:
                    raise ApiError(400, "Invalid input for field/attribute max_server_per_host. "
                                        "Value: 0. 0 is less than the minimum of 1")
        else:
            policy, rules = sg["policies"][0], {}
        limit = self.api.quotas.limits(auth.project_id)["server_groups"]
        if limit >= 0 and len(await groups.list_groups(self.api.db, auth.project_id)) >= limit:
            raise ApiError(403, "Quota exceeded, too many server groups.")
        group = await groups.create_group(self.api.db, name=sg["name"], project_id=auth.project_id,
                                          user_id=auth.user_id, policy=policy, rules=rules)
        return {"server_group": await self.view(group, ver)}, 200

    async def index(self, request: Request):
        auth = await self.api.authenticate(request)
        ver = api_version(request)
        q = request.query_params
        everyone = auth.is_admin and q.get("all_projects", "").lower() in ("1", "true", "yes", "on")
        found = await groups.list_groups(self.api.db, None if everyone else auth.project_id)
        bounds = {}
        for key in ("limit", "offset"):
            if key in q:
                try:
                    bounds[key] = int(q[key])
                    if bounds[key] < 0:
                        raise ValueError
                except ValueError:
                    raise ApiError(400, f"Invalid input for query parameters {key}. Value: {q[key]}. "
                                        f"'{q[key]}' is not a non-negative integer") from None
        start = bounds.get("offset", 0)
        end = start + bounds["limit"] if "limit" in bounds else None
        return {"server_groups": [await self.view(g, ver) for g in found[start:end]]}, 200

    async def show(self, request: Request):
        auth = await self.api.authenticate(request)
        group = await self._visible(auth, request.path_params["group_id"])
        return {"server_group": await self.view(group, api_version(request))}, 200

    async def delete(self, request: Request):
        auth = await self.api.authenticate(request)
        group_id = request.path_params["group_id"]
        await self._visible(auth, group_id)
        if not await groups.delete_group(self.api.db, group_id):
            raise _not_found(group_id)
        return None, 204


async def check_boot_group(api: "NovaApi", auth: AuthContext, hints: dict[str, Any]) -> str | None:
    """The group a boot's ``group`` hint names, checked: it exists for the project (else 400, as
    Nova's InstanceGroupNotFound on boot) and has room under ``server_group_members`` (else 403)."""
    group_id = hints.get("group")
    if not group_id:
        return None
    group = await groups.get_group(api.db, str(group_id)) if is_uuid(group_id) else None
    if group is None or (group["project_id"] != auth.project_id and not auth.is_admin):
        raise ApiError(400, f"Instance group {group_id} could not be found.")
    limit = api.quotas.limits(group["project_id"])["server_group_members"]
    if limit >= 0 and len(await groups.members(api.db, group["uuid"])) + 1 > limit:
        raise ApiError(403, "Quota exceeded, too many servers in group")
    return group["uuid"]
