"""cinder-api (block storage v3) with cinder-scheduler and cinder-volume (seed, part 3.2).

cinder-api answers REST and sends a new volume to cinder-scheduler by RPC; the scheduler picks a
backend and casts to that backend's cinder-volume, which "creates" it on the (fake) storage
(``creating`` -> ``available``) and deletes it later (``deleting`` -> gone). nova-compute asks
cinder-api for the instance's persistent storage in steps 26-28: it attaches the boot volume
(the volume turns ``in-use`` and lists the attachment), or lists the (empty) attachments of an
image-backed server.

The API is microversioned (``OpenStack-API-Version: volume 3.0`` .. ``3.71``; attachments need
3.27), validates bodies with JSON schema, enforces quotas (:mod:`cinder_quota`), and answers
errors in Cinder's shape
(``{"itemNotFound": {"message": ..., "code": 404}}``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.routing import Route

from harness.messaging.rpc import Method
from harness.services.base import CloudContext, HttpService, Service
from harness.services.cinder_quota import CinderQuotas
from harness.services.http import ApiError, handler, json_body, make_app, nova_error
from harness.services.microversion import VOLUME, Version, api_version, versioned
from harness.services.rest import AuthContext
from harness.services.validation import BOOLEAN, METADATA, UUID, Schema, as_bool, is_uuid
from harness.steps import Step
from harness.telemetry import caller_step

BACKEND = "cinder-volume@lvmdriver-1"
VOLUME_TYPES = {"lvmdriver-1": str(uuid.uuid5(uuid.NAMESPACE_URL, "harness/volume-type/lvmdriver-1"))}
DEFAULT_TYPE = "lvmdriver-1"
ZONES = ("nova",)
MAX_LIMIT = 1000  # cinder.conf osapi_max_limit
GB = 1024 ** 3
_DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
_NULLABLE_STR = {"type": ["string", "null"], "maxLength": 255}

CREATE_SCHEMA = Schema({
    "type": "object",
    "properties": {"volume": {
        "type": "object",
        "properties": {
            "name": _NULLABLE_STR, "description": _NULLABLE_STR,
            "display_name": _NULLABLE_STR, "display_description": _NULLABLE_STR,
            "size": {"type": ["integer", "string", "null"], "pattern": "^[0-9]+$", "minimum": 1,
                     "maximum": 2147483647},
            "availability_zone": _NULLABLE_STR, "volume_type": _NULLABLE_STR,
            "imageRef": {"type": ["string", "null"]}, "image_id": {"type": ["string", "null"]},
            "snapshot_id": {"oneOf": [UUID, {"type": "null"}]},
            "source_volid": {"oneOf": [UUID, {"type": "null"}]},
            "metadata": {"oneOf": [METADATA, {"type": "null"}]},
            "multiattach": BOOLEAN,
        },
        "additionalProperties": True,
    }},
    "required": ["volume"],
})
ATTACH_SCHEMA = Schema({
    "type": "object",
    "properties": {"attachment": {
        "type": "object",
        "properties": {"volume_uuid": UUID, "instance_uuid": UUID, "connector": {"type": ["object", "null"]},
                       "mode": {"type": "string", "enum": ["rw", "ro"]}},
        "required": ["volume_uuid"],
        "additionalProperties": False,
    }},
    "required": ["attachment"], "additionalProperties": False,
})


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
        self.quotas = CinderQuotas(self)

    async def start(self) -> None:
        await super().start()
        await self.scheduler.start()
        await self.volume_service.start()

    async def stop(self) -> None:
        await self.volume_service.stop()
        await self.scheduler.stop()
        await super().stop()

    async def authenticate(self, request: Request) -> AuthContext:
        return await self._auth(request)

    async def _auth(self, request: Request, step: Step | None = None) -> AuthContext:
        auth = await self.auth.validate(request.headers.get("x-auth-token"), step=step)
        pid = request.path_params.get("project_id")
        if pid is not None and pid != auth.project_id and not (auth.is_admin or "service" in auth.roles):
            raise ApiError(400, "Malformed request url")
        return auth

    def _volume(self, request: Request, volume_id: str | None = None) -> dict[str, Any]:
        vid = volume_id or request.path_params["volume_id"]
        vol = self.volumes.get(vid)
        if vol is None or vol["project_id"] != request.path_params["project_id"]:
            raise ApiError(404, f"Volume {vid} could not be found.")
        return vol

    @staticmethod
    def _need(request: Request, version: str) -> None:
        """An endpoint added by a microversion is 404 below it (Cinder's versioned routing)."""
        if not api_version(request).at_least(version):
            raise ApiError(404, "The resource could not be found.")

    # -- views ----------------------------------------------------------------------------------
    def view(self, vol: dict[str, Any], ver: Version, *, admin: bool) -> dict[str, Any]:
        link = f"{self.base_url}/v3/{vol['project_id']}/volumes/{vol['id']}"
        out = {
            "id": vol["id"], "name": vol["name"], "description": vol["description"], "size": vol["size"],
            "status": vol["status"], "availability_zone": vol["availability_zone"],
            "volume_type": vol["volume_type"], "bootable": "true" if vol["image"] else "false",
            "attachments": [dict(a) for a in vol["attachments"]], "metadata": dict(vol["metadata"]),
            "created_at": vol["created_at"], "updated_at": vol["updated_at"],
            "multiattach": vol["multiattach"], "encrypted": False, "replication_status": None,
            "consistencygroup_id": None, "snapshot_id": None, "source_volid": None,
            "os-vol-tenant-attr:tenant_id": vol["project_id"], "user_id": vol["user_id"],
            "links": [{"rel": "self", "href": link}, {"rel": "bookmark", "href": link}],
        }
        if vol["image"]:
            out["volume_image_metadata"] = dict(vol["image"])
        if admin:
            out["os-vol-host-attr:host"] = f"{BACKEND.split('@', 1)[0]}@lvmdriver-1#lvmdriver-1"
            out["os-vol-mig-status-attr:migstat"] = None
            out["os-vol-mig-status-attr:name_id"] = None
        if ver.at_least("3.13"):
            out["group_id"] = None
        if ver.at_least("3.21") and admin:
            out["provider_id"] = None
        if ver.at_least("3.48"):
            out["service_uuid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"harness/{BACKEND}"))
            out["shared_targets"] = False
        if ver.at_least("3.61") and admin:
            out["cluster_name"] = None
        if ver.at_least("3.63"):
            out["volume_type_id"] = VOLUME_TYPES[vol["volume_type"]]
        if ver.at_least("3.65"):
            out["consumes_quota"] = True
        return out

    # -- volumes ----------------------------------------------------------------------------------
    async def create_volume(self, request: Request):
        auth = await self._auth(request)
        body = await json_body(request)
        CREATE_SCHEMA.check(body)
        req = body["volume"]
        if req.get("snapshot_id") or req.get("source_volid") or req.get("backup_id"):
            raise ApiError(400, "Invalid input received: the harness creates volumes empty or from an "
                                "image only (snapshot_id, source_volid and backup_id are not modelled).")
        if req.get("size") is None:
            raise ApiError(400, "Invalid input received: size is a required parameter when no "
                                "snapshot, source volume or backup is given.")
        size = int(req["size"])
        if size < 1:
            raise ApiError(400, f"Invalid input received: Volume size '{req['size']}' must be an integer "
                                "and greater than 0.")
        vtype = req.get("volume_type") or DEFAULT_TYPE
        if vtype not in VOLUME_TYPES and vtype not in VOLUME_TYPES.values():
            raise ApiError(404, f"Volume type with name {vtype} could not be found.")
        vtype = next(n for n, i in VOLUME_TYPES.items() if vtype in (n, i))
        az = req.get("availability_zone") or ZONES[0]
        if az not in ZONES:
            raise ApiError(400, f"Availability zone '{az}' is invalid.")
        image_ref = req.get("imageRef") or req.get("image_id")
        image = await self._image(auth, image_ref, size) if image_ref else {}
        self.quotas.check_create(request.path_params["project_id"], size)  # after the request checks
        vid = str(uuid.uuid4())
        vol = {
            "id": vid, "name": req.get("name", req.get("display_name")),
            "description": req.get("description", req.get("display_description")),
            "size": size, "status": "creating", "availability_zone": az, "volume_type": vtype,
            "image": image, "attachments": [], "metadata": dict(req.get("metadata") or {}),
            "created_at": _now(), "updated_at": None, "multiattach": as_bool(req.get("multiattach", False)),
            "project_id": request.path_params["project_id"], "user_id": auth.user_id,
        }
        self.volumes[vid] = vol
        await self.rpc.cast("cinder-scheduler", "create_volume", {"volume_id": vid, "size": size})
        return {"volume": self.view(vol, api_version(request), admin=auth.is_admin)}, 202

    async def _image(self, auth: AuthContext, image_ref: str, size: int) -> dict[str, Any]:
        """Cinder reads the image from Glance; it must exist and fit in the volume."""
        resp = None
        if is_uuid(image_ref):
            resp = await self.rest.request(
                "GET", f"{self.settings.endpoint('glance')}/v2/images/{image_ref}",
                template="/v2/images/{image_id}", headers={"X-Auth-Token": auth.token})
        if resp is None or resp.status_code != 200:
            raise ApiError(400, "Invalid image identifier or unable to access requested image.")
        img = resp.json()
        if (img.get("min_disk") or 0) > size:
            raise ApiError(400, f"Invalid input received: Image minDisk size {img['min_disk']} is larger "
                                f"than the volume size {size}.")
        image_gb = -(-int(img.get("size") or 0) // GB)
        if image_gb > size:
            raise ApiError(400, f"Invalid input received: Size of specified image {image_gb}GB is larger "
                                f"than volume size {size}GB.")
        return {"image_id": img["id"], "image_name": img.get("name"), "size": str(img.get("size")),
                "min_disk": str(img.get("min_disk", 0)), "min_ram": str(img.get("min_ram", 0)),
                "disk_format": img.get("disk_format"), "container_format": img.get("container_format"),
                "checksum": img.get("checksum")}

    async def list_volumes(self, request: Request):
        auth = await self._auth(request)
        ver = api_version(request)
        q = request.query_params
        pid = request.path_params["project_id"]
        all_tenants = auth.is_admin and q.get("all_tenants", "0") not in ("0", "false", "False")
        vols = [v for v in self.volumes.values() if all_tenants or v["project_id"] == pid]
        vols.sort(key=lambda v: (v["created_at"], v["id"]), reverse=True)
        for key in ("name", "status", "availability_zone", "volume_type"):
            if key in q:
                vols = [v for v in vols if str(v.get(key)) == q[key]]
        if "bootable" in q:
            want = as_bool(q["bootable"])
            vols = [v for v in vols if bool(v["image"]) == want]
        if "marker" in q:
            ids = [v["id"] for v in vols]
            if q["marker"] not in ids:
                raise ApiError(404, f"Marker {q['marker']} could not be found.")
            vols = vols[ids.index(q["marker"]) + 1:]
        limit = MAX_LIMIT
        if "limit" in q:
            try:
                limit = min(int(q["limit"]), MAX_LIMIT)
                if limit < 0:
                    raise ValueError
            except ValueError:
                raise ApiError(400, f"Invalid input received: limit must be a non-negative integer, "
                                    f"got {q['limit']!r}.") from None
        page = vols[:limit]
        detail = request.url.path.endswith("/detail")
        if detail:
            items = [self.view(v, ver, admin=auth.is_admin) for v in page]
        else:
            items = [{"id": v["id"], "name": v["name"], "links": self.view(v, ver, admin=False)["links"]}
                     for v in page]
        body: dict[str, Any] = {"volumes": items}
        if page and len(page) == limit and len(vols) > limit:
            params = [(k, v) for k, v in q.multi_items() if k not in ("marker", "limit")]
            params += [("limit", str(limit)), ("marker", page[-1]["id"])]
            path = "volumes/detail" if detail else "volumes"
            body["volumes_links"] = [{"rel": "next",
                                      "href": f"{self.base_url}/v3/{pid}/{path}?{urlencode(params)}"}]
        return body, 200

    async def show_volume(self, request: Request):
        auth = await self._auth(request)
        vol = self._volume(request)
        return {"volume": self.view(vol, api_version(request), admin=auth.is_admin)}, 200

    async def delete_volume(self, request: Request):
        await self._auth(request)
        vol = self._volume(request)
        if vol["status"] not in _DELETABLE or vol["attachments"]:
            raise ApiError(400, "Invalid volume: Volume status must be available or error or "
                                "error_restoring or error_extending or error_managing and must not "
                                "be migrating, attached, belong to a group, have snapshots, awaiting "
                                "a transfer, or be disassociated from snapshots after volume transfer.")
        vol["status"], vol["updated_at"] = "deleting", _now()
        await self.rpc.cast(f"cinder-volume.{BACKEND}", "delete_volume", {"volume_id": vol["id"]})
        return None, 202

    async def list_types(self, request: Request):
        await self._auth(request)
        return {"volume_types": [self._type(n) for n in VOLUME_TYPES]}, 200

    async def default_type(self, request: Request):
        await self._auth(request)
        self._need(request, "3.62")
        return {"volume_type": self._type(DEFAULT_TYPE)}, 200

    @staticmethod
    def _type(name: str) -> dict[str, Any]:
        return {"id": VOLUME_TYPES[name], "name": name, "description": None, "is_public": True,
                "extra_specs": {"volume_backend_name": name}, "qos_specs_id": None,
                "os-volume-type-access:is_public": True}

    # -- attachments (3.27+) -----------------------------------------------------------------------
    async def create_attachment(self, request: Request):
        in_build = caller_step() == Step.COMPUTE_GET_VOLUME
        await self._auth(request, Step.CINDER_VALIDATE_TOKEN if in_build else None)
        self._need(request, "3.27")
        body = await json_body(request)
        ATTACH_SCHEMA.check(body)
        req = body["attachment"]
        if in_build:
            async with self.latency.span(self.tracer, Step.CINDER_RETURN_VOLUME, name="cinder.attachment_create"):
                att = self._attach(request, req)
        else:
            att = self._attach(request, req)
        return {"attachment": att}, 200

    def _attach(self, request: Request, req: dict[str, Any]) -> dict[str, Any]:
        vol = self._volume(request, req["volume_uuid"])
        if vol["status"] != "available" and not (vol["multiattach"] and vol["status"] == "in-use"):
            raise ApiError(400, f"Invalid volume: Volume {vol['id']} status must be available or "
                                f"downloading to reserve, but the current status is {vol['status']}.")
        aid = str(uuid.uuid4())
        connected = bool(req.get("connector"))
        att = {"id": aid, "volume_id": vol["id"], "instance": req.get("instance_uuid"),
               "status": "attached" if connected else "reserved", "attach_mode": req.get("mode", "rw"),
               "attached_at": _now() if connected else None, "detached_at": None,
               "connection_info": {"driver_volume_type": "iscsi"} if connected else {}}
        self.attachments[aid] = att
        vol["status"], vol["updated_at"] = ("in-use" if connected else "reserved"), _now()
        vol["attachments"].append({
            "id": vol["id"], "attachment_id": aid, "volume_id": vol["id"], "server_id": att["instance"],
            "host_name": (req.get("connector") or {}).get("host"), "device": "/dev/vda",
            "attached_at": att["attached_at"],
        })
        return att

    async def list_attachments(self, request: Request):
        in_build = caller_step() == Step.COMPUTE_GET_VOLUME
        await self._auth(request, Step.CINDER_VALIDATE_TOKEN if in_build else None)
        self._need(request, "3.27")
        q = request.query_params
        pid = request.path_params["project_id"]

        def find() -> list[dict[str, Any]]:
            out = []
            for a in self.attachments.values():
                vol = self.volumes.get(a["volume_id"])
                if vol is None or vol["project_id"] != pid:
                    continue
                if all(q[k] == str(a[f]) for k, f in (("instance_id", "instance"), ("volume_id", "volume_id"),
                                                        ("status", "status")) if k in q):
                    out.append(a)
            return out

        if in_build:
            async with self.latency.span(self.tracer, Step.CINDER_RETURN_VOLUME):
                return {"attachments": find()}, 200
        return {"attachments": find()}, 200

    def _attachment(self, request: Request) -> dict[str, Any]:
        aid = request.path_params["attachment_id"]
        att = self.attachments.get(aid)
        vol = self.volumes.get(att["volume_id"]) if att else None
        if att is None or vol is None or vol["project_id"] != request.path_params["project_id"]:
            raise ApiError(404, f"VolumeAttachment {aid} could not be found.")
        return att

    async def show_attachment(self, request: Request):
        await self._auth(request)
        self._need(request, "3.27")
        return {"attachment": self._attachment(request)}, 200

    async def delete_attachment(self, request: Request):
        await self._auth(request)
        self._need(request, "3.27")
        att = self.attachments.pop(self._attachment(request)["id"])
        vol = self.volumes.get(att["volume_id"])
        if vol is not None:
            vol["attachments"] = [a for a in vol["attachments"] if a["attachment_id"] != att["id"]]
            vol["status"], vol["updated_at"] = ("in-use" if vol["attachments"] else "available"), _now()
        left = (vol or {}).get("attachments", [])
        remaining = [{"id": a["attachment_id"], "status": "attached"} for a in left]
        return {"attachments": remaining}, 200

    # -- version discovery ------------------------------------------------------------------------
    def _version(self) -> dict[str, Any]:
        return {"id": "v3.0", "status": "CURRENT", "version": str(VOLUME.max),
                "min_version": str(VOLUME.min), "updated": "2023-07-28T00:00:00Z",
                "links": [{"rel": "describedby", "type": "text/html",
                           "href": "https://docs.openstack.org/"},
                          {"rel": "self", "href": f"{self.base_url}/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.volume+json;version=3"}]}

    async def versions(self, request: Request):
        return {"versions": [self._version()]}, 300

    async def version_v3(self, request: Request):
        return {"versions": [self._version()]}, 200

    def build_app(self):
        p = "/v3/{project_id}"
        ep = versioned(VOLUME, nova_error)
        routes = [
            Route("/", handler(self.versions), methods=["GET"]),
            Route("/v3", handler(self.version_v3), methods=["GET"]),
            Route("/v3/", handler(self.version_v3), methods=["GET"]),
            Route(f"{p}/volumes", ep(self.create_volume), methods=["POST"]),
            Route(f"{p}/volumes", ep(self.list_volumes), methods=["GET"]),
            Route(f"{p}/volumes/detail", ep(self.list_volumes), methods=["GET"]),
            Route(f"{p}/volumes/{{volume_id}}", ep(self.show_volume), methods=["GET"]),
            Route(f"{p}/volumes/{{volume_id}}", ep(self.delete_volume), methods=["DELETE"]),
            Route(f"{p}/types", ep(self.list_types), methods=["GET"]),
            Route(f"{p}/types/default", ep(self.default_type), methods=["GET"]),
            Route(f"{p}/attachments", ep(self.create_attachment), methods=["POST"]),
            Route(f"{p}/attachments", ep(self.list_attachments), methods=["GET"]),
            Route(f"{p}/attachments/{{attachment_id}}", ep(self.show_attachment), methods=["GET"]),
            Route(f"{p}/attachments/{{attachment_id}}", ep(self.delete_attachment), methods=["DELETE"]),
            *self.quotas.routes(p, ep),
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
    """The volume service of one backend: creates and deletes volumes on the (fake) storage."""

    name = "cinder-volume"

    def __init__(self, ctx: CloudContext, volumes: dict[str, dict[str, Any]]) -> None:
        super().__init__(ctx)
        self.volumes = volumes  # cinder's DB, shared with cinder-api in the embedded cloud
        self.rpc_server("cinder", f"cinder-volume.{BACKEND}", {
            "create_volume": Method(self.create_volume), "delete_volume": Method(self.delete_volume),
        }, workers=4)

    async def create_volume(self, volume_id: str, size: int) -> None:
        with self.tracer.start_as_current_span("cinder.volume.create", attributes={"openstack.volume.size_gb": size}):
            vol = self.volumes.get(volume_id)
            if vol is not None and vol["status"] == "creating":
                vol["status"] = "available"
                vol["updated_at"] = _now()

    async def delete_volume(self, volume_id: str) -> None:
        with self.tracer.start_as_current_span("cinder.volume.delete",
                                               attributes={"openstack.volume.id": volume_id}):
            vol = self.volumes.get(volume_id)
            if vol is not None and vol["status"] == "deleting":
                del self.volumes[volume_id]
