"""Request validation with JSON Schema, worded as the OpenStack projects word their 400s.

Nova, Cinder and Keystone validate bodies with jsonschema (Draft 4 plus a few formats); the message
a client sees is built from the first error: Nova and Cinder say ``Invalid input for
field/attribute <name>. Value: <value>. <reason>``, Keystone ``Invalid input for field
'<path>': <reason>``. Using the same library and the same wording means a client that parses
those messages (or a person reading them) cannot tell the mock from the real service.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Callable, Mapping

import jsonschema
import orjson
from jsonschema import Draft4Validator, FormatChecker

from harness.services.http import ApiError

_formats = FormatChecker()


@_formats.checks("uuid")
def _is_uuid_format(value: object) -> bool:
    """oslo's ``is_uuid_like``: any spelling :class:`uuid.UUID` accepts (non-strings pass on)."""
    if not isinstance(value, str):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _is_uuid_format(value)


def _first_error(validator: Draft4Validator, data: Any) -> jsonschema.ValidationError | None:
    """The error ``validator.validate`` would raise (the first one, in schema order), as the
    services report it: a failed ``oneOf`` is "not valid under any of the given schemas"."""
    return next(iter(validator.iter_errors(data)), None)


#: Distinct valid documents a schema remembers before it starts over.
VALID_CACHE_SIZE = 4096


def _digest(data: Any) -> bytes | None:
    """A digest of a JSON document (keys sorted), so a document validated once is not walked by
    jsonschema again: services send the same bodies over and over (nova-compute's three identical
    logins a boot), and a walk costs ~100 us. A digest, not the text, is kept: bodies can hold
    passwords. None when the data is not plain JSON."""
    try:
        return hashlib.blake2b(orjson.dumps(data, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
    except TypeError:
        return None


class Schema:
    """A compiled request schema; ``check(data)`` raises :class:`ApiError` 400 when it fails."""

    def __init__(self, schema: Mapping[str, Any], *, style: str = "nova") -> None:
        Draft4Validator.check_schema(schema)
        self.validator = Draft4Validator(schema, format_checker=_formats)
        self._valid: set[bytes] = set()  # digests of documents that passed (see _digest)
        self._message: Callable[[jsonschema.ValidationError], str] = {
            "nova": _nova_message, "nova_query": _nova_query_message, "keystone": _keystone_message,
        }[style]

    def check(self, data: Any) -> None:
        key = _digest(data)
        if key is not None and key in self._valid:
            return
        err = _first_error(self.validator, data)
        if err is not None:
            raise ApiError(400, self._message(err))
        if key is not None:
            if len(self._valid) >= VALID_CACHE_SIZE:
                self._valid.clear()
            self._valid.add(key)


def _nova_message(err: jsonschema.ValidationError) -> str:
    if err.absolute_path:
        return (f"Invalid input for field/attribute {list(err.absolute_path)[-1]}. "
                f"Value: {err.instance}. {err.message}")
    return err.message


def _nova_query_message(err: jsonschema.ValidationError) -> str:
    if err.absolute_path:
        return (f"Invalid input for query parameters {list(err.absolute_path)[-1]}. "
                f"Value: {err.instance}. {err.message}")
    return err.message


def _keystone_message(err: jsonschema.ValidationError) -> str:
    if err.absolute_path:
        path = "/".join(str(p) for p in err.absolute_path)
        return f"Invalid input for field '{path}': {err.message}"
    return err.message


# -- parameter types shared by the schemas (as nova/api/validation/parameter_types.py) ----------
UUID = {"type": "string", "format": "uuid"}
NAME = {
    "type": "string", "minLength": 1, "maxLength": 255,
    # printable, no leading or trailing whitespace
    "pattern": r"^(?!\s)[^\x00-\x1f\x7f]*(?<!\s)$",
}
BOOLEAN = {
    "type": ["boolean", "string"],
    "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
             False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"],
}
POSITIVE_INTEGER = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1}
NON_NEGATIVE_INTEGER = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0}
METADATA = {
    "type": "object",
    "patternProperties": {"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}},
    "additionalProperties": False,
}


def as_bool(value: Any) -> bool:
    """A value :data:`BOOLEAN` accepted, as a bool (oslo's ``bool_from_string``)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "on", "yes", "true")
