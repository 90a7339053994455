"""How Keystone reads ``POST /v3/auth/tokens``: the schema, the identity and the scope.

The body is checked against a JSON schema (400 ``Invalid input for field 'auth/identity': ...``),
then the methods are resolved as Keystone resolves them: ``password`` with the user named by id,
or by name with its domain (by id or name); ``token`` (re-scoping an existing token). The scope is
a project by id, or by name with its domain; no scope means the user's default project. Unknown
users, wrong passwords and projects the user has no role on are all 401 with the same message, so
the answer never tells which part was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from harness.services.http import ApiError
from harness.services.validation import Schema

UNAUTHORIZED = "The request you have made requires authentication."
_CLIENT_ERROR = (" The server could not comply with the request since it is either malformed or "
                 "otherwise incorrect. The client is assumed to be in error.")
DEFAULT_DOMAIN = {"id": "default", "name": "Default"}

_STR = {"type": "string"}
_DOMAIN = {"type": "object", "properties": {"id": _STR, "name": _STR}}
AUTH_SCHEMA = Schema({
    "type": "object",
    "properties": {"auth": {
        "type": "object",
        "properties": {
            "identity": {
                "type": "object",
                "properties": {
                    "methods": {"type": "array", "items": _STR},
                    "password": {"type": "object", "properties": {"user": {
                        "type": "object",
                        "properties": {"id": _STR, "name": _STR, "password": _STR, "domain": _DOMAIN},
                    }}},
                    "token": {"type": "object", "properties": {"id": _STR}, "required": ["id"]},
                },
                "required": ["methods"],
            },
            "scope": {"type": ["object", "string"]},
        },
        "required": ["identity"],
    }},
    "required": ["auth"],
}, style="keystone")


def missing(attribute: str, target: str) -> ApiError:
    """Keystone's ``ValidationError``: ``Expecting to find X in Y. ...``."""
    return ApiError(400, f"Expecting to find {attribute} in {target}.{_CLIENT_ERROR}")


class Directory(Protocol):
    """What the resolver needs to know of Keystone's identity and resource data."""

    def user_by_id(self, user_id: str) -> Any: ...
    def user_by_name(self, name: str) -> Any: ...
    def project_by_id(self, project_id: str) -> tuple[str, str] | None: ...  # (id, name)
    def project_by_name(self, name: str) -> tuple[str, str] | None: ...
    def token_user(self, token_id: str) -> Any: ...
    def verify_password(self, user: Any, password: str, *, slow_ok: bool) -> bool: ...


class SlowCheckNeeded(Exception):
    """The password needs the full bcrypt check: resolve again off the event loop."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    user: Any
    project_id: str
    methods: tuple[str, ...]


def _domain_ok(domain: Any, target: str) -> None:
    if not isinstance(domain, dict) or not (domain.get("id") or domain.get("name")):
        raise missing("domain", target)
    if domain.get("id", "default") != "default" or domain.get("name", "Default") != "Default":
        raise ApiError(401, UNAUTHORIZED)  # only domain Default exists


def _password_user(directory: Directory, ident: dict[str, Any], slow_ok: bool) -> Any:
    pw = ident.get("password")
    if not isinstance(pw, dict):
        raise missing("password", "identity")
    user_req = pw.get("user")
    if not isinstance(user_req, dict):
        raise missing("user", "password")
    if "password" not in user_req:
        raise missing("password", "user")
    if user_req.get("id"):
        user = directory.user_by_id(user_req["id"])
    elif user_req.get("name"):
        _domain_ok(user_req.get("domain"), "user")
        user = directory.user_by_name(user_req["name"])
    else:
        raise missing("id or name", "user")
    password = user_req["password"]
    if user is None or not isinstance(password, str) or not directory.verify_password(
            user, password, slow_ok=slow_ok):
        raise ApiError(401, UNAUTHORIZED)
    return user


def resolve(directory: Directory, body: dict[str, Any], *, slow_ok: bool = True) -> AuthResult:
    """The user and the project the request authenticates; ApiError 400/401 otherwise.

    With ``slow_ok=False`` a password that needs bcrypt raises :class:`SlowCheckNeeded` instead of
    checking it, so the caller can run the cheap cases on the event loop and the rest in a thread.
    """
    AUTH_SCHEMA.check(body)
    auth = body["auth"]
    ident = auth["identity"]
    methods = tuple(ident["methods"])
    if not methods:
        raise missing("methods", "identity")
    for method in methods:
        if method not in ("password", "token"):
            raise ApiError(401, f"Attempted to authenticate with an unsupported method: {method}")
        if method not in ident:
            raise missing(method, "identity")
    if "password" in methods:
        user = _password_user(directory, ident, slow_ok)
    else:
        user = directory.token_user(ident["token"]["id"])
        if user is None:
            raise ApiError(401, UNAUTHORIZED)
    scope = auth.get("scope")
    if scope in (None, "unscoped", {}):
        return AuthResult(user, user.project_id, methods)
    if not isinstance(scope, dict):
        raise ApiError(400, f"Invalid input for field 'auth/scope': {scope!r} is not of type 'object'")
    project = scope.get("project")
    if project is None:  # domain or system scope: no roles there in the harness
        raise ApiError(401, UNAUTHORIZED)
    if not isinstance(project, dict):
        raise missing("project", "scope")
    if project.get("id"):
        found = directory.project_by_id(project["id"])
    elif project.get("name"):
        _domain_ok(project.get("domain"), "project")
        found = directory.project_by_name(project["name"])
    else:
        raise missing("id or name", "project")
    if found is None or found[0] != user.project_id:
        raise ApiError(401, UNAUTHORIZED)
    return AuthResult(user, found[0], methods)
