"""nova-api (compute v2.1): the REST entry of a boot, steps 3-8.

``POST /servers`` validates the token (4), reads the flavor and quota (6), writes the instance
record (7) and asks nova-scheduler for a host with an ``rpc.call`` (8), then answers 202: the boot
goes on asynchronously (9-29) and the client polls ``GET /servers/{id}``. A boot for which no host
fits still answers 202 and the server goes to ERROR with Nova's "No valid host was found" fault.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from opentelemetry import trace
from starlette.requests import Request
from starlette.routing import Route

from harness.messaging import RpcError, RpcTimeout
from harness.services.base import CloudContext, HttpService
from harness.services.http import ApiError, handler, json_body, make_app, nova_error
from harness.services.nova_views import flavor_view, link, server_view
from harness.services.rest import AuthContext
from harness.steps import Step
from harness.telemetry import step_attributes

NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
_STATUS_TO_VM_STATE = {"ACTIVE": "active", "BUILD": "building", "ERROR": "error", "SHUTOFF": "stopped",
                       "DELETED": "deleted", "PAUSED": "paused", "SUSPENDED": "suspended"}
MIN_VERSION, MAX_VERSION = "2.1", "2.96"
_NAME_OK = re.compile(r"^[^\x00-\x1f]{1,255}$")


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def _parse_version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


class NovaApi(HttpService):
    name = "nova-api"
    port_name = "nova"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        if ctx.db is None:
            raise ValueError("nova-api needs Nova's DB")
        self.db = ctx.db
        self.auth = self.token_validator(account="nova")
        self.scheduler = self.rpc_client("nova")
        self.compute = self.rpc_client("nova")
        self._flavors: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        await super().start()
        self._flavors = {f["id"]: f for f in await self.db.list_flavors()}

    # -- helpers ------------------------------------------------------------------------------
    async def _auth(self, request: Request, step: Step | None = None) -> AuthContext:
        return await self.auth.validate(request.headers.get("x-auth-token"), step=step)

    def _microversion(self, request: Request) -> tuple[int, int]:
        """Negotiate the compute microversion (``OpenStack-API-Version: compute X.Y``)."""
        raw = request.headers.get("openstack-api-version", "")
        value = None
        if raw:
            parts = raw.strip().split()
            if len(parts) == 2 and parts[0].lower() == "compute":
                value = parts[1]
        value = value or request.headers.get("x-openstack-nova-api-version")
        if not value:
            return _parse_version(MIN_VERSION)
        if value == "latest":
            return _parse_version(MAX_VERSION)
        try:
            ver = _parse_version(value)
        except ValueError:
            raise ApiError(400, f"Invalid API version request string {value}") from None
        if not (_parse_version(MIN_VERSION) <= ver <= _parse_version(MAX_VERSION)):
            raise ApiError(406, f"Version {value} is not supported by the API. Minimum is "
                                f"{MIN_VERSION} and maximum is {MAX_VERSION}.", kind="computeFault")
        return ver

    def _version_headers(self, ver: tuple[int, int]) -> dict[str, str]:
        text = f"{ver[0]}.{ver[1]}"
        return {"OpenStack-API-Version": f"compute {text}", "X-OpenStack-Nova-API-Version": text,
                "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"}

    async def _instance(self, auth: AuthContext, server_id: str) -> dict[str, Any]:
        inst = await self.db.get_instance(server_id) if _is_uuid(server_id) else None
        if inst is None or (inst["project_id"] != auth.project_id and not auth.is_admin):
            raise ApiError(404, f"Instance {server_id} could not be found.")
        return inst

    # -- POST /servers ------------------------------------------------------------------------
    async def create_server(self, request: Request):
        span = trace.get_current_span()
        span.set_attributes(step_attributes(Step.BOOT_REQUEST))
        await self.latency.delay(Step.BOOT_REQUEST)
        auth = await self._auth(request, Step.API_VALIDATE_TOKEN)
        ver = self._microversion(request)
        req = self._parse_create(await json_body(request))
        image = await self._check_image(auth, req)
        await self._check_networks(auth, req)
        async with self.db.span(self.tracer, "SELECT", "flavors", step=Step.API_DB_LOOKUP,
                                latency=self.latency):
            flavor = await self.db.get_flavor(str(req["flavorRef"]))
            if flavor is None:
                raise ApiError(400, f"Flavor {req['flavorRef']} could not be found.")
            quota = self.settings.quota_instances
            if quota >= 0 and await self.db.count_instances(auth.project_id) >= quota:
                raise ApiError(403, "Quota exceeded for instances: Requested 1, but already used "
                                    f"{quota} of {quota} instances")
        if image is not None:
            if image.get("min_disk", 0) > flavor["root_gb"] and not req["boot_volume"]:
                raise ApiError(400, "Flavor's disk is too small for requested image. Flavor disk "
                                    f"is {flavor['root_gb'] * 1024 ** 3} bytes, image is "
                                    f"{image['min_disk'] * 1024 ** 3} bytes.")
            if image.get("min_ram", 0) > flavor["memory_mb"]:
                raise ApiError(400, "Flavor's memory is too small for requested image.")
        server_id = str(uuid.uuid4())
        span.set_attribute("openstack.instance.id", server_id)
        record = {
            "uuid": server_id, "name": req["name"], "project_id": auth.project_id,
            "user_id": auth.user_id, "flavor_id": flavor["id"], "image_ref": req["imageRef"] or "",
            "vcpus": flavor["vcpus"], "memory_mb": flavor["memory_mb"],
            "root_gb": 0 if req["boot_volume"] else flavor["root_gb"],
            "vm_state": "building", "task_state": "scheduling", "power_state": 0,
            "requested_az": req["availability_zone"],
            "request": {"networks": req["networks"], "metadata": req["metadata"],
                        "key_name": req["key_name"], "volumes": req["volumes"],
                        "image_arch": image.get("hw_architecture") if image else None},
        }
        async with self.db.span(self.tracer, "INSERT", "instances", step=Step.API_DB_CREATE_INSTANCE,
                                latency=self.latency):
            await self.db.create_instance(record)
        spec = {
            "instance_uuid": server_id, "vcpus": record["vcpus"], "memory_mb": record["memory_mb"],
            "disk_gb": record["root_gb"], "availability_zone": req["availability_zone"],
            "image_id": req["imageRef"], "image_arch": record["request"]["image_arch"],
        }
        try:
            await self.scheduler.call("scheduler", "select_destinations", {"spec": spec},
                                      step=Step.SCHEDULE_CALL)
        except RpcTimeout as exc:
            await self._fail(server_id, f"Timed out waiting for the scheduler: {exc}")
        except RpcError as exc:
            text = str(exc)
            message = NO_VALID_HOST if "NoValidHost" in text else f"Build of instance {server_id} failed: {text}"
            await self._fail(server_id, message)
        body = {"server": {"id": server_id, "links": link(self.base_url, "servers", server_id),
                           "OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}],
                           "adminPass": secrets.token_urlsafe(9)}}
        headers = {"Location": f"{self.base_url}/v2.1/servers/{server_id}", **self._version_headers(ver)}
        return body, 202, headers

    async def _fail(self, server_id: str, message: str) -> None:
        await self.db.update_instance(server_id, {
            "vm_state": "error", "task_state": None, "fault_message": message, "fault_code": 500,
        })
        trace.get_current_span().add_event("instance.error", {"message": message})

    def _parse_create(self, body: dict[str, Any]) -> dict[str, Any]:
        server = body.get("server")
        if not isinstance(server, dict):
            raise ApiError(400, "Invalid input for field/attribute server. Value: None. 'server' is a required property")
        name = server.get("name")
        if not isinstance(name, str) or not _NAME_OK.match(name) or name.strip() != name or not name:
            raise ApiError(400, f"Invalid input for field/attribute name. Value: {name!r}. "
                                "A name of 1 to 255 printable characters is required")
        flavor_ref = server.get("flavorRef")
        if not isinstance(flavor_ref, (str, int)) or isinstance(flavor_ref, bool) or str(flavor_ref) == "":
            raise ApiError(400, "Invalid input for field/attribute flavorRef. 'flavorRef' is a required property")
        bdms = server.get("block_device_mapping_v2") or []
        if not isinstance(bdms, list) or not all(isinstance(b, dict) for b in bdms):
            raise ApiError(400, "Invalid input for field/attribute block_device_mapping_v2.")
        volumes: list[tuple[str, bool]] = []
        boot_volume = False
        for bdm in bdms:
            if bdm.get("source_type") != "volume" or not _is_uuid(bdm.get("uuid")):
                raise ApiError(400, "Block Device Mapping is Invalid: only source_type 'volume' "
                                    "with a volume uuid is supported.")
            volumes.append((str(bdm["uuid"]), bool(bdm.get("delete_on_termination", False))))
            if str(bdm.get("boot_index", "")) == "0":
                boot_volume = True
        image_ref = server.get("imageRef") or ""
        if not boot_volume:
            if not isinstance(image_ref, str) or not _is_uuid(image_ref):
                raise ApiError(400, f"Invalid imageRef provided: {image_ref!r}.")
        elif image_ref and not _is_uuid(image_ref):
            raise ApiError(400, f"Invalid imageRef provided: {image_ref!r}.")
        networks = server.get("networks", "auto")
        if isinstance(networks, str):
            if networks not in ("auto", "none"):
                raise ApiError(400, f"Invalid input for field/attribute networks. Value: {networks!r}.")
        elif isinstance(networks, list):
            for net in networks:
                if not isinstance(net, dict) or not (
                    ("uuid" in net and _is_uuid(net["uuid"])) or ("port" in net and _is_uuid(net["port"]))
                ):
                    raise ApiError(400, f"Bad networks format: network uuid is not in proper format ({net!r})")
        else:
            raise ApiError(400, "Invalid input for field/attribute networks.")
        az = server.get("availability_zone")
        if az is not None and (not isinstance(az, str) or not az):
            raise ApiError(400, f"Invalid input for field/attribute availability_zone. Value: {az!r}.")
        if az and ":" in az:
            az = az.split(":", 1)[0] or None
        metadata = server.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 255 and len(v) <= 255
            for k, v in metadata.items()
        ):
            raise ApiError(400, "Invalid input for field/attribute metadata: string keys and values "
                                "of at most 255 characters are required.")
        key_name = server.get("key_name")
        if key_name is not None and not isinstance(key_name, str):
            raise ApiError(400, "Invalid input for field/attribute key_name.")
        return {"name": name, "flavorRef": flavor_ref, "imageRef": image_ref or None,
                "networks": networks, "availability_zone": az, "metadata": metadata,
                "key_name": key_name, "volumes": volumes, "boot_volume": boot_volume}

    async def _check_image(self, auth: AuthContext, req: dict[str, Any]) -> dict[str, Any] | None:
        """nova-api looks the image up in Glance before accepting a boot (as Nova does)."""
        if not req["imageRef"]:
            return None
        glance = self.settings.endpoint("glance")
        resp = await self.rest.request(
            "GET", f"{glance}/v2/images/{req['imageRef']}", template="/v2/images/{image_id}",
            headers={"X-Auth-Token": auth.token},
        )
        if resp.status_code == 404:
            raise ApiError(400, f"Image {req['imageRef']} could not be found.")
        if resp.status_code != 200:
            raise ApiError(503, f"The image service answered {resp.status_code}.", kind="serviceUnavailable")
        return resp.json()

    async def _check_networks(self, auth: AuthContext, req: dict[str, Any]) -> None:
        """Requested networks and ports must exist in Neutron (Nova's validate_networks)."""
        if not isinstance(req["networks"], list):
            return
        neutron = self.settings.endpoint("neutron")
        for net in req["networks"]:
            kind, ident = ("networks", net["uuid"]) if "uuid" in net else ("ports", net["port"])
            resp = await self.rest.request(
                "GET", f"{neutron}/v2.0/{kind}/{ident}", template=f"/v2.0/{kind}/{{id}}",
                headers={"X-Auth-Token": auth.token},
            )
            if resp.status_code == 404:
                what = "Network" if kind == "networks" else "Port"
                raise ApiError(400, f"{what} {ident} could not be found.")
            if resp.status_code != 200:
                raise ApiError(503, f"The network service answered {resp.status_code}.", kind="serviceUnavailable")

    # -- GET/DELETE ---------------------------------------------------------------------------
    async def show_server(self, request: Request):
        auth = await self._auth(request)
        ver = self._microversion(request)
        inst = await self._instance(auth, request.path_params["server_id"])
        view = server_view(self.base_url, inst, self._flavors.get(inst["flavor_id"]),
                           is_admin=auth.is_admin, embed_flavor=ver >= (2, 47))
        return {"server": view}, 200, self._version_headers(ver)

    async def list_servers(self, request: Request):
        auth = await self._auth(request)
        ver = self._microversion(request)
        q = request.query_params
        detail = request.url.path.endswith("/detail")
        limit = None
        if "limit" in q:
            try:
                limit = int(q["limit"])
                if limit < 0:
                    raise ValueError
            except ValueError:
                raise ApiError(400, f"limit param must be an integer >= 0, got {q['limit']!r}") from None
        marker = None
        if "marker" in q:
            m = await self.db.get_instance(q["marker"]) if _is_uuid(q["marker"]) else None
            if m is None:
                raise ApiError(400, f"marker [{q['marker']}] not found")
            marker = (m["created_at"], m["uuid"])
        vm_state = None
        if "status" in q:
            vm_state = _STATUS_TO_VM_STATE.get(q["status"].upper())
            if vm_state is None:
                raise ApiError(400, f"Invalid status value: {q['status']}")
        all_tenants = auth.is_admin and q.get("all_tenants", "0") not in ("0", "false", "False")
        rows = await self.db.list_instances(
            project_id=None if all_tenants else auth.project_id, name=q.get("name"),
            status_vm_state=vm_state, limit=limit, marker_created=marker,
        )
        if detail:
            items = [server_view(self.base_url, r, self._flavors.get(r["flavor_id"]),
                                 is_admin=auth.is_admin, embed_flavor=ver >= (2, 47)) for r in rows]
        else:
            items = [{"id": r["uuid"], "name": r["name"], "links": link(self.base_url, "servers", r["uuid"])}
                     for r in rows]
        body: dict[str, Any] = {"servers": items}
        if limit is not None and len(rows) == limit and rows:
            path = "servers/detail" if detail else "servers"
            body["servers_links"] = [{"rel": "next", "href": f"{self.base_url}/v2.1/{path}?limit={limit}&marker={rows[-1]['uuid']}"}]
        return body, 200, self._version_headers(ver)

    async def delete_server(self, request: Request):
        auth = await self._auth(request)
        inst = await self._instance(auth, request.path_params["server_id"])
        if inst["task_state"] == "deleting":
            return None, 204
        if inst["host"] is None or inst["vm_state"] == "error" and not inst["host"]:
            await self._local_delete(inst)
            return None, 204
        await self.db.update_instance(inst["uuid"], {"task_state": "deleting"})
        await self.compute.cast(f"compute.{inst['host']}", "terminate_instance",
                                {"instance_uuid": inst["uuid"]})
        return None, 204

    async def _local_delete(self, inst: dict[str, Any]) -> None:
        """A server that never reached a host is deleted by nova-api itself (as Nova does)."""
        async with self.db.span(self.tracer, "UPDATE", "instances"):
            await self.db.free(inst["uuid"])
            await self.db.update_instance(inst["uuid"], {"vm_state": "deleted", "task_state": None,
                                                          "deleted": True})

    async def list_flavors(self, request: Request):
        await self._auth(request)
        detail = request.url.path.endswith("/detail")
        flavors = sorted(self._flavors.values(), key=lambda f: (f["memory_mb"], f["id"]))
        return {"flavors": [flavor_view(self.base_url, f, detail=detail) for f in flavors]}, 200

    async def show_flavor(self, request: Request):
        await self._auth(request)
        fid = request.path_params["flavor_id"]
        f = self._flavors.get(fid)
        if f is None:
            raise ApiError(404, f"Flavor {fid} could not be found.")
        return {"flavor": flavor_view(self.base_url, f, detail=True)}, 200

    # -- version discovery --------------------------------------------------------------------
    def _version(self) -> dict[str, Any]:
        return {"id": "v2.1", "status": "CURRENT", "version": MAX_VERSION, "min_version": MIN_VERSION,
                "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{self.base_url}/v2.1/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    async def versions(self, request: Request):
        return {"versions": [self._version()]}, 200

    async def version_v21(self, request: Request):
        return {"version": self._version()}, 200

    def build_app(self):
        v = "/v2.1"
        routes = [
            Route("/", handler(self.versions), methods=["GET"]),
            Route(v, handler(self.version_v21), methods=["GET"]),
            Route(f"{v}/", handler(self.version_v21), methods=["GET"]),
            Route(f"{v}/servers", handler(self.create_server), methods=["POST"]),
            Route(f"{v}/servers", handler(self.list_servers), methods=["GET"]),
            Route(f"{v}/servers/detail", handler(self.list_servers), methods=["GET"]),
            Route(f"{v}/servers/{{server_id}}", handler(self.show_server), methods=["GET"]),
            Route(f"{v}/servers/{{server_id}}", handler(self.delete_server), methods=["DELETE"]),
            Route(f"{v}/flavors", handler(self.list_flavors), methods=["GET"]),
            Route(f"{v}/flavors/detail", handler(self.list_flavors), methods=["GET"]),
            Route(f"{v}/flavors/{{flavor_id}}", handler(self.show_flavor), methods=["GET"]),
        ]
        return make_app(routes, render=nova_error, tracer=self.tracer, port=self.port)

