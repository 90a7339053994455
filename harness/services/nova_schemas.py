"""Request schemas of the compute API the harness serves, by microversion.

They follow ``nova/api/openstack/compute/schemas``: ``POST /servers`` needs ``name`` and
``flavorRef`` (and ``networks`` from 2.37, where it becomes a list or ``"auto"``/``"none"``),
properties added by later microversions are rejected at earlier ones (``additionalProperties``),
and scheduler hints are free-form. Only the microversions that change a schema are modelled.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from harness.services.microversion import Version
from harness.services.validation import BOOLEAN, METADATA, NAME, POSITIVE_INTEGER, UUID, Schema

_IP = {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
_TAG = {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"}

_BDM_V2 = {
    "type": "object",
    "properties": {
        "virtual_name": {"type": "string", "maxLength": 255},
        "volume_id": UUID,
        "snapshot_id": UUID,
        "volume_size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1},
        "device_name": {"type": "string", "minLength": 1, "maxLength": 255,
                        "pattern": "^[a-zA-Z0-9._/-]*$"},
        "delete_on_termination": BOOLEAN,
        "no_device": {},
        "connection_info": {"type": "string", "maxLength": 16777215},
        "source_type": {"type": "string", "enum": ["volume", "image", "snapshot", "blank"]},
        "uuid": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._-]*$"},
        "image_id": UUID,
        "destination_type": {"type": "string", "enum": ["local", "volume"]},
        "guest_format": {"type": "string", "maxLength": 255},
        "device_type": {"type": "string", "maxLength": 255},
        "disk_bus": {"type": "string", "maxLength": 255},
        "boot_index": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$"},
    },
    "additionalProperties": False,
}

_HINTS = {"type": "object", "properties": {"group": UUID}, "additionalProperties": True}

_NETWORK_ITEM = {
    "type": "object",
    "properties": {
        "fixed_ip": _IP,
        "port": {"oneOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
        "uuid": {"type": "string"},
    },
    "additionalProperties": False,
}

_CREATE = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": NAME,
                "imageRef": {"oneOf": [UUID, {"type": "string", "maxLength": 0}]},
                "flavorRef": {"type": ["string", "integer"], "minLength": 1},
                "adminPass": {"type": "string"},
                "metadata": METADATA,
                "networks": {"type": "array", "items": _NETWORK_ITEM},
                "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
                "accessIPv4": {"type": "string", "format": "ipv4"},
                "accessIPv6": {"type": "string", "format": "ipv6"},
                "personality": {"type": "array", "items": {"type": "object"}},
                "availability_zone": NAME,
                "block_device_mapping_v2": {"type": "array", "items": _BDM_V2},
                "config_drive": BOOLEAN,
                "key_name": NAME,
                "min_count": POSITIVE_INTEGER,
                "max_count": POSITIVE_INTEGER,
                "return_reservation_id": BOOLEAN,
                "security_groups": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"name": NAME},
                              "additionalProperties": False},
                },
                "user_data": {"type": "string", "maxLength": 65535},
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False,
        },
        "os:scheduler_hints": _HINTS,
        "OS-SCH-HNT:scheduler_hints": _HINTS,
    },
    "required": ["server"],
    "additionalProperties": False,
}


def _create_schema(ver: Version) -> dict[str, Any]:
    schema = copy.deepcopy(_CREATE)
    server = schema["properties"]["server"]
    props = server["properties"]
    if ver.at_least("2.19"):
        props["description"] = {"type": ["string", "null"], "maxLength": 255}
    if ver.at_least("2.37"):
        server["required"].append("networks")
        item = copy.deepcopy(_NETWORK_ITEM)
        item["properties"]["uuid"] = UUID
        if ver.at_least("2.42"):
            item["properties"]["tag"] = _TAG
        props["networks"] = {"oneOf": [{"type": "array", "items": item},
                                       {"type": "string", "enum": ["none", "auto"]}]}
    if ver.at_least("2.42"):
        props["block_device_mapping_v2"]["items"]["properties"]["tag"] = _TAG
    if ver.at_least("2.52"):
        props["tags"] = {"type": "array", "items": _TAG, "maxItems": 50}
    if ver.at_least("2.57"):
        props.pop("personality")
    if ver.at_least("2.63"):
        props["trusted_image_certificates"] = {"type": ["array", "null"], "minItems": 1,
                                               "maxItems": 50, "uniqueItems": True,
                                               "items": {"type": "string", "minLength": 1}}
    if ver.at_least("2.67"):
        props["block_device_mapping_v2"]["items"]["properties"]["volume_type"] = {
            "type": ["string", "null"], "minLength": 0, "maxLength": 255}
    if ver.at_least("2.74"):
        props["host"] = {"type": "string", "minLength": 1, "maxLength": 255}
        props["hypervisor_hostname"] = {"type": "string", "minLength": 1, "maxLength": 255}
    if ver.at_least("2.90"):
        props["hostname"] = {"type": "string", "minLength": 1, "maxLength": 255,
                             "pattern": "^[a-zA-Z0-9][a-zA-Z0-9.-]*$"}
    return schema


#: The microversions at which the create schema changes (a request maps to the last one <= it).
_CREATE_STEPS = [Version.parse(v) for v in
                 ("2.1", "2.19", "2.37", "2.42", "2.52", "2.57", "2.63", "2.67", "2.74", "2.90")]


@lru_cache(maxsize=None)
def _create_at(step: Version) -> Schema:
    return Schema(_create_schema(step))


def server_create(ver: Version) -> Schema:
    step = max(s for s in _CREATE_STEPS if s <= ver)
    return _create_at(step)


# -- server actions (one key each, as POST /servers/{id}/action takes them) --------------------
ACTIONS = {
    "os-stop": Schema({"type": "object", "properties": {"os-stop": {"type": "null"}},
                       "required": ["os-stop"], "additionalProperties": False}),
    "os-start": Schema({"type": "object", "properties": {"os-start": {"type": "null"}},
                        "required": ["os-start"], "additionalProperties": False}),
    "reboot": Schema({
        "type": "object",
        "properties": {"reboot": {
            "type": "object",
            "properties": {"type": {"type": "string",
                                    "enum": ["HARD", "Hard", "hard", "SOFT", "Soft", "soft"]}},
            "required": ["type"], "additionalProperties": False,
        }},
        "required": ["reboot"], "additionalProperties": False,
    }),
}

# -- quotas ---------------------------------------------------------------------------------------
QUOTA_RESOURCES_236 = ("instances", "cores", "ram", "key_pairs", "metadata_items", "server_groups",
                       "server_group_members")
_QUOTA_VALUE = {"type": ["integer", "string"], "pattern": "^-?[0-9]+$", "minimum": -1}
QUOTA_UPDATE = Schema({
    "type": "object",
    "properties": {"quota_set": {
        "type": "object",
        "properties": {**{r: _QUOTA_VALUE for r in QUOTA_RESOURCES_236}, "force": BOOLEAN},
        "additionalProperties": False,
    }},
    "required": ["quota_set"], "additionalProperties": False,
})

# -- query strings (values arrive as strings) -----------------------------------------------------
LIST_QUERY = Schema({
    "type": "object",
    "properties": {
        "limit": {"type": "string", "pattern": "^[0-9]*$"},
        "marker": {"type": "string"},
        "all_tenants": {"type": "string"},
    },
    "additionalProperties": True,
}, style="nova_query")

__all__ = ["ACTIONS", "LIST_QUERY", "QUOTA_RESOURCES_236", "QUOTA_UPDATE", "server_create"]
