"""cinder-api (block storage v3) with cinder-scheduler and cinder-volume (seed, part 3.2).

cinder-api answers REST and sends a new volume to cinder-scheduler by RPC; the scheduler picks a
backend and casts to that backend's cinder-volume, which "creates" it on the (fake) storage.
nova-compute asks cinder-api for the instance's persistent storage in steps 26-28: the attachment
of its boot volume, or the (empty) list of attachments of an image-backed server.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from harness.messaging.rpc import Method
from harness.services.base import CloudContext, HttpService, Service
from harness.services.http import ApiError, handler, json_body, make_app, nova_error
from harness.services.rest import AuthContext
from harness.steps import Step
from harness.telemetry import caller_step, step_span

BACKEND = "cinder-volume@lvmdriver-1"
MIN_MICROVERSION, MAX_MICROVERSION = "3.0", "3.70"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.gmtime())


class CinderApi(HttpService):
    name = "cinder-api"
    port_name = "cinder"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        self.volumes: dict[str, dict[str, Any]] = {}
        self.attachments: dict[str, dict[str, Any]] = {}
        self.auth = self.token_validator(account="cinder")
        self.rpc = self.rpc_client("cinder")
        self.scheduler = CinderScheduler(ctx)
        self.volume_service = CinderVolume(ctx, self.volumes)

    async def start(self) -> None:
        await super().start()
        await self.scheduler.start()
        await self.volume_service.start()

    async def stop(self) -> None:
        await self.volume_service.stop()
        await self.scheduler.stop()
        await super().stop()

    async def _auth(self, request: Request, step: Step | None = None) -> AuthContext:
        auth = await self.auth.validate(request.headers.get("x-auth-token"), step=step)
        pid = request.path_params.get("project_id")
        if pid is not None and pid != auth.project_id and not (auth.is_admin or "service" in auth.roles):
            raise ApiError(403, "Policy doesn't allow this operation for another project.")
        return auth

    def _volume(self, request: Request, auth: AuthContext) -> dict[str, Any]:
        vid = request.path_params["volume_id"]
        vol = self.volumes.get(vid)
        if vol is None or (vol["os-vol-tenant-attr:tenant_id"] != request.path_params["project_id"]):
            raise ApiError(404, f"Volume {vid} could not be found.")
        return vol

    # -- volumes ------------------------------------------------------------------------------
    async def create_volume(self, request: Request):
        auth = await self._auth(request)
        body = await json_body(request)
        req = body.get("volume")
        if not isinstance(req, dict):
            raise ApiError(400, "Missing required element 'volume' in request body.")
        size = req.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ApiError(400, f"Invalid input received: 'size' must be an integer >= 1, got {size!r}.")
        vid = str(uuid.uuid4())
        vol = {
            "id": vid, "name": req.get("name"), "description": req.get("description"),
            "size": size, "status": "creating", "availability_zone": "nova",
            "volume_type": "lvmdriver-1", "bootable": "true" if req.get("imageRef") else "false",
            "attachments": [], "metadata": req.get("metadata") or {}, "created_at": _now(),
            "updated_at": None, "multiattach": False, "encrypted": False,
            "os-vol-tenant-attr:tenant_id": request.path_params["project_id"],
            "user_id": auth.user_id, "snapshot_id": None, "source_volid": None,
            "volume_image_metadata": {"image_id": req["imageRef"]} if req.get("imageRef") else {},
            "links": [{"rel": "self", "href": f"{self.base_url}/v3/{request.path_params['project_id']}/volumes/{vid}"}],
        }
        self.volumes[vid] = vol
        await self.rpc.cast("cinder-scheduler", "create_volume", {"volume_id": vid, "size": size})
        return {"volume": vol}, 202

    async def list_volumes(self, request: Request):
        await self._auth(request)
        pid = request.path_params["project_id"]
        vols = [v for v in self.volumes.values() if v["os-vol-tenant-attr:tenant_id"] == pid]
        if "status" in request.query_params:
            vols = [v for v in vols if v["status"] == request.query_params["status"]]
        if request.url.path.endswith("/detail"):
            return {"volumes": vols}, 200
        return {"volumes": [{"id": v["id"], "name": v["name"], "links": v["links"]} for v in vols]}, 200

    async def show_volume(self, request: Request):
        auth = await self._auth(request)
        return {"volume": self._volume(request, auth)}, 200

    async def delete_volume(self, request: Request):
        auth = await self._auth(request)
        vol = self._volume(request, auth)
        if vol["attachments"]:
            raise ApiError(400, "Invalid volume: Volume status must be available or error or "
                                "error_restoring or error_extending or error_managing and must not "
                                "be migrating, attached, belong to a group, have snapshots or be "
                                "disassociated from snapshots after volume transfer.")
        vol["status"] = "deleting"
        self.volumes.pop(vol["id"], None)
        return None, 202

    # -- attachments (v3.27+) -----------------------------------------------------------------
    async def create_attachment(self, request: Request):
        in_build = caller_step() == Step.COMPUTE_GET_VOLUME
        auth = await self._auth(request, Step.CINDER_VALIDATE_TOKEN if in_build else None)
        body = await json_body(request)
        req = body.get("attachment")
        if not isinstance(req, dict) or not req.get("volume_uuid") or not req.get("instance_uuid"):
            raise ApiError(400, "Missing required element 'attachment' (volume_uuid, instance_uuid).")
        if in_build:
            with step_span(self.tracer, Step.CINDER_RETURN_VOLUME, name="cinder.attachment_create"):
                await self.latency.delay(Step.CINDER_RETURN_VOLUME)
                att = self._attach(request.path_params["project_id"], req)
        else:
            att = self._attach(request.path_params["project_id"], req)
        return {"attachment": att}, 200

    def _attach(self, project_id: str, req: dict[str, Any]) -> dict[str, Any]:
        vol = self.volumes.get(str(req["volume_uuid"]))
        if vol is None or vol["os-vol-tenant-attr:tenant_id"] != project_id:
            raise ApiError(404, f"Volume {req['volume_uuid']} could not be found.")
        if vol["status"] != "available":
            raise ApiError(400, f"Invalid volume: Volume {vol['id']} status must be available, "
                                f"but current status is: {vol['status']}.")
        aid = str(uuid.uuid4())
        att = {"id": aid, "volume_id": vol["id"], "instance": str(req["instance_uuid"]),
               "status": "attached", "attach_mode": "rw", "attached_at": _now(),
               "detached_at": None, "connection_info": {"driver_volume_type": "iscsi"}}
        self.attachments[aid] = att
        vol["status"] = "in-use"
        vol["attachments"] = [{"id": aid, "attachment_id": aid, "volume_id": vol["id"],
                               "server_id": att["instance"], "host_name": None,
                               "device": "/dev/vda", "attached_at": att["attached_at"]}]
        return att

    async def list_attachments(self, request: Request):
        in_build = caller_step() == Step.COMPUTE_GET_VOLUME
        await self._auth(request, Step.CINDER_VALIDATE_TOKEN if in_build else None)
        instance = request.query_params.get("instance_id")

        def find() -> list[dict[str, Any]]:
            return [a for a in self.attachments.values() if instance is None or a["instance"] == instance]

        if in_build:
            with step_span(self.tracer, Step.CINDER_RETURN_VOLUME):
                await self.latency.delay(Step.CINDER_RETURN_VOLUME)
                return {"attachments": find()}, 200
        return {"attachments": find()}, 200

    async def delete_attachment(self, request: Request):
        await self._auth(request)
        att = self.attachments.pop(request.path_params["attachment_id"], None)
        if att is None:
            raise ApiError(404, f"Attachment {request.path_params['attachment_id']} could not be found.")
        vol = self.volumes.get(att["volume_id"])
        if vol is not None:
            vol["attachments"] = [a for a in vol["attachments"] if a["id"] != att["id"]]
            vol["status"] = "in-use" if vol["attachments"] else "available"
        return None, 200

    def detach_and_delete(self, instance_uuid: str, *, delete_volumes: bool) -> None:
        """Used when a server is deleted: free its attachments (and volumes if asked)."""
        for aid, att in list(self.attachments.items()):
            if att["instance"] == instance_uuid:
                self.attachments.pop(aid)
                vol = self.volumes.get(att["volume_id"])
                if vol is not None:
                    vol["attachments"], vol["status"] = [], "available"
                    if delete_volumes:
                        self.volumes.pop(vol["id"], None)

    # -- version discovery --------------------------------------------------------------------
    def _version(self) -> dict[str, Any]:
        return {"id": "v3.0", "status": "CURRENT", "version": MAX_MICROVERSION,
                "min_version": MIN_MICROVERSION, "updated": "2023-07-28T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.base_url}/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.volume+json;version=3"}]}

    async def versions(self, request: Request):
        return {"versions": [self._version()]}, 300

    async def version_v3(self, request: Request):
        return {"versions": [self._version()]}, 200

    def build_app(self):
        p = "/v3/{project_id}"
        routes = [
            Route("/", handler(self.versions), methods=["GET"]),
            Route("/v3", handler(self.version_v3), methods=["GET"]),
            Route("/v3/", handler(self.version_v3), methods=["GET"]),
            Route(f"{p}/volumes", handler(self.create_volume), methods=["POST"]),
            Route(f"{p}/volumes", handler(self.list_volumes), methods=["GET"]),
            Route(f"{p}/volumes/detail", handler(self.list_volumes), methods=["GET"]),
            Route(f"{p}/volumes/{{volume_id}}", handler(self.show_volume), methods=["GET"]),
            Route(f"{p}/volumes/{{volume_id}}", handler(self.delete_volume), methods=["DELETE"]),
            Route(f"{p}/attachments", handler(self.create_attachment), methods=["POST"]),
            Route(f"{p}/attachments", handler(self.list_attachments), methods=["GET"]),
            Route(f"{p}/attachments/{{attachment_id}}", handler(self.delete_attachment), methods=["DELETE"]),
        ]
        return make_app(routes, render=nova_error, tracer=self.tracer, port=self.port)


class CinderScheduler(Service):
    """Picks a backend for a new volume (one LVM backend here) and casts to its cinder-volume."""

    name = "cinder-scheduler"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        self.rpc = self.rpc_client("cinder")
        self.rpc_server("cinder", "cinder-scheduler", {"create_volume": Method(self.create_volume)}, workers=4)

    async def create_volume(self, volume_id: str, size: int) -> None:
        with self.tracer.start_as_current_span("cinder.scheduler.choose_backend",
                                               attributes={"openstack.volume.backend": BACKEND}):
            pass
        await self.rpc.cast(f"cinder-volume.{BACKEND}", "create_volume", {"volume_id": volume_id, "size": size})


class CinderVolume(Service):
    """The volume service of one backend: creates volumes on the (fake) storage."""

    name = "cinder-volume"

    def __init__(self, ctx: CloudContext, volumes: dict[str, dict[str, Any]]) -> None:
        super().__init__(ctx)
        self.volumes = volumes  # cinder's DB, shared with cinder-api in the embedded cloud
        self.rpc_server("cinder", f"cinder-volume.{BACKEND}",
                        {"create_volume": Method(self.create_volume)}, workers=4)

    async def create_volume(self, volume_id: str, size: int) -> None:
        with self.tracer.start_as_current_span("cinder.volume.create", attributes={"openstack.volume.size_gb": size}):
            vol = self.volumes.get(volume_id)
            if vol is not None:
                vol["status"] = "available"
                vol["updated_at"] = _now()
