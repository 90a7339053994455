"""How nova-api renders servers and flavors (compute API v2.1 response shapes)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

# vm_state -> API status, as nova/api/openstack/common.py maps them (task states refine a few).
_STATUS = {
    "building": "BUILD",
    "active": "ACTIVE",
    "stopped": "SHUTOFF",
    "error": "ERROR",
    "deleted": "DELETED",
    "paused": "PAUSED",
    "suspended": "SUSPENDED",
}
_TASK_STATUS = {"rebooting": "REBOOT", "rebooting_hard": "HARD_REBOOT", "deleting": None}


def api_status(vm_state: str, task_state: str | None) -> str:
    if vm_state == "active" and task_state in _TASK_STATUS and _TASK_STATUS[task_state]:
        return _TASK_STATUS[task_state]  # type: ignore[return-value]
    return _STATUS.get(vm_state, "UNKNOWN")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def link(base: str, kind: str, item_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{base}/v2.1/{kind}/{item_id}"},
        {"rel": "bookmark", "href": f"{base}/{kind}/{item_id}"},
    ]


def flavor_view(base: str, f: dict[str, Any], *, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f["id"], "name": f["name"], "links": link(base, "flavors", f["id"])}
    if detail:
        out.update({
            "ram": f["memory_mb"], "vcpus": f["vcpus"], "disk": f["root_gb"],
            "OS-FLV-EXT-DATA:ephemeral": f["ephemeral_gb"], "swap": f["swap"] or "",
            "rxtx_factor": 1.0, "os-flavor-access:is_public": f["is_public"],
            "OS-FLV-DISABLED:disabled": False, "description": None, "extra_specs": {},
        })
    return out


def server_view(
    base: str, inst: dict[str, Any], flavor: dict[str, Any] | None, *, is_admin: bool,
    embed_flavor: bool = False,
) -> dict[str, Any]:
    """A server as ``GET /servers/{id}`` shows it (v2.1 plus the extended attributes)."""
    host = inst["host"]
    host_id = hashlib.sha224(f"{inst['project_id']}{host}".encode()).hexdigest() if host else ""
    if embed_flavor and flavor:  # microversion >= 2.47
        flavor_out: dict[str, Any] = {
            "vcpus": flavor["vcpus"], "ram": flavor["memory_mb"], "disk": flavor["root_gb"],
            "ephemeral": flavor["ephemeral_gb"], "swap": flavor["swap"],
            "original_name": flavor["name"], "extra_specs": {},
        }
    else:
        flavor_out = {"id": inst["flavor_id"], "links": link(base, "flavors", inst["flavor_id"])}
    request = inst.get("request") or {}
    server: dict[str, Any] = {
        "id": inst["uuid"],
        "name": inst["name"],
        "status": api_status(inst["vm_state"], inst["task_state"]),
        "tenant_id": inst["project_id"],
        "user_id": inst["user_id"],
        "metadata": request.get("metadata") or {},
        "hostId": host_id,
        "image": {"id": inst["image_ref"], "links": link(base, "images", inst["image_ref"])}
        if inst["image_ref"] else "",
        "flavor": flavor_out,
        "created": iso(inst["created_at"]),
        "updated": iso(inst["updated_at"]),
        "addresses": inst.get("addresses") or {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": link(base, "servers", inst["uuid"]),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": inst["progress"],
        "OS-EXT-AZ:availability_zone": inst["availability_zone"] or "",
        "config_drive": "",
        "key_name": request.get("key_name"),
        "OS-SRV-USG:launched_at": iso(inst["launched_at"]),
        "OS-SRV-USG:terminated_at": None,
        "OS-EXT-STS:task_state": inst["task_state"],
        "OS-EXT-STS:vm_state": inst["vm_state"],
        "OS-EXT-STS:power_state": inst["power_state"],
        "os-extended-volumes:volumes_attached": [
            {"id": v, "delete_on_termination": d} for v, d in request.get("volumes", [])
        ],
        "security_groups": [{"name": "default"}],
        "locked": False,
        "description": None,
        "tags": [],
        "trusted_image_certificates": None,
        "host_status": "UP" if host else "",
    }
    if inst["fault_message"]:
        server["fault"] = {
            "code": inst["fault_code"] or 500,
            "created": iso(inst["updated_at"]),
            "message": inst["fault_message"],
        }
        if is_admin and inst.get("fault_details"):
            server["fault"]["details"] = inst["fault_details"]
    if is_admin:
        server.update({
            "OS-EXT-SRV-ATTR:host": host,
            "OS-EXT-SRV-ATTR:hypervisor_hostname": host,
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{inst['uuid'][:8]}",
        })
    return server
