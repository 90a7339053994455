"""Block-storage quotas: ``/os-quota-sets`` and ``/limits`` of cinder-api, and the check a new
volume passes.

Cinder's defaults hold (10 volumes, 1000 GB per project); an admin changes them with ``PUT
/os-quota-sets/{project_id}``. Over quota, Cinder answers 413 ``overLimit`` (its ``QuotaError``),
e.g. ``VolumeLimitExceeded: Maximum number of volumes allowed (10) exceeded for quota 'volumes'.``
Usage is counted from the volumes cinder-api holds; snapshots and backups are not modelled (0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import Route

from harness.services.http import ApiError, json_body
from harness.services.validation import Schema

if TYPE_CHECKING:
    from harness.services.cinder import CinderApi

DEFAULTS = {"volumes": 10, "gigabytes": 1000, "snapshots": 10, "backups": 10, "backup_gigabytes": 1000,
            "groups": 10, "per_volume_gigabytes": -1}
_VALUE = {"type": ["integer", "string"], "pattern": "^-?[0-9]+$", "minimum": -1}
UPDATE_SCHEMA = Schema({
    "type": "object",
    "properties": {"quota_set": {"type": "object", "properties": {k: _VALUE for k in DEFAULTS},
                                 "additionalProperties": False}},
    "required": ["quota_set"], "additionalProperties": False,
})


class CinderQuotas:
    def __init__(self, api: "CinderApi") -> None:
        self.api = api
        self.overrides: dict[str, dict[str, int]] = {}

    def limits(self, project_id: str) -> dict[str, int]:
        return {**DEFAULTS, **self.overrides.get(project_id, {})}

    def usage(self, project_id: str) -> dict[str, int]:
        vols = [v for v in self.api.volumes.values() if v["project_id"] == project_id]
        return {"volumes": len(vols), "gigabytes": sum(v["size"] for v in vols)}

    def check_create(self, project_id: str, size: int) -> None:
        """413 when one more volume of ``size`` GB would go over the project's quota."""
        lim, used = self.limits(project_id), self.usage(project_id)
        if 0 <= lim["per_volume_gigabytes"] < size:
            raise ApiError(400, f"Invalid input received: Volume size '{size}' exceeded the maximum "
                                f"per-volume size of {lim['per_volume_gigabytes']}GB.")
        if 0 <= lim["gigabytes"] < used["gigabytes"] + size:
            raise ApiError(413, f"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds "
                                f"allowed gigabytes quota. Requested {size}G, quota is {lim['gigabytes']}G "
                                f"and {used['gigabytes']}G has been consumed.")
        if 0 <= lim["volumes"] <= used["volumes"]:
            raise ApiError(413, f"VolumeLimitExceeded: Maximum number of volumes allowed "
                                f"({lim['volumes']}) exceeded for quota 'volumes'.")

    # -- endpoints --------------------------------------------------------------------------------
    def routes(self, prefix: str, ep: Any) -> list[Route]:
        q = f"{prefix}/os-quota-sets/{{target}}"
        return [
            Route(f"{prefix}/limits", ep(self.show_limits), methods=["GET"]),
            Route(q, ep(self.show), methods=["GET"]),
            Route(f"{q}/defaults", ep(self.defaults), methods=["GET"]),
            Route(q, ep(self.update), methods=["PUT"]),
        ]

    async def show_limits(self, request: Request):
        auth = await self.api.authenticate(request)
        lim, used = self.limits(auth.project_id), self.usage(auth.project_id)
        return {"limits": {"rate": [], "absolute": {
            "maxTotalVolumes": lim["volumes"], "maxTotalVolumeGigabytes": lim["gigabytes"],
            "maxTotalSnapshots": lim["snapshots"], "maxTotalBackups": lim["backups"],
            "maxTotalBackupGigabytes": lim["backup_gigabytes"],
            "totalVolumesUsed": used["volumes"], "totalGigabytesUsed": used["gigabytes"],
            "totalSnapshotsUsed": 0, "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0,
        }}}, 200

    def _target(self, request: Request, auth: Any, action: str) -> str:
        target = request.path_params["target"]
        if target != auth.project_id and not auth.is_admin:
            raise ApiError(403, f"Policy doesn't allow volume_extension:quotas:{action} to be performed.")
        return target

    async def show(self, request: Request):
        auth = await self.api.authenticate(request)
        target = self._target(request, auth, "show")
        lim = self.limits(target)
        if request.query_params.get("usage", "false").lower() in ("true", "1", "yes"):
            used = self.usage(target)
            values: dict[str, Any] = {k: {"limit": v, "in_use": used.get(k, 0), "reserved": 0, "allocated": 0}
                                      for k, v in lim.items()}
        else:
            values = dict(lim)
        return {"quota_set": {"id": target, **values}}, 200

    async def defaults(self, request: Request):
        auth = await self.api.authenticate(request)
        return {"quota_set": {"id": self._target(request, auth, "show"), **DEFAULTS}}, 200

    async def update(self, request: Request):
        auth = await self.api.authenticate(request)
        if not auth.is_admin:
            raise ApiError(403, "Policy doesn't allow volume_extension:quotas:update to be performed.")
        body = await json_body(request)
        UPDATE_SCHEMA.check(body)
        target = request.path_params["target"]
        self.overrides.setdefault(target, {}).update({k: int(v) for k, v in body["quota_set"].items()})
        return {"quota_set": self.limits(target)}, 200
