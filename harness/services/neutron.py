"""neutron-server (network v2.0) with its plugin and L2 agent (seed, part 3.3).

neutron-server answers REST; the plugin registers ports in Neutron's DB (here: in memory, the
Neutron DB is not Nova's) and notifies the agent by an RPC cast on the ``neutron`` exchange; the
agent wires the port (device-level action) and reports it up to the plugin, which marks the port
ACTIVE. Fixed IPs come from the subnet's allocation pool.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from harness.messaging.rpc import Method
from harness.services.base import CloudContext, HttpService, Service
from harness.services.http import ApiError, handler, json_body, make_app, neutron_error
from harness.services.rest import AuthContext
from harness.steps import Step
from harness.telemetry import caller_step, step_span

AGENT_TOPIC = "q-agent-notifier"
PLUGIN_TOPIC = "q-plugin"


def _stable(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"harness/network/{name}"))


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


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
        if not isinstance(net_id, str) or not net_id:
            raise ApiError(400, "Failed to parse request. Required attribute 'network_id' not specified")
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
            "description": "", "tags": [], "created_at": now, "updated_at": now,
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
            with step_span(self.tracer, Step.NEUTRON_RETURN_NETWORK) as span:
                await self.latency.delay(Step.NEUTRON_RETURN_NETWORK)
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
        q = request.query_params
        ports = [p for p in self.plugin.ports.values() if self._visible(auth, p)]
        for key in ("device_id", "network_id", "id", "name", "status"):
            if key in q:
                ports = [p for p in ports if p.get(key) == q[key]]
        return {"ports": ports}, 200

    async def show_port(self, request: Request):
        auth = await self._auth(request)
        port = self.plugin.ports.get(request.path_params["port_id"])
        if port is None or not self._visible(auth, port):
            raise ApiError(404, f"Port {request.path_params['port_id']} could not be found.", kind="PortNotFound")
        return {"port": port}, 200

    async def delete_port(self, request: Request):
        auth = await self._auth(request)
        port_id = request.path_params["port_id"]
        port = self.plugin.ports.get(port_id)
        if port is None or not self._visible(auth, port):
            raise ApiError(404, f"Port {port_id} could not be found.", kind="PortNotFound")
        self.plugin.delete_port(port_id)
        return None, 204

    async def list_networks(self, request: Request):
        auth = await self._auth(request)
        nets = [n for n in self.plugin.networks.values() if self._visible(auth, n)]
        q = request.query_params
        for key in ("id", "name"):
            if key in q:
                nets = [n for n in nets if n.get(key) == q[key]]
        return {"networks": nets}, 200

    async def show_network(self, request: Request):
        await self._auth(request)
        net_id = request.path_params["network_id"]
        net = self.plugin.networks.get(net_id)
        if net is None:
            raise ApiError(404, f"Network {net_id} could not be found.", kind="NetworkNotFound")
        return {"network": net}, 200

    async def list_subnets(self, request: Request):
        await self._auth(request)
        return {"subnets": list(self.plugin.subnets.values())}, 200

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
            Route("/v2.0/ports", handler(self.create_port), methods=["POST"]),
            Route("/v2.0/ports", handler(self.list_ports), methods=["GET"]),
            Route("/v2.0/ports/{port_id}", handler(self.show_port), methods=["GET"]),
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
