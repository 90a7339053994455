"""How nova-api renders servers, flavors and faults (compute API v2.1 shapes, by microversion).

The fields follow ``nova/api/openstack/compute/views/servers.py``: what every user sees, what only
an admin sees (``OS-EXT-SRV-ATTR:*``, fault details of a 500), and what each microversion adds or
changes (2.3 extended attributes, 2.9 ``locked``, 2.16 ``host_status``, 2.19 ``description``,
2.26 ``tags``, 2.47 the embedded flavor, 2.63 trusted certificates, 2.71 ``server_groups``, 2.73
``locked_reason``, 2.75 ``swap`` as an integer, 2.90 ``hostname``, 2.96
``pinned_availability_zone``, 2.98 image properties, 2.100 ``scheduler_hints``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from harness.services.microversion import Version

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
_TASK_STATUS = {"rebooting": "REBOOT", "reboot_pending": "REBOOT", "reboot_started": "REBOOT",
                "rebooting_hard": "HARD_REBOOT", "reboot_pending_hard": "HARD_REBOOT",
                "reboot_started_hard": "HARD_REBOOT"}
#: Statuses whose servers show ``progress`` (Nova's ``_progress_statuses``).
_PROGRESS = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")
#: Every status a ``?status=`` filter may name.
STATUSES = frozenset({*_STATUS.values(), *_TASK_STATUS.values()})


def vm_states_for(statuses: set[str]) -> set[str]:
    """The vm_states whose servers can show one of ``statuses`` (a DB-side prefilter for
    ``?status=``; :func:`api_status` still decides, task states refining ``active``)."""
    out = {vm for vm, st in _STATUS.items() if st in statuses}
    if statuses & set(_TASK_STATUS.values()):
        out.add("active")
    return out


def api_status(vm_state: str, task_state: str | None) -> str:
    if vm_state == "active" and task_state in _TASK_STATUS:
        return _TASK_STATUS[task_state]
    return _STATUS.get(vm_state, "UNKNOWN")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")[:-6] + "Z"


def iso_usec(ts: float | None) -> str | None:
    """``OS-SRV-USG:launched_at`` style: no zone, microseconds."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="microseconds")[:-6]


def link(base: str, kind: str, item_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{base}/v2.1/{kind}/{item_id}"},
        {"rel": "bookmark", "href": f"{base}/{kind}/{item_id}"},
    ]


def flavor_view(base: str, f: dict[str, Any], *, detail: bool, ver: Version) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f["id"], "name": f["name"], "links": link(base, "flavors", f["id"])}
    if ver.at_least("2.55"):
        out["description"] = f.get("description")
    if not detail:
        return out
    swap: Any = f["swap"] if (f["swap"] or ver.at_least("2.75")) else ""
    out.update({
        "ram": f["memory_mb"], "vcpus": f["vcpus"], "disk": f["root_gb"],
        "OS-FLV-EXT-DATA:ephemeral": f["ephemeral_gb"], "swap": swap,
        "rxtx_factor": 1.0, "os-flavor-access:is_public": f["is_public"],
        "OS-FLV-DISABLED:disabled": False,
    })
    if ver.at_least("2.61"):
        out["extra_specs"] = {}
    return out


def fault_view(inst: dict[str, Any], *, is_admin: bool) -> dict[str, Any] | None:
    """``fault`` of an ERROR server; ``details`` only to admins when it is a 500 (Nova's rule)."""
    if not inst.get("fault_message"):
        return None
    code = inst.get("fault_code") or 500
    fault: dict[str, Any] = {"code": code, "created": iso(inst["updated_at"]),
                             "message": inst["fault_message"]}
    if inst.get("fault_details") and (is_admin or code != 500):
        fault["details"] = inst["fault_details"]
    return fault


def server_view(
    base: str, inst: dict[str, Any], flavor: dict[str, Any] | None, *, is_admin: bool,
    ver: Version,
) -> dict[str, Any]:
    """A server as ``GET /servers/{id}`` and ``/servers/detail`` show it."""
    host = inst["host"]
    request = inst.get("request") or {}
    status = api_status(inst["vm_state"], inst["task_state"])
    host_id = hashlib.sha224(f"{inst['project_id']}{host}".encode()).hexdigest() if host else ""
    if ver.at_least("2.47") and flavor:
        flavor_out: dict[str, Any] = {
            "vcpus": flavor["vcpus"], "ram": flavor["memory_mb"], "disk": flavor["root_gb"],
            "ephemeral": flavor["ephemeral_gb"], "swap": flavor["swap"],
            "original_name": flavor["name"], "extra_specs": {},
        }
    else:
        flavor_out = {"id": inst["flavor_id"], "links": link(base, "flavors", inst["flavor_id"])}
    image: Any = ""
    if inst["image_ref"]:
        image = {"id": inst["image_ref"], "links": link(base, "images", inst["image_ref"])}
        if ver.at_least("2.98"):
            image["properties"] = dict(request.get("image_properties") or {})
    volumes = []
    for vol_id, delete_on_termination in request.get("volumes", []):
        item: dict[str, Any] = {"id": vol_id}
        if ver.at_least("2.3"):
            item["delete_on_termination"] = bool(delete_on_termination)
        volumes.append(item)
    server: dict[str, Any] = {
        "id": inst["uuid"],
        "name": inst["name"],
        "status": status,
        "tenant_id": inst["project_id"],
        "user_id": inst["user_id"],
        "metadata": request.get("metadata") or {},
        "hostId": host_id,
        "image": image,
        "flavor": flavor_out,
        "created": iso(inst["created_at"]),
        "updated": iso(inst["updated_at"]),
        "addresses": inst.get("addresses") or {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": link(base, "servers", inst["uuid"]),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": inst["availability_zone"] or "",
        "config_drive": "",
        "key_name": request.get("key_name"),
        "OS-SRV-USG:launched_at": iso_usec(inst["launched_at"]),
        "OS-SRV-USG:terminated_at": None,
        "OS-EXT-STS:task_state": inst["task_state"],
        "OS-EXT-STS:vm_state": inst["vm_state"],
        "OS-EXT-STS:power_state": inst["power_state"],
        "os-extended-volumes:volumes_attached": volumes,
        "security_groups": [{"name": "default"}],
    }
    if status in _PROGRESS:
        server["progress"] = inst["progress"] or 0
    fault = fault_view(inst, is_admin=is_admin)
    if fault is not None and status in ("ERROR", "DELETED"):
        server["fault"] = fault
    if is_admin:
        server.update({
            "OS-EXT-SRV-ATTR:host": host,
            "OS-EXT-SRV-ATTR:hypervisor_hostname": host,
            "OS-EXT-SRV-ATTR:instance_name": instance_name(inst["uuid"]),
        })
        if ver.at_least("2.3"):
            server.update({
                "OS-EXT-SRV-ATTR:reservation_id": "r-" + inst["uuid"][:8],
                "OS-EXT-SRV-ATTR:launch_index": 0,
                "OS-EXT-SRV-ATTR:hostname": hostname(inst["name"]),
                "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                "OS-EXT-SRV-ATTR:user_data": None,
            })
    if ver.at_least("2.9"):
        server["locked"] = False
    if ver.at_least("2.16") and is_admin:
        server["host_status"] = "UP" if host else ""
    if ver.at_least("2.19"):
        server["description"] = request.get("description")
    if ver.at_least("2.26"):
        server["tags"] = list(request.get("tags") or [])
    if ver.at_least("2.63"):
        server["trusted_image_certificates"] = None
    if ver.at_least("2.71"):
        server["server_groups"] = list(request.get("server_groups") or [])
    if ver.at_least("2.73"):
        server["locked_reason"] = None
    if ver.at_least("2.90"):
        server["OS-EXT-SRV-ATTR:hostname"] = hostname(inst["name"])
    if ver.at_least("2.96"):
        server["pinned_availability_zone"] = inst.get("requested_az")
    if ver.at_least("2.100"):
        server["scheduler_hints"] = dict(request.get("scheduler_hints") or {})
    return server


def instance_name(server_id: str) -> str:
    return f"instance-{server_id[:8]}"


def hostname(name: str) -> str:
    """The guest host name Nova derives from a display name (sanitised, lower-case)."""
    out = "".join(c if c.isalnum() or c in "-." else "-" for c in name.lower()).strip("-.")
    return out[:63] or "server"
