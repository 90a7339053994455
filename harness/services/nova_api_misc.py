"""The compute API besides servers: flavors, availability zones and hypervisors.

Availability zones and hypervisors are read from Nova's ``compute_nodes`` table, so they report the
fake hosts the cloud runs, with their real usage. Hypervisors are admin-only (Nova's default
policy); from 2.53 they are identified by UUID and from 2.88 their detail no longer carries the
resource counters (placement owns them), as in Nova.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import Route

from harness.services.http import ApiError
from harness.services.microversion import Version, api_version
from harness.services.nova_views import flavor_view, iso_usec
from harness.services.rest import AuthContext
from harness.services.validation import is_uuid

if TYPE_CHECKING:
    from harness.services.nova_api import NovaApi


def _forbidden(rule: str) -> ApiError:
    return ApiError(403, f"Policy doesn't allow {rule} to be performed.")


class FlavorsController:
    def __init__(self, api: "NovaApi") -> None:
        self.api = api

    def routes(self, v: str) -> list[Route]:
        ep = self.api.endpoint
        return [
            Route(f"{v}/flavors", ep(self.index), methods=["GET"]),
            Route(f"{v}/flavors/detail", ep(self.index), methods=["GET"]),
            Route(f"{v}/flavors/{{flavor_id}}", ep(self.show), methods=["GET"]),
        ]

    async def index(self, request: Request):
        await self.api.authenticate(request)
        ver = api_version(request)
        q = request.query_params
        detail = request.url.path.endswith("/detail")
        flavors = sorted(self.api.flavors.values(), key=lambda f: (f["memory_mb"], f["id"]))
        for key, field in (("minRam", "memory_mb"), ("minDisk", "root_gb")):
            if key in q:
                try:
                    minimum = int(q[key])
                except ValueError:
                    raise ApiError(400, f"Invalid {key} filter [{q[key]}]") from None
                flavors = [f for f in flavors if f[field] >= minimum]
        flavors = _page(flavors, q, key="id", what="flavor")
        body: dict[str, Any] = {"flavors": [flavor_view(self.api.base_url, f, detail=detail, ver=ver)
                                             for f in flavors]}
        return body, 200

    async def show(self, request: Request):
        await self.api.authenticate(request)
        fid = request.path_params["flavor_id"]
        f = self.api.flavors.get(fid)
        if f is None:
            raise ApiError(404, f"Flavor {fid} could not be found.")
        return {"flavor": flavor_view(self.api.base_url, f, detail=True, ver=api_version(request))}, 200


def _page(items: list[dict[str, Any]], q: Any, *, key: str, what: str) -> list[dict[str, Any]]:
    """``limit``/``marker`` paging of an in-memory list (marker not found: 400, as Nova)."""
    if "marker" in q:
        ids = [str(i[key]) for i in items]
        if q["marker"] not in ids:
            raise ApiError(400, f"marker [{q['marker']}] not found")
        items = items[ids.index(q["marker"]) + 1:]
    if "limit" in q:
        try:
            limit = int(q["limit"])
            if limit < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, f"Invalid input for query parameters limit. Value: {q['limit']}. "
                                f"'{q['limit']}' does not match '^[0-9]*$'") from None
        items = items[:limit]
    return items


class AvailabilityZonesController:
    """``os-availability-zone``: zones of enabled hosts; ``/detail`` (admin) names the hosts."""

    def __init__(self, api: "NovaApi") -> None:
        self.api = api
        self.control_host = socket.gethostname()
        self.started = time.time()

    def routes(self, v: str) -> list[Route]:
        ep = self.api.endpoint
        return [
            Route(f"{v}/os-availability-zone", ep(self.index), methods=["GET"]),
            Route(f"{v}/os-availability-zone/detail", ep(self.detail), methods=["GET"]),
        ]

    async def index(self, request: Request):
        await self.api.authenticate(request)
        zones = sorted({n["availability_zone"] for n in await self.api.db.list_compute_nodes()
                        if not n["disabled"]})
        return {"availabilityZoneInfo": [
            {"zoneName": z, "zoneState": {"available": True}, "hosts": None} for z in zones
        ]}, 200

    async def detail(self, request: Request):
        auth = await self.api.authenticate(request)
        if not auth.is_admin:
            raise _forbidden("os_compute_api:os-availability-zone:detail")
        now = iso_usec(time.time())
        svc = {"available": True, "active": True, "updated_at": now}
        zones: dict[str, dict[str, Any]] = {
            "internal": {self.control_host: {"nova-conductor": dict(svc), "nova-scheduler": dict(svc)}},
        }
        for node in await self.api.db.list_compute_nodes():
            zones.setdefault(node["availability_zone"], {})[node["host"]] = {
                "nova-compute": {**svc, "active": not node["disabled"]},
            }
        return {"availabilityZoneInfo": [
            {"zoneName": z, "zoneState": {"available": True}, "hosts": hosts}
            for z, hosts in zones.items()
        ]}, 200


def hypervisor_uuid(host: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"harness/hypervisor/{host}"))


class HypervisorsController:
    """``os-hypervisors`` (admin): list, detail, show, and statistics before 2.88."""

    def __init__(self, api: "NovaApi") -> None:
        self.api = api

    def routes(self, v: str) -> list[Route]:
        ep = self.api.endpoint
        h = f"{v}/os-hypervisors"
        return [
            Route(h, ep(self.index), methods=["GET"]),
            Route(f"{h}/detail", ep(self.index), methods=["GET"]),
            Route(f"{h}/statistics", ep(self.statistics), methods=["GET"]),
            Route(f"{h}/{{hypervisor_id}}", ep(self.show), methods=["GET"]),
        ]

    async def _admin(self, request: Request, rule: str) -> AuthContext:
        auth = await self.api.authenticate(request)
        if not auth.is_admin:
            raise _forbidden(f"os_compute_api:os-hypervisors:{rule}")
        return auth

    def _view(self, node: dict[str, Any], ver: Version, *, detail: bool,
              servers: list[dict[str, Any]] | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": hypervisor_uuid(node["host"]) if ver.at_least("2.53") else node["id"],
            "hypervisor_hostname": node["host"],
            "state": "up", "status": "disabled" if node["disabled"] else "enabled",
        }
        if detail:
            out.update({
                "hypervisor_type": "fake", "hypervisor_version": 1000, "host_ip": "127.0.0.1",
                "service": {"host": node["host"], "disabled_reason": None,
                            "id": hypervisor_uuid("service/" + node["host"]) if ver.at_least("2.53")
                            else node["id"]},
            })
            if ver.at_least("2.88"):
                out["uptime"] = None
            else:
                out.update({
                    "vcpus": node["vcpus"], "memory_mb": node["memory_mb"], "local_gb": node["local_gb"],
                    "vcpus_used": node["vcpus_used"], "memory_mb_used": node["memory_mb_used"],
                    "local_gb_used": node["local_gb_used"],
                    "free_ram_mb": node["memory_mb"] - node["memory_mb_used"],
                    "free_disk_gb": node["local_gb"] - node["local_gb_used"],
                    "current_workload": 0, "running_vms": node["running_vms"],
                    "disk_available_least": node["local_gb"] - node["local_gb_used"],
                    "cpu_info": {"arch": node["arch"], "model": "fake", "vendor": "fake",
                                 "topology": {"cells": 1, "sockets": 1, "cores": node["vcpus"],
                                              "threads": 1}, "features": []},
                })
        if servers is not None:
            out["servers"] = [{"uuid": s["uuid"], "name": s["name"]} for s in servers]
        return out

    async def _servers_by_host(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for inst in await self.api.db.list_instances(project_id=None):
            if inst["host"]:
                out.setdefault(inst["host"], []).append(inst)
        return out

    async def index(self, request: Request):
        detail = request.url.path.endswith("/detail")
        await self._admin(request, "detail" if detail else "list")
        ver = api_version(request)
        q = request.query_params
        nodes = await self.api.db.list_compute_nodes()
        if "hypervisor_hostname_pattern" in q:
            pattern = q["hypervisor_hostname_pattern"]
            nodes = [n for n in nodes if pattern in n["host"]]
            if not nodes:
                raise ApiError(404, f"No hypervisor matching '{pattern}' could be found.")
        with_servers = ver.at_least("2.53") and q.get("with_servers", "false").lower() in ("1", "true", "yes")
        by_host = await self._servers_by_host() if with_servers else None
        key = "uuid" if ver.at_least("2.53") else "id"
        rows = [{**n, "uuid": hypervisor_uuid(n["host"])} for n in nodes]
        if ver.at_least("2.33"):
            rows = _page(rows, q, key=key, what="hypervisor")
        items = [self._view(n, ver, detail=detail,
                            servers=by_host.get(n["host"], []) if by_host is not None else None)
                 for n in rows]
        body: dict[str, Any] = {"hypervisors": items}
        if ver.at_least("2.33") and "limit" in q and items and len(items) == int(q["limit"]):
            path = "os-hypervisors/detail" if detail else "os-hypervisors"
            body["hypervisors_links"] = [{"rel": "next", "href": f"{self.api.base_url}/v2.1/{path}"
                                          f"?limit={q['limit']}&marker={items[-1]['id']}"}]
        return body, 200

    async def show(self, request: Request):
        await self._admin(request, "show")
        ver = api_version(request)
        hid = request.path_params["hypervisor_id"]
        if ver.at_least("2.53") and not is_uuid(hid):
            raise ApiError(400, f"Invalid uuid {hid}")
        for node in await self.api.db.list_compute_nodes():
            if hid in (hypervisor_uuid(node["host"]), str(node["id"])):
                servers = None
                wanted = request.query_params.get("with_servers", "").lower() in ("1", "true", "yes")
                if ver.at_least("2.53") and wanted:
                    servers = (await self._servers_by_host()).get(node["host"], [])
                return {"hypervisor": self._view(node, ver, detail=True, servers=servers)}, 200
        raise ApiError(404, f"Hypervisor with ID {hid} could not be found.")

    async def statistics(self, request: Request):
        await self._admin(request, "statistics")
        if api_version(request).at_least("2.88"):
            raise ApiError(404, "The resource could not be found.")
        nodes = await self.api.db.list_compute_nodes()
        total = {k: sum(n[k] for n in nodes) for k in
                 ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
                  "running_vms")}
        total.update({"count": len(nodes), "current_workload": 0,
                      "free_ram_mb": total["memory_mb"] - total["memory_mb_used"],
                      "free_disk_gb": total["local_gb"] - total["local_gb_used"],
                      "disk_available_least": total["local_gb"] - total["local_gb_used"]})
        return {"hypervisor_statistics": total}, 200


__all__ = ["AvailabilityZonesController", "FlavorsController", "HypervisorsController"]
