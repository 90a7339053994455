"""neutron-server (network v2.0) with its plugin and L2 agent (seed, part 3.3).

neutron-server answers REST; the plugin registers ports in Neutron's DB (here: in memory, the
Neutron DB is not Nova's) and notifies the agent by an RPC cast on the ``neutron`` exchange; the
agent wires the port (device-level action) and reports it up to the plugin, which marks the port
ACTIVE. Fixed IPs come from the subnet's allocation pool.

The REST surface is what clients read: networks and subnets (list with filters and ``limit``/
``marker`` paging, show), ports (create, list, show, update, delete), ``/v2.0/extensions`` and
the version documents, with Neutron's error body (``{"NeutronError": {"type", "message",
"detail"}}``) and its 404 types (``NetworkNotFound``, ``SubnetNotFound``, ``PortNotFound``).
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.routing import Route

from harness.messaging.rpc import Method
from harness.services.base import CloudContext, HttpService, Service
from harness.services.http import ApiError, handler, json_body, make_app, neutron_error
from harness.services.rest import AuthContext
from harness.steps import Step
from harness.telemetry import caller_step

#: The API extensions the mock implements (alias, name), as ``GET /v2.0/extensions`` lists them.
EXTENSIONS = [
    ("binding", "Port Binding"), ("port-security", "Port Security"),
    ("project-id", "project_id field enabled"),
    ("network-mtu", "Network MTU"), ("external-net", "Neutron external network"),
    ("network_availability_zone", "Network Availability Zone"),
    ("standard-attr-description", "standard-attr-description"),
    ("standard-attr-revisions", "Resource revision numbers"), ("pagination", "Pagination support"),
    ("sorting", "Sorting support"), ("quotas", "Quota management support"),
    ("quota_details", "Quota details extension"),
]

#: Per-project quotas as ``GET /v2.0/quotas/{project_id}`` reports them.
QUOTAS = {"network": 100, "subnet": 100, "port": -1, "router": 10, "floatingip": 50,
          "security_group": 10, "security_group_rule": 100, "subnetpool": -1, "rbac_policy": 10}

AGENT_TOPIC = "q-agent-notifier"
PLUGIN_TOPIC = "q-plugin"


def _stable(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"harness/network/{name}"))


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


#: Attributes a port create may name (others: 400 Unrecognized attribute, as Neutron answers).
PORT_CREATE_ATTRS = frozenset({
    "network_id", "name", "description", "device_id", "device_owner", "binding:host_id",
    "binding:vnic_type", "binding:profile", "admin_state_up", "project_id", "tenant_id", "fixed_ips",
    "security_groups", "mac_address", "port_security_enabled", "allowed_address_pairs", "extra_dhcp_opts",
})
#: Attributes a port update may change (the rest are read-only or not modelled).
PORT_UPDATABLE = ("name", "description", "device_id", "device_owner", "binding:host_id", "admin_state_up")


def _page(request: Request, items: list[dict[str, Any]], collection: str, base: str) -> dict[str, Any]:
    """Neutron's native pagination: ``limit``/``marker`` and a ``<collection>_links`` next link."""
    q = request.query_params
    if "marker" in q:
        ids = [i["id"] for i in items]
        if q["marker"] not in ids:
            raise ApiError(404, f"Marker {q['marker']} could not be found.", kind="HTTPNotFound")
        items = items[ids.index(q["marker"]) + 1:]
    body: dict[str, Any] = {collection: items}
    if "limit" in q:
        try:
            limit = int(q["limit"])
            if limit < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, f"Invalid input for limit. Reason: '{q['limit']}' should be an integer "
                                "which is greater than or equal to 0.") from None
        if limit:
            body[collection] = items[:limit]
            if len(items) > limit:
                params = [(k, v) for k, v in q.multi_items() if k not in ("marker", "limit")]
                params += [("limit", str(limit)), ("marker", items[limit - 1]["id"])]
                href = f"{base}/v2.0/{collection}?{urlencode(params)}"
                body[f"{collection}_links"] = [{"rel": "next", "href": href}]
    return body


def _filter(request: Request, items: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Equality filters on the query string (several values of one key: any of them)."""
    q = request.query_params
    for key in keys:
        wanted = set(q.getlist(key))
        if wanted:
            items = [i for i in items if _matches(i.get(key), wanted)]
    return items


def _matches(value: Any, wanted: set[str]) -> bool:
    if isinstance(value, bool):  # booleans filter as true/false, any case (Neutron converts them)
        return str(value).lower() in {w.lower() for w in wanted}
    return str(value) in wanted


class NeutronPlugin:
    """The ML2-like plugin: owns networks, subnets, ports and IP allocation."""

    def __init__(self, cidr: str = "10.0.0.0/16") -> None:
        self.net_id, self.subnet_id = _stable("private"), _stable("private-subnet")
        self.cidr = ipaddress.ip_network(cidr)
        self.networks = {self.net_id: {
            "id": self.net_id, "name": "private", "status": "ACTIVE", "admin_state_up": True,
            "shared": True, "router:external": False, "subnets": [self.subnet_id], "mtu": 1450,
            "tenant_id": "", "project_id": "", "availability_zone_hints": [],
            "availability_zones": ["nova"], "provider:network_type": "geneve", "tags": [],
            "port_security_enabled": True, "is_default": True, "description": "",
        }}
        hosts = self.cidr.hosts()
        self.gateway = str(next(hosts))
        self.subnets = {self.subnet_id: {
            "id": self.subnet_id, "name": "private-subnet", "network_id": self.net_id,
            "ip_version": 4, "cidr": str(self.cidr), "gateway_ip": self.gateway,
            "enable_dhcp": True, "allocation_pools": [
                {"start": str(self.cidr.network_address + 2), "end": str(self.cidr.broadcast_address - 1)}
            ], "dns_nameservers": [], "host_routes": [], "tenant_id": "", "project_id": "",
            "tags": [], "description": "",
        }}
        self._free = (str(ip) for ip in hosts)
        self._released: list[str] = []
        self.ports: dict[str, dict[str, Any]] = {}

    def allocate_ip(self) -> str:
        if self._released:
            return self._released.pop()
        try:
            return next(self._free)
        except StopIteration:
            raise ApiError(409, f"No more IP addresses available on network {self.net_id}.",
                           kind="IpAddressGenerationFailure") from None

    def create_port(self, body: dict[str, Any], auth: AuthContext) -> dict[str, Any]:
        net_id = body.get("network_id")
        if net_id is None:
            raise ApiError(400, "Failed to parse request. Required attribute 'network_id' not specified")
        unknown = sorted(set(body) - PORT_CREATE_ATTRS)
        if unknown:
            raise ApiError(400, f"Unrecognized attribute(s) '{', '.join(unknown)}'")
        if not _is_uuid(net_id):
            raise ApiError(400, f"Invalid input for network_id. Reason: '{net_id}' is not a valid UUID.")
        for key in ("name", "device_id", "device_owner", "binding:host_id", "description"):
            if key in body and not isinstance(body[key], str):
                raise ApiError(400, f"Invalid input for {key}. Reason: '{body[key]}' is not a valid string.")
        if "admin_state_up" in body and not isinstance(body["admin_state_up"], bool):
            raise ApiError(400, f"Invalid input for admin_state_up. Reason: '{body['admin_state_up']}' "
                                "cannot be converted to boolean.")
        if net_id not in self.networks:
            raise ApiError(404, f"Network {net_id} could not be found.", kind="NetworkNotFound")
        project = body.get("project_id") or body.get("tenant_id") or auth.project_id
        ip = self.allocate_ip()
        port_id = str(uuid.uuid4())
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        port = {
            "id": port_id, "name": str(body.get("name", "")), "network_id": net_id,
            "tenant_id": project, "project_id": project, "mac_address": _mac(port_id),
            "admin_state_up": True, "status": "DOWN",
            "device_id": str(body.get("device_id", "")), "device_owner": str(body.get("device_owner", "")),
            "fixed_ips": [{"subnet_id": self.subnet_id, "ip_address": ip}],
            "binding:host_id": str(body.get("binding:host_id", "")), "binding:vif_type": "ovs",
            "security_groups": [], "allowed_address_pairs": [], "extra_dhcp_opts": [],
            "description": str(body.get("description", "")), "tags": [], "created_at": now,
            "updated_at": now, "revision_number": 1,
        }
        self.ports[port_id] = port
        return port

    def delete_port(self, port_id: str) -> None:
        port = self.ports.pop(port_id, None)
        if port is None:
            raise ApiError(404, f"Port {port_id} could not be found.", kind="PortNotFound")
        for fip in port["fixed_ips"]:
            self._released.append(fip["ip_address"])


def _mac(port_id: str) -> str:
    b = uuid.UUID(port_id).bytes
    return "fa:16:3e:%02x:%02x:%02x" % (b[0], b[1], b[2])


class Neutron(HttpService):
    name = "neutron-server"
    port_name = "neutron"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        self.plugin = NeutronPlugin()
        self.auth = self.token_validator(account="neutron")
        self.notifier = self.rpc_client("neutron")
        # The plugin's RPC endpoint the agent reports to, and the agent itself.
        self.rpc_server("neutron", PLUGIN_TOPIC, {"update_device_up": Method(self._device_up)}, workers=8)
        self.agent = NeutronAgent(ctx)

    async def start(self) -> None:
        await super().start()
        await self.agent.start()

    async def stop(self) -> None:
        await self.agent.stop()
        await super().stop()

    async def _device_up(self, port_id: str, host: str) -> bool:
        port = self.plugin.ports.get(port_id)
        if port is None:
            return False
        port["status"] = "ACTIVE"
        port["binding:host_id"] = host
        return True

    async def _auth(self, request: Request, step: Step | None = None) -> AuthContext:
        return await self.auth.validate(request.headers.get("x-auth-token"), step=step)

    def _visible(self, auth: AuthContext, item: dict[str, Any]) -> bool:
        return auth.is_admin or auth.roles == ("service",) or item.get("project_id") in ("", auth.project_id)

    # -- endpoints ----------------------------------------------------------------------------
    async def create_port(self, request: Request):
        in_build = caller_step() == Step.COMPUTE_GET_NETWORK
        auth = await self._auth(request, Step.NEUTRON_VALIDATE_TOKEN if in_build else None)
        body = await json_body(request)
        port_req = body.get("port")
        if not isinstance(port_req, dict):
            raise ApiError(400, "Resource body required")
        if in_build:
            async with self.latency.span(self.tracer, Step.NEUTRON_RETURN_NETWORK) as span:
                port = await self._plugin_create(port_req, auth)
                span.set_attribute("openstack.port.id", port["id"])
        else:
            port = await self._plugin_create(port_req, auth)
        return {"port": port}, 201

    async def _plugin_create(self, port_req: dict[str, Any], auth: AuthContext) -> dict[str, Any]:
        with self.tracer.start_as_current_span("neutron.plugin.create_port"):
            port = self.plugin.create_port(port_req, auth)
            await self.notifier.cast(AGENT_TOPIC, "port_update", {"port_id": port["id"],
                                                                  "host": port["binding:host_id"]})
            return port

    async def list_ports(self, request: Request):
        auth = await self._auth(request)
        ports = [p for p in self.plugin.ports.values() if self._visible(auth, p)]
        ports = _filter(request, ports, ("device_id", "device_owner", "network_id", "id", "name",
                                         "status", "mac_address", "project_id", "tenant_id"))
        return _page(request, ports, "ports", self.base_url), 200

    def _port(self, auth: AuthContext, port_id: str) -> dict[str, Any]:
        port = self.plugin.ports.get(port_id)
        if port is None or not self._visible(auth, port):
            raise ApiError(404, f"Port {port_id} could not be found.", kind="PortNotFound")
        return port

    async def show_port(self, request: Request):
        auth = await self._auth(request)
        return {"port": self._port(auth, request.path_params["port_id"])}, 200

    async def update_port(self, request: Request):
        auth = await self._auth(request)
        port = self._port(auth, request.path_params["port_id"])
        body = await json_body(request)
        req = body.get("port")
        if not isinstance(req, dict):
            raise ApiError(400, "Resource body required")
        for key, value in req.items():
            if key not in PORT_UPDATABLE:
                raise ApiError(400, f"Cannot update read-only attribute {key}" if key in port
                               else f"Unrecognized attribute(s) '{key}'")
            if key == "admin_state_up" and not isinstance(value, bool):
                raise ApiError(400, f"Invalid input for admin_state_up. Reason: '{value}' cannot be "
                                    "converted to boolean.")
            if key != "admin_state_up" and not isinstance(value, str):
                raise ApiError(400, f"Invalid input for {key}. Reason: '{value}' is not a valid string.")
        port.update(req)
        port["revision_number"] = port.get("revision_number", 1) + 1
        port["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"port": port}, 200

    async def delete_port(self, request: Request):
        auth = await self._auth(request)
        port = self._port(auth, request.path_params["port_id"])
        self.plugin.delete_port(port["id"])
        return None, 204

    async def list_networks(self, request: Request):
        auth = await self._auth(request)
        nets = [n for n in self.plugin.networks.values() if self._visible(auth, n)]
        nets = _filter(request, nets, ("id", "name", "status", "shared", "router:external",
                                       "project_id", "tenant_id", "is_default"))
        return _page(request, nets, "networks", self.base_url), 200

    async def show_network(self, request: Request):
        await self._auth(request)
        net_id = request.path_params["network_id"]
        net = self.plugin.networks.get(net_id)
        if net is None:
            raise ApiError(404, f"Network {net_id} could not be found.", kind="NetworkNotFound")
        return {"network": net}, 200

    async def list_subnets(self, request: Request):
        await self._auth(request)
        subnets = _filter(request, list(self.plugin.subnets.values()),
                          ("id", "name", "network_id", "cidr", "ip_version", "enable_dhcp"))
        return _page(request, subnets, "subnets", self.base_url), 200

    async def show_subnet(self, request: Request):
        await self._auth(request)
        subnet_id = request.path_params["subnet_id"]
        subnet = self.plugin.subnets.get(subnet_id)
        if subnet is None:
            raise ApiError(404, f"Subnet {subnet_id} could not be found.", kind="SubnetNotFound")
        return {"subnet": subnet}, 200

    async def show_quota(self, request: Request):
        """Neutron's quotas (defaults of neutron.conf; ``port`` lifted to -1, as the harness lifts
        the quotas that would cap a load test; the others cannot be exhausted here)."""
        auth = await self._auth(request)
        project_id = request.path_params["project_id"].removesuffix(".json")
        detail = project_id.endswith("/details") or request.url.path.rstrip("/").endswith("details")
        if project_id != auth.project_id and not auth.is_admin:
            raise ApiError(403, "rule:get_quota is disallowed by policy", kind="PolicyNotAuthorized")
        if not detail:
            return {"quota": dict(QUOTAS)}, 200
        used = {"port": sum(1 for p in self.plugin.ports.values() if p["project_id"] == project_id)}
        return {"quota": {k: {"limit": v, "used": used.get(k, 0), "reserved": 0}
                          for k, v in QUOTAS.items()}}, 200

    async def extensions(self, request: Request):
        await self._auth(request)
        return {"extensions": [
            {"alias": alias, "name": name, "description": name, "updated": "2013-01-01T00:00:00-00:00",
             "links": []} for alias, name in EXTENSIONS
        ]}, 200

    async def versions(self, request: Request):
        return {"versions": [{"id": "v2.0", "status": "CURRENT",
                              "links": [{"rel": "self", "href": f"{self.base_url}/v2.0/"}]}]}, 200

    async def version_v2(self, request: Request):
        return {"resources": [
            {"name": n, "collection": f"{n}s", "links": [{"rel": "self", "href": f"{self.base_url}/v2.0/{n}s"}]}
            for n in ("network", "subnet", "port")
        ]}, 200

    def build_app(self):
        routes = [
            Route("/", handler(self.versions), methods=["GET"]),
            Route("/v2.0", handler(self.version_v2), methods=["GET"]),
            Route("/v2.0/", handler(self.version_v2), methods=["GET"]),
            Route("/v2.0/networks", handler(self.list_networks), methods=["GET"]),
            Route("/v2.0/networks/{network_id}", handler(self.show_network), methods=["GET"]),
            Route("/v2.0/subnets", handler(self.list_subnets), methods=["GET"]),
            Route("/v2.0/subnets/{subnet_id}", handler(self.show_subnet), methods=["GET"]),
            Route("/v2.0/extensions", handler(self.extensions), methods=["GET"]),
            Route("/v2.0/quotas/{project_id}", handler(self.show_quota), methods=["GET"]),
            Route("/v2.0/quotas/{project_id}/details", handler(self.show_quota), methods=["GET"]),
            Route("/v2.0/quotas/{project_id}/details.json", handler(self.show_quota), methods=["GET"]),
            Route("/v2.0/ports", handler(self.create_port), methods=["POST"]),
            Route("/v2.0/ports", handler(self.list_ports), methods=["GET"]),
            Route("/v2.0/ports/{port_id}", handler(self.show_port), methods=["GET"]),
            Route("/v2.0/ports/{port_id}", handler(self.update_port), methods=["PUT"]),
            Route("/v2.0/ports/{port_id}", handler(self.delete_port), methods=["DELETE"]),
        ]
        return make_app(routes, render=neutron_error, tracer=self.tracer, port=self.port)


class NeutronAgent(Service):
    """The L2 agent: takes port updates from the plugin, wires the device, reports it up."""

    name = "neutron-agent"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        self._plugin = self.rpc_client("neutron")
        self.rpc_server("neutron", AGENT_TOPIC, {"port_update": Method(self.port_update)}, workers=8)

    async def port_update(self, port_id: str, host: str) -> None:
        with self.tracer.start_as_current_span(
            "neutron.agent.plug_device", attributes={"openstack.port.id": port_id}
        ):
            pass  # the device-level action: nothing to wire in a mock
        await self._plugin.call(PLUGIN_TOPIC, "update_device_up", {"port_id": port_id, "host": host})
