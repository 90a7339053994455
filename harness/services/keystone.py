"""Keystone (identity v3): password auth, token validation, the service catalog.

Steps 1-2 (a user authenticates) and 5 (Keystone validates the token nova-api passed on). Tokens are
opaque random strings kept in memory with their scope and expiry; passwords are stored as bcrypt
hashes (Keystone's default hasher) with a low cost factor so token issue stays cheap under load
(``password_hash_rounds``, as in keystone.conf).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import bcrypt
from opentelemetry import trace
from starlette.requests import Request
from starlette.routing import Route

from harness.services.base import CloudContext, HttpService
from harness.services.http import ApiError, handler, json_body, keystone_error, make_app
from harness.steps import Step
from harness.telemetry import caller_step, step_attributes, step_span

PASSWORD_HASH_ROUNDS = 4  # bcrypt's minimum; Keystone's default is 12 (~250 ms a check)

#: service type -> (catalog name, port setting, path after host:port)
CATALOG_SERVICES = [
    ("identity", "keystone", "keystone", "/v3"),
    ("compute", "nova", "nova", "/v2.1"),
    ("image", "glance", "glance", ""),
    ("network", "neutron", "neutron", ""),
    ("volumev3", "cinderv3", "cinder", "/v3/{project_id}"),
    ("block-storage", "cinder", "cinder", "/v3/{project_id}"),
]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _stable_id(kind: str, name: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"harness/{kind}/{name}").hex


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    password_hash: bytes
    project_id: str
    role: str


@dataclass(frozen=True, slots=True)
class Token:
    user: User
    project_id: str
    issued_at: float
    expires_at: float
    audit_id: str


class Keystone(HttpService):
    name = "keystone"
    port_name = "keystone"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        self.projects: dict[str, str] = {}  # id -> name
        self.roles: dict[str, str] = {}  # name -> id
        self.users: dict[str, User] = {}  # name -> user
        for acct in self.settings.accounts:
            pid = _stable_id("project", acct.project)
            self.projects[pid] = acct.project
            self.roles.setdefault(acct.role, _stable_id("role", acct.role))
            self.users[acct.name] = User(
                id=_stable_id("user", acct.name),
                name=acct.name,
                password_hash=bcrypt.hashpw(acct.password.encode(), bcrypt.gensalt(PASSWORD_HASH_ROUNDS)),
                project_id=pid,
                role=acct.role,
            )
        self.users_by_id = {u.id: u for u in self.users.values()}
        self.tokens: dict[str, Token] = {}

    def project_id(self, name: str) -> str:
        return _stable_id("project", name)

    # -- catalog ------------------------------------------------------------------------------
    def catalog(self, project_id: str) -> list[dict[str, Any]]:
        region = self.settings.region
        out = []
        for stype, name, port_name, path in CATALOG_SERVICES:
            url = self.settings.endpoint(port_name) + path.format(project_id=project_id)
            out.append({
                "id": _stable_id("service", stype),
                "type": stype,
                "name": name,
                "endpoints": [
                    {"id": _stable_id("endpoint", f"{stype}/{iface}"), "interface": iface,
                     "region": region, "region_id": region, "url": url}
                    for iface in ("public", "internal", "admin")
                ],
            })
        return out

    # -- tokens -------------------------------------------------------------------------------
    def _token_body(self, token: Token, *, with_catalog: bool = True) -> dict[str, Any]:
        user = token.user
        domain = {"id": "default", "name": "Default"}
        body: dict[str, Any] = {
            "methods": ["password"],
            "user": {"domain": domain, "id": user.id, "name": user.name, "password_expires_at": None},
            "audit_ids": [token.audit_id],
            "expires_at": _iso(token.expires_at),
            "issued_at": _iso(token.issued_at),
            "project": {"domain": domain, "id": token.project_id, "name": self.projects[token.project_id]},
            "is_domain": False,
            "roles": [{"id": self.roles[user.role], "name": user.role}]
            + ([{"id": self.roles.get("member", _stable_id("role", "member")), "name": "member"}]
               if user.role == "admin" else []),
        }
        if with_catalog:
            body["catalog"] = self.catalog(token.project_id)
        return {"token": body}

    def _lookup(self, token_id: str | None) -> Token | None:
        if not token_id:
            return None
        token = self.tokens.get(token_id)
        if token is None:
            return None
        if token.expires_at <= time.time():
            self.tokens.pop(token_id, None)
            return None
        return token

    def _caller(self, request: Request) -> Token:
        token = self._lookup(request.headers.get("x-auth-token"))
        if token is None:
            raise ApiError(401, "The request you have made requires authentication.")
        return token

    def issue(self, user: User, project_id: str) -> tuple[str, Token]:
        now = time.time()
        token_id = secrets.token_urlsafe(32)
        token = Token(user, project_id, now, now + self.settings.token_ttl, secrets.token_urlsafe(16))
        self.tokens[token_id] = token
        return token_id, token

    def _authenticate(self, body: dict[str, Any]) -> tuple[User, str]:
        try:
            ident = body["auth"]["identity"]
            if "password" not in ident.get("methods", []):
                raise ApiError(400, "Expecting to find password in identity methods.")
            u = ident["password"]["user"]
            password = u["password"]
        except (KeyError, TypeError):
            raise ApiError(400, "Expecting to find identity.password.user in auth.") from None
        if not isinstance(password, str):
            raise ApiError(400, "Invalid input for field 'password': not a string.")
        user = self.users.get(u.get("name", "")) if "name" in u else self.users_by_id.get(u.get("id", ""))
        if user is None or not bcrypt.checkpw(password.encode(), user.password_hash):
            raise ApiError(401, "The request you have made requires authentication.")
        scope = body["auth"].get("scope") or {}
        project = scope.get("project") if isinstance(scope, dict) else None
        if project is None:
            return user, user.project_id
        pid = project.get("id") or (self.project_id(project["name"]) if "name" in project else None)
        if pid != user.project_id:
            raise ApiError(401, "User has no access to the requested project.")
        return user, pid

    # -- endpoints ----------------------------------------------------------------------------
    async def issue_token(self, request: Request):
        body = await json_body(request)
        # Steps 1-2 are a client authenticating; services fetching their own tokens (nova-compute
        # in steps 20, 23, 26, the validators' service tokens) are not those steps.
        if self._is_service_user(body):
            with self.tracer.start_as_current_span("keystone.issue_token"):
                user, project_id = self._authenticate(body)
                token_id, token = self.issue(user, project_id)
            return self._token_body(token), 201, {"X-Subject-Token": token_id}
        trace.get_current_span().set_attributes(step_attributes(Step.AUTH_REQUEST))
        await self.latency.delay(Step.AUTH_REQUEST)
        with step_span(self.tracer, Step.AUTH_ISSUE_TOKEN) as issue_span:
            await self.latency.delay(Step.AUTH_ISSUE_TOKEN)
            user, project_id = self._authenticate(body)
            token_id, token = self.issue(user, project_id)
            issue_span.set_attribute("enduser.id", user.id)
        return self._token_body(token), 201, {"X-Subject-Token": token_id}

    def _is_service_user(self, body: dict[str, Any]) -> bool:
        try:
            u = body["auth"]["identity"]["password"]["user"]
            user = self.users.get(u["name"]) if "name" in u else self.users_by_id.get(u["id"])
        except (KeyError, TypeError):
            return False
        return user is not None and user.role == "service"

    async def validate_token(self, request: Request):
        caller = self._caller(request)
        subject = self._lookup(request.headers.get("x-subject-token"))
        # Step 5 is Keystone validating the token nova-api passed on; validations asked by the
        # other services (21, 24, 27) are steps of theirs, done here without a step number.
        step = Step.KEYSTONE_VALIDATE_TOKEN if caller_step() == Step.API_VALIDATE_TOKEN else None
        if step is not None:
            with step_span(self.tracer, step):
                await self.latency.delay(step)
                if subject is None:
                    raise ApiError(404, "Could not find token.")
        elif subject is None:
            raise ApiError(404, "Could not find token.")
        if request.method == "HEAD":
            return None, 200
        nocatalog = "nocatalog" in request.query_params
        return self._token_body(subject, with_catalog=not nocatalog), 200, {
            "X-Subject-Token": request.headers["x-subject-token"]
        }

    async def revoke_token(self, request: Request):
        self._caller(request)
        subject = request.headers.get("x-subject-token")
        if not subject or self.tokens.pop(subject, None) is None:
            raise ApiError(404, "Could not find token.")
        return None, 204

    async def get_catalog(self, request: Request):
        token = self._caller(request)
        return {"catalog": self.catalog(token.project_id), "links": {"self": str(request.url)}}, 200

    async def auth_projects(self, request: Request):
        token = self._caller(request)
        return {"projects": [self._project(token.project_id)], "links": {"self": str(request.url)}}, 200

    async def user_projects(self, request: Request):
        token = self._caller(request)
        uid = request.path_params["user_id"]
        if uid != token.user.id and token.user.role != "admin":
            raise ApiError(403, "You are not authorized to perform the requested action.")
        user = self.users_by_id.get(uid)
        if user is None:
            raise ApiError(404, f"Could not find user: {uid}.")
        return {"projects": [self._project(user.project_id)], "links": {"self": str(request.url)}}, 200

    def _project(self, pid: str) -> dict[str, Any]:
        return {"id": pid, "name": self.projects[pid], "domain_id": "default", "enabled": True,
                "is_domain": False, "parent_id": "default", "description": "", "tags": [],
                "links": {"self": f"{self.base_url}/v3/projects/{pid}"}}

    def _version(self) -> dict[str, Any]:
        return {
            "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base_url}/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}],
        }

    async def versions(self, request: Request):
        return {"versions": {"values": [self._version()]}}, 300

    async def version_v3(self, request: Request):
        return {"version": self._version()}, 200

    def build_app(self):
        routes = [
            Route("/", handler(self.versions), methods=["GET"]),
            Route("/v3", handler(self.version_v3), methods=["GET"]),
            Route("/v3/", handler(self.version_v3), methods=["GET"]),
            Route("/v3/auth/tokens", handler(self.issue_token), methods=["POST"]),
            Route("/v3/auth/tokens", handler(self.validate_token), methods=["GET", "HEAD"]),
            Route("/v3/auth/tokens", handler(self.revoke_token), methods=["DELETE"]),
            Route("/v3/auth/catalog", handler(self.get_catalog), methods=["GET"]),
            Route("/v3/auth/projects", handler(self.auth_projects), methods=["GET"]),
            Route("/v3/users/{user_id}/projects", handler(self.user_projects), methods=["GET"]),
        ]
        return make_app(routes, render=keystone_error, tracer=self.tracer, port=self.port)
