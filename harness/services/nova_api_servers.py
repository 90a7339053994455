"""``/servers``: the boot (steps 3-8), list, show and delete, as nova-api answers them.

``POST /servers`` is step 3: the token is validated (4), the body checked against the compute
schema of the request's microversion, the image, networks, ports and volumes looked up in Glance,
Neutron and Cinder (unnumbered calls, as Nova's API makes them), the flavor and quota read (6),
the instance record written (7) and a host asked of nova-scheduler with an ``rpc.call`` (8).
Then 202: the rest of the boot (9-29) runs asynchronously and the client polls. A boot for which
no host fits still answers 202; the server goes to ERROR with Nova's "No valid host" fault.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from opentelemetry import trace
from starlette.requests import Request
from starlette.routing import Route

from harness.db import groups
from harness.messaging import RpcError, RpcTimeout
from harness.services.http import ApiError, json_body
from harness.services.microversion import Version, api_version
from harness.services.nova_schemas import LIST_QUERY, server_create
from harness.services.nova_server_groups import check_boot_group
from harness.services.nova_views import STATUSES, api_status, link, server_view, vm_states_for
from harness.services.rest import AuthContext
from harness.services.validation import as_bool, is_uuid
from harness.steps import Step
from harness.telemetry import step_attributes

if TYPE_CHECKING:
    from harness.services.nova_api import NovaApi

NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
MAX_LIMIT = 1000  # Nova's [api] max_limit
GB = 1024 ** 3


@dataclass
class BootRequest:
    """What a valid ``POST /servers`` body asks for."""

    name: str
    flavor_ref: str
    image_ref: str  # "" when the server boots from a volume
    networks: Any  # "auto", "none" or a list of {"uuid"|"port": ...}
    availability_zone: str | None
    metadata: dict[str, str]
    key_name: str | None
    volumes: list[tuple[str, bool]]  # (volume id, delete_on_termination)
    boot_volume: str | None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    scheduler_hints: dict[str, Any] = field(default_factory=dict)


def _ref_id(ref: Any) -> str:
    """flavorRef and imageRef may be ids or links (``.../flavors/1``); Nova takes the last part."""
    return str(ref).rstrip("/").rsplit("/", 1)[-1]


def parse_boot(body: dict[str, Any], ver: Version) -> BootRequest:
    """Schema first (400 worded as Nova's validator), then Nova's own semantic checks."""
    server_create(ver).check(body)
    server = body["server"]
    if int(server.get("min_count", 1) or 1) != 1 or int(server.get("max_count", 1) or 1) != 1:
        raise ApiError(400, "min_count and max_count must be 1: the harness boots one server per "
                            "request (send one request per server).")
    volumes: list[tuple[str, bool]] = []
    boot_volume: str | None = None
    image_ref = server.get("imageRef") or ""
    for bdm in server.get("block_device_mapping_v2") or []:
        source = bdm.get("source_type")
        dest = bdm.get("destination_type", "volume" if source == "volume" else "local")
        boot_index = bdm.get("boot_index")
        is_boot = boot_index is not None and int(boot_index) == 0
        if source == "image" and dest == "local":
            if not is_boot:
                raise ApiError(400, "Block Device Mapping is Invalid: Mapping image to local is not "
                                    "supported.")
            image_ref = bdm.get("uuid") or bdm.get("image_id") or image_ref
            continue
        if source != "volume" or dest != "volume":
            raise ApiError(400, f"Block Device Mapping is Invalid: source_type {source!r} with "
                                f"destination_type {dest!r} is not supported by the harness (boot an "
                                "existing volume: source_type 'volume', destination_type 'volume').")
        volume_id = bdm.get("uuid") or bdm.get("volume_id")
        if not volume_id:
            raise ApiError(400, "Block Device Mapping is Invalid: Missing device UUID.")
        if not is_uuid(volume_id):
            raise ApiError(400, f"Block Device Mapping is Invalid: failed to get volume {volume_id}.")
        volumes.append((volume_id, as_bool(bdm.get("delete_on_termination", False))))
        if is_boot:
            boot_volume = volume_id
    if [v for v, _ in volumes].count(boot_volume) > 1 or len({v for v, _ in volumes}) != len(volumes):
        raise ApiError(400, "Block Device Mapping is Invalid: the same volume is mapped twice.")
    if not image_ref and boot_volume is None:
        raise ApiError(400, "Missing imageRef attribute")
    if boot_volume is None and not is_uuid(_ref_id(image_ref)):
        raise ApiError(400, "Invalid imageRef provided.")
    networks = server.get("networks", "auto")
    if isinstance(networks, list):
        for net in networks:
            if net.get("port"):
                continue
            if "uuid" not in net:
                raise ApiError(400, "Bad network format: missing 'uuid'")
            if not is_uuid(net["uuid"]):
                raise ApiError(400, "Bad networks format: network uuid is not in proper format "
                                    f"({net['uuid']})")
        ports = [n["port"] for n in networks if n.get("port")]
        if len(set(ports)) != len(ports):
            raise ApiError(400, "Duplicate ports are not allowed")
    az = server.get("availability_zone")
    if az and ":" in az:
        az = az.split(":", 1)[0] or None
    return BootRequest(
        name=server["name"], flavor_ref=_ref_id(server["flavorRef"]),
        image_ref=_ref_id(image_ref) if image_ref else "", networks=networks,
        availability_zone=az, metadata=dict(server.get("metadata") or {}),
        key_name=server.get("key_name"), volumes=volumes, boot_volume=boot_volume,
        description=server.get("description"), tags=list(server.get("tags") or []),
        scheduler_hints=dict(body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {}),
    )


class ServersController:
    def __init__(self, api: "NovaApi") -> None:
        self.api = api

    def routes(self, v: str) -> list[Route]:
        ep = self.api.endpoint
        return [
            Route(f"{v}/servers", ep(self.create), methods=["POST"]),
            Route(f"{v}/servers", ep(self.index), methods=["GET"]),
            Route(f"{v}/servers/detail", ep(self.index), methods=["GET"]),
            Route(f"{v}/servers/{{server_id}}", ep(self.show), methods=["GET"]),
            Route(f"{v}/servers/{{server_id}}", ep(self.delete), methods=["DELETE"]),
        ]

    async def instance(self, auth: AuthContext, server_id: str) -> dict[str, Any]:
        """The caller's (or, for an admin, anyone's) live instance, else 404 as Nova words it."""
        inst = await self.api.db.get_instance(server_id) if is_uuid(server_id) else None
        if inst is None or (inst["project_id"] != auth.project_id and not auth.is_admin):
            raise ApiError(404, f"Instance {server_id} could not be found.")
        return inst

    def view(self, inst: dict[str, Any], auth: AuthContext, ver: Version) -> dict[str, Any]:
        return server_view(self.api.base_url, inst, self.api.flavors.get(inst["flavor_id"]),
                           is_admin=auth.is_admin, ver=ver)

    # -- POST /servers (step 3) -----------------------------------------------------------------
    async def create(self, request: Request):
        span = trace.get_current_span()
        span.set_attributes(step_attributes(Step.BOOT_REQUEST))
        async with self.api.latency.step(Step.BOOT_REQUEST):  # nova-api's own work is in its time
            return await self._create(request)

    async def _create(self, request: Request):
        api, span = self.api, trace.get_current_span()
        auth = await api.authenticate(request, Step.API_VALIDATE_TOKEN)
        ver = api_version(request)
        req = parse_boot(await json_body(request), ver)
        image = await self._check_image(auth, req)
        await self._check_networks(auth, req)
        boot_meta = await self._check_volumes(auth, req)
        await self._check_zone(req)
        group_id = await check_boot_group(api, auth, req.scheduler_hints)
        async with api.db.span(api.tracer, "SELECT", "flavors", step=Step.API_DB_LOOKUP, latency=api.latency):
            flavor = api.flavors.get(req.flavor_ref) or await api.db.get_flavor(req.flavor_ref)
            if flavor is None or flavor["id"] != req.flavor_ref:
                raise ApiError(400, "Invalid flavorRef provided.")
            await api.quotas.check_boot(auth.project_id, flavor, req.metadata)
        if image is not None:
            _check_image_fits(image, flavor, boot_from_volume=req.boot_volume is not None)
        if boot_meta is not None:
            _check_volume_fits(boot_meta, flavor)
        server_id = str(uuid.uuid4())
        span.set_attribute("openstack.instance.id", server_id)
        image_props = {k: image[k] for k in ("architecture", "os_distro", "hw_architecture")
                       if image and image.get(k)}
        record = {
            "uuid": server_id, "name": req.name, "project_id": auth.project_id,
            "user_id": auth.user_id, "flavor_id": flavor["id"], "image_ref": req.image_ref,
            "vcpus": flavor["vcpus"], "memory_mb": flavor["memory_mb"],
            "root_gb": 0 if req.boot_volume else flavor["root_gb"],
            "vm_state": "building", "task_state": "scheduling", "power_state": 0,
            "requested_az": req.availability_zone,
            "request": {"networks": req.networks, "metadata": req.metadata, "key_name": req.key_name,
                        "volumes": req.volumes, "image_arch": image.get("hw_architecture") if image else None,
                        "image_properties": image_props, "description": req.description,
                        "tags": req.tags, "scheduler_hints": req.scheduler_hints,
                        "volume_image_ref": (boot_meta or {}).get("id"),
                        "server_groups": [group_id] if group_id else []},
        }
        async with api.db.span(api.tracer, "INSERT", "instances", step=Step.API_DB_CREATE_INSTANCE,
                               latency=api.latency):
            await api.db.create_instance(record)
            if group_id is not None:
                await groups.add_member(api.db, group_id, server_id)
        spec = {
            "instance_uuid": server_id, "vcpus": record["vcpus"], "memory_mb": record["memory_mb"],
            "disk_gb": record["root_gb"], "availability_zone": req.availability_zone,
            "image_id": req.image_ref or None, "image_arch": record["request"]["image_arch"],
            "group": group_id,
        }
        try:
            await api.scheduler.call("scheduler", "select_destinations", {"spec": spec},
                                     step=Step.SCHEDULE_CALL)
        except RpcTimeout as exc:
            await self._fail(server_id, f"Timed out waiting for the scheduler: {exc}")
        except RpcError as exc:
            text = str(exc)
            message = NO_VALID_HOST if "NoValidHost" in text else f"Build of instance {server_id} failed: {text}"
            await self._fail(server_id, message)
        body = {"server": {"id": server_id, "links": link(api.base_url, "servers", server_id),
                           "OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}],
                           "adminPass": secrets.token_urlsafe(9)}}
        return body, 202, {"Location": f"{api.base_url}/v2.1/servers/{server_id}"}

    async def _fail(self, server_id: str, message: str) -> None:
        # Only from BUILD (a delete may have come first); a claim the scheduler made before it
        # failed (e.g. its cast was refused) is given back.
        if await self.api.db.update_instance(server_id, {
            "vm_state": "error", "task_state": None, "host": None, "fault_message": message,
            "fault_code": 500,
        }, expected_task_state=["scheduling"]):
            await self.api.db.free(server_id)
        trace.get_current_span().add_event("instance.error", {"message": message})

    async def _get(self, auth: AuthContext, url: str, template: str):
        resp = await self.api.rest.request("GET", url, template=template,
                                           headers={"X-Auth-Token": auth.token})
        if resp.status_code not in (200, 404):
            raise ApiError(503, f"A service Nova depends on answered {resp.status_code} to GET {template}.",
                           kind="serviceUnavailable")
        return resp

    async def _check_image(self, auth: AuthContext, req: BootRequest) -> dict[str, Any] | None:
        """nova-api looks the image up in Glance before accepting a boot (as Nova does)."""
        if not req.image_ref:
            return None
        glance = self.api.settings.endpoint("glance")
        resp = await self._get(auth, f"{glance}/v2/images/{req.image_ref}", "/v2/images/{image_id}")
        if resp.status_code == 404:
            raise ApiError(400, "Can not find requested image")
        image = resp.json()
        if image.get("status") != "active":
            raise ApiError(400, f"Image {req.image_ref} is not active.")
        return image

    async def _check_networks(self, auth: AuthContext, req: BootRequest) -> None:
        """Requested networks and ports must exist in Neutron, ports be free (validate_networks)."""
        if not isinstance(req.networks, list):
            return
        neutron = self.api.settings.endpoint("neutron")
        for net in req.networks:
            if net.get("port"):
                resp = await self._get(auth, f"{neutron}/v2.0/ports/{net['port']}", "/v2.0/ports/{port_id}")
                if resp.status_code == 404:
                    raise ApiError(400, f"Port id {net['port']} could not be found.")
                if resp.json()["port"].get("device_id"):
                    raise ApiError(409, f"Port {net['port']} is still in use.")
            else:
                resp = await self._get(auth, f"{neutron}/v2.0/networks/{net['uuid']}",
                                       "/v2.0/networks/{network_id}")
                if resp.status_code == 404:
                    raise ApiError(400, f"Network {net['uuid']} could not be found.")

    async def _check_volumes(self, auth: AuthContext, req: BootRequest) -> dict[str, Any] | None:
        """Volumes to attach must exist in the caller's project and be ``available``; a boot
        volume must be bootable. Returns the image metadata of the boot volume (Nova's
        ``get_bdm_image_metadata``), which stands for the image of a volume-backed server."""
        cinder = self.api.settings.endpoint("cinder")
        boot_meta = None
        for volume_id, _ in req.volumes:
            resp = await self._get(auth, f"{cinder}/v3/{auth.project_id}/volumes/{volume_id}",
                                   "/v3/{project_id}/volumes/{volume_id}")
            if resp.status_code == 404:
                raise ApiError(400, f"Block Device Mapping is Invalid: failed to get volume {volume_id}.")
            vol = resp.json()["volume"]
            if vol["status"] != "available":
                raise ApiError(400, f"Invalid volume: volume '{volume_id}' status must be 'available'. "
                                    f"Currently in '{vol['status']}'")
            if volume_id == req.boot_volume:
                if str(vol.get("bootable")).lower() != "true":
                    raise ApiError(400, f"Block Device {volume_id} is not bootable.")
                meta = vol.get("volume_image_metadata") or {}
                boot_meta = {"id": meta.get("image_id"), "min_ram": int(meta.get("min_ram") or 0),
                             "min_disk": int(meta.get("min_disk") or 0), "volume_size": vol["size"]}
        return boot_meta

    async def _check_zone(self, req: BootRequest) -> None:
        if req.availability_zone is None:
            return
        zones = {n["availability_zone"] for n in await self.api.db.list_compute_nodes() if not n["disabled"]}
        if req.availability_zone not in zones:
            raise ApiError(400, "The requested availability zone is not available")

    # -- GET /servers, /servers/detail, /servers/{id} -------------------------------------------
    async def show(self, request: Request):
        auth = await self.api.authenticate(request)
        inst = await self.instance(auth, request.path_params["server_id"])
        return {"server": self.view(inst, auth, api_version(request))}, 200

    async def index(self, request: Request):
        auth = await self.api.authenticate(request)
        ver = api_version(request)
        q = request.query_params
        LIST_QUERY.check(dict(q))
        detail = request.url.path.endswith("/detail")
        limit = min(int(q["limit"]), MAX_LIMIT) if q.get("limit") else MAX_LIMIT
        all_tenants = "all_tenants" in q and q["all_tenants"].lower() not in ("0", "false", "off", "no")
        if all_tenants and not auth.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:servers:index:get_all_tenants "
                                "to be performed.")
        project = None if all_tenants else (q.get("project_id") if auth.is_admin and q.get("project_id")
                                            else auth.project_id)
        marker = None
        if "marker" in q:
            m = await self.api.db.get_instance(q["marker"]) if is_uuid(q["marker"]) else None
            if m is None or (project is not None and m["project_id"] != project):
                raise ApiError(400, f"marker [{q['marker']}] not found")
            marker = (m["created_at"], m["uuid"])
        since = _query_time(q, "changes-since")
        before = _query_time(q, "changes-before") if ver.at_least("2.66") else None
        if since is not None and before is not None and since > before:
            raise ApiError(400, "The value of changes-since must be less than or equal to changes-before.")
        statuses = {s.upper() for s in q.getlist("status")}
        if statuses - STATUSES:
            if ver.at_least("2.38"):
                raise ApiError(400, "Invalid status value")
            return {"servers": []}, 200
        name_re = None
        if "name" in q:
            try:
                name_re = re.compile(q["name"])
            except re.error:
                name_re = re.compile(re.escape(q["name"]))
        exact = {"flavor_id": q.get("flavor"), "image_ref": q.get("image"),
                 "availability_zone": q.get("availability_zone"),
                 "host": q.get("host") if auth.is_admin else None}
        exact = {k: v for k, v in exact.items() if v is not None}
        filtered = bool(statuses or name_re or exact)
        rows = await self.api.db.list_instances(project_id=project, limit=None if filtered else limit,
                                                marker_created=marker, changed_since=since,
                                                changed_before=before,
                                                vm_states=vm_states_for(statuses) if statuses else None)
        if filtered:
            rows = [r for r in rows
                    if (not statuses or api_status(r["vm_state"], r["task_state"]) in statuses)
                    and (name_re is None or name_re.search(r["name"]))
                    and all(str(r.get(k)) == v for k, v in exact.items())][:limit]
        if detail:
            items = [self.view(r, auth, ver) for r in rows]
        else:
            items = [{"id": r["uuid"], "name": r["name"],
                      "links": link(self.api.base_url, "servers", r["uuid"])}
                     for r in rows]
        body: dict[str, Any] = {"servers": items}
        if rows and len(rows) == limit:
            path = "servers/detail" if detail else "servers"
            params = [(k, v) for k, v in q.multi_items() if k not in ("marker", "limit")]
            params += [("limit", str(limit)), ("marker", rows[-1]["uuid"])]
            body["servers_links"] = [{"rel": "next",
                                      "href": f"{self.api.base_url}/v2.1/{path}?{urlencode(params)}"}]
        return body, 200

    # -- DELETE /servers/{id} -------------------------------------------------------------------
    async def delete(self, request: Request):
        auth = await self.api.authenticate(request)
        inst = await self.instance(auth, request.path_params["server_id"])
        if inst["task_state"] == "deleting":
            return None, 204
        if not inst["host"]:
            await self._local_delete(inst)
            return None, 204
        await self.api.db.update_instance(inst["uuid"], {"task_state": "deleting"})
        await self.api.compute.cast(f"compute.{inst['host']}", "terminate_instance",
                                    {"instance_uuid": inst["uuid"]})
        return None, 204

    async def _local_delete(self, inst: dict[str, Any]) -> None:
        """A server that never reached a host is deleted by nova-api itself (as Nova does)."""
        db = self.api.db
        async with db.span(self.api.tracer, "UPDATE", "instances"):
            await db.free(inst["uuid"])
            await db.update_instance(inst["uuid"], {"vm_state": "deleted", "task_state": None, "deleted": True})


def _query_time(q: Any, key: str) -> float | None:
    """``changes-since``/``changes-before``: an ISO 8601 time (naive means UTC), as epoch seconds."""
    value = q.get(key)
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"Invalid input for query parameters {key}. Value: {value}. "
                            f"'{value}' is not a 'date-time'") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.timestamp()


def _check_image_fits(image: dict[str, Any], flavor: dict[str, Any], *, boot_from_volume: bool) -> None:
    """Nova's ``_validate_flavor_image_nostatus``: RAM, then disk against min_disk and size."""
    min_ram = int(image.get("min_ram") or 0)
    if min_ram > flavor["memory_mb"]:
        raise ApiError(400, "Flavor's memory is too small for requested image.")
    if boot_from_volume or flavor["root_gb"] == 0:
        return
    disk = flavor["root_gb"] * GB
    min_disk = int(image.get("min_disk") or 0) * GB
    if min_disk > disk:
        raise ApiError(400, "Flavor's disk is smaller than the minimum size specified in image "
                            f"metadata. Flavor disk is {disk} bytes, minimum size is {min_disk} bytes.")
    size = int(image.get("size") or 0)
    if size > disk:
        raise ApiError(400, f"Flavor's disk is too small for requested image. Flavor disk is {disk} "
                            f"bytes, image is {size} bytes.")


def _check_volume_fits(meta: dict[str, Any], flavor: dict[str, Any]) -> None:
    """A volume-backed server: the flavor's RAM and the volume's size against the image's needs."""
    if meta["min_ram"] > flavor["memory_mb"]:
        raise ApiError(400, "Flavor's memory is too small for requested image.")
    size, min_disk = meta["volume_size"] * GB, meta["min_disk"] * GB
    if min_disk > size:
        raise ApiError(400, "Volume is smaller than the minimum size specified in image metadata. "
                            f"Volume size is {size} bytes, minimum size is {min_disk} bytes.")
