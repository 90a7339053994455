"""Compute quotas: the limits of each project, its usage, the check a boot passes, and the
``/limits`` and ``/os-quota-sets`` endpoints that report them.

Nova's defaults (10 instances, 20 cores, 50 GiB RAM) would cap a load test at ten servers, so the
harness starts every project unlimited (``-1``) for instances (``quota_instances`` in the settings),
cores and RAM; an admin sets real limits per project with ``PUT /os-quota-sets/{project_id}``, as
on a real cloud. Usage is counted from Nova's DB when a limit is finite (as Nova's
``count_as_usage`` does), so an unlimited project costs nothing. A boot over quota answers 403
``Quota exceeded for instances: Requested 1, but already used 10 of 10 instances``; over the
``metadata_items`` limit it is 403 too (Nova's ``MetadataLimitExceeded``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import Route

from harness.db import groups
from harness.services.http import ApiError, json_body
from harness.services.microversion import api_version
from harness.services.nova_schemas import QUOTA_RESOURCES_236, QUOTA_UPDATE
from harness.services.validation import as_bool

if TYPE_CHECKING:
    from harness.services.nova_api import NovaApi

#: Nova's default limits of the resources the harness does not lift.
NOVA_DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200, "key_pairs": 100,
                 "metadata_items": 128, "server_groups": 10, "server_group_members": 10}
#: Resources removed from the quota API by 2.36 (network proxies) and 2.57 (personality files).
_PRE_236 = {"fixed_ips": -1, "floating_ips": -1, "security_groups": -1, "security_group_rules": -1,
            "networks": -1}
_PRE_257 = {"injected_files": 5, "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255}


class QuotaEngine:
    """Per-project limits (defaults plus an admin's overrides) and usage from Nova's DB."""

    def __init__(self, api: "NovaApi") -> None:
        self.api = api
        self.defaults = {**NOVA_DEFAULTS, "instances": api.settings.quota_instances,
                         "cores": -1, "ram": -1}
        self.overrides: dict[str, dict[str, int]] = {}

    def limits(self, project_id: str) -> dict[str, int]:
        return {**self.defaults, **self.overrides.get(project_id, {})}

    async def usage(self, project_id: str) -> dict[str, int]:
        rows = await self.api.db.list_instances(project_id=project_id)
        return {"instances": len(rows), "cores": sum(r["vcpus"] for r in rows),
                "ram": sum(r["memory_mb"] for r in rows),
                "server_groups": len(await groups.list_groups(self.api.db, project_id))}

    async def check_boot(self, project_id: str, flavor: dict[str, Any], metadata: dict[str, str]) -> None:
        """403 when one more server of ``flavor`` would exceed the project's limits."""
        limits = self.limits(project_id)
        if 0 <= limits["metadata_items"] < len(metadata):
            raise ApiError(403, f"Quota exceeded for metadata_items: Requested {len(metadata)}, "
                                f"but already used 0 of {limits['metadata_items']} metadata_items")
        wanted = {"instances": 1, "cores": flavor["vcpus"], "ram": flavor["memory_mb"]}
        if all(limits[r] < 0 for r in wanted):
            return
        used = await self.usage(project_id)
        overs = sorted(r for r, n in wanted.items() if limits[r] >= 0 and used[r] + n > limits[r])
        if overs:
            raise ApiError(403, "Quota exceeded for {o}: Requested {req}, but already used {used} of "
                                "{allowed} {o}".format(
                                    o=", ".join(overs), req=", ".join(str(wanted[r]) for r in overs),
                                    used=", ".join(str(used[r]) for r in overs),
                                    allowed=", ".join(str(limits[r]) for r in overs)))

    # -- views ----------------------------------------------------------------------------------
    def quota_set(self, project_id: str, values: dict[str, Any], ver: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"id": project_id}
        if not ver.at_least("2.36"):
            out.update(_PRE_236)
        if not ver.at_least("2.57"):
            out.update(_PRE_257)
        out.update(values)
        return out


class QuotaController:
    """``/limits`` and ``/os-quota-sets`` (show, detail, defaults, update, delete)."""

    def __init__(self, api: "NovaApi", quotas: QuotaEngine) -> None:
        self.api, self.quotas = api, quotas

    def routes(self, v: str) -> list[Route]:
        ep = self.api.endpoint
        q = f"{v}/os-quota-sets/{{project_id}}"
        return [
            Route(f"{v}/limits", ep(self.limits), methods=["GET"]),
            Route(q, ep(self.show), methods=["GET"]),
            Route(f"{q}/detail", ep(self.show), methods=["GET"]),
            Route(f"{q}/defaults", ep(self.defaults), methods=["GET"]),
            Route(q, ep(self.update), methods=["PUT"]),
            Route(q, ep(self.delete), methods=["DELETE"]),
        ]

    async def limits(self, request: Request):
        auth = await self.api.authenticate(request)
        ver = api_version(request)
        project = request.query_params.get("tenant_id") if auth.is_admin else None
        project = project or auth.project_id
        lim = self.quotas.limits(project)
        used = await self.quotas.usage(project)
        absolute: dict[str, int] = {
            "maxTotalInstances": lim["instances"], "maxTotalCores": lim["cores"],
            "maxTotalRAMSize": lim["ram"], "maxServerMeta": lim["metadata_items"],
            "maxTotalKeypairs": lim["key_pairs"], "maxServerGroups": lim["server_groups"],
            "maxServerGroupMembers": lim["server_group_members"],
            "totalInstancesUsed": used["instances"], "totalCoresUsed": used["cores"],
            "totalRAMUsed": used["ram"], "totalServerGroupsUsed": used["server_groups"],
        }
        if not ver.at_least("2.36"):
            absolute.update({"maxTotalFloatingIps": -1, "maxSecurityGroups": -1,
                             "maxSecurityGroupRules": -1, "totalFloatingIpsUsed": 0,
                             "totalSecurityGroupsUsed": 0})
        if not ver.at_least("2.39"):
            absolute["maxImageMeta"] = 128
        if not ver.at_least("2.57"):
            absolute.update({"maxPersonality": 5, "maxPersonalitySize": 10240})
        return {"limits": {"rate": [], "absolute": absolute}}, 200

    def _project(self, request: Request, auth: Any, action: str) -> str:
        project_id = request.path_params["project_id"]
        if project_id != auth.project_id and not auth.is_admin:
            raise ApiError(403, f"Policy doesn't allow os_compute_api:os-quota-sets:{action} to be "
                                "performed.")
        return project_id

    async def show(self, request: Request):
        auth = await self.api.authenticate(request)
        ver = api_version(request)
        detail = request.url.path.endswith("/detail")
        project_id = self._project(request, auth, "detail" if detail else "show")
        limits = self.quotas.limits(project_id)
        if detail:
            used = await self.quotas.usage(project_id)
            values: dict[str, Any] = {r: {"limit": lim, "in_use": used.get(r, 0), "reserved": 0}
                                      for r, lim in limits.items()}
        else:
            values = dict(limits)
        return {"quota_set": self.quotas.quota_set(project_id, values, ver)}, 200

    async def defaults(self, request: Request):
        auth = await self.api.authenticate(request)
        project_id = self._project(request, auth, "defaults")
        return {"quota_set": self.quotas.quota_set(project_id, dict(self.quotas.defaults),
                                                   api_version(request))}, 200

    async def update(self, request: Request):
        auth = await self.api.authenticate(request)
        if not auth.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed.")
        project_id = request.path_params["project_id"]
        body = await json_body(request)
        QUOTA_UPDATE.check(body)
        req = dict(body["quota_set"])
        force = as_bool(req.pop("force", False))
        new = {r: int(v) for r, v in req.items() if r in QUOTA_RESOURCES_236}
        if not force:
            used = await self.quotas.usage(project_id)
            for r, limit in new.items():
                if 0 <= limit < used.get(r, 0):
                    raise ApiError(400, f"Quota limit {limit} for {r} must be greater than or equal "
                                        f"to already used and reserved {used[r]}.")
        self.quotas.overrides.setdefault(project_id, {}).update(new)
        values = self.quotas.limits(project_id)
        out = self.quotas.quota_set(project_id, values, api_version(request))
        out.pop("id")
        return {"quota_set": out}, 200

    async def delete(self, request: Request):
        auth = await self.api.authenticate(request)
        if not auth.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-quota-sets:delete to be performed.")
        self.quotas.overrides.pop(request.path_params["project_id"], None)
        return None, 202
