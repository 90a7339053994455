"""Keystone (identity v3): password auth, token validation, the service catalog.

Steps 1-2 (a user authenticates) and 5 (Keystone validates the token nova-api passed on). Tokens are
opaque random strings kept in memory with their scope and expiry; passwords are stored as bcrypt
hashes (Keystone's default hasher) with a low cost factor so token issue stays cheap under load
(``password_hash_rounds``, as in keystone.conf).

Besides issuing tokens (:mod:`keystone_auth` reads the request) it answers what keystoneauth and
openstacksdk ask: ``HEAD``/``GET``/``DELETE /v3/auth/tokens`` (allowed to services, admins and the
token's own user), ``/v3/auth/catalog``, ``/v3/auth/projects``, a user's projects, and the version
documents at ``/`` (300 Multiple Choices) and ``/v3``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import bcrypt
import orjson
from opentelemetry import trace
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness.services.base import CloudContext, HttpService
from harness.services.http import ApiError, handler, json_body, keystone_error, make_app
from harness.services.keystone_auth import DEFAULT_DOMAIN, UNAUTHORIZED, SlowCheckNeeded, resolve
from harness.services.rest import token_digest
from harness.steps import Step
from harness.telemetry import caller_step, step_attributes, step_span

#: Keystone names the token it could not find; the harness does not: an error's message reaches
#: spans (as the exception event of the step's span) and logs, where tokens must never appear.
TOKEN_NOT_FOUND = "Could not find token."
PASSWORD_HASH_ROUNDS = 4  # bcrypt's minimum; Keystone's default is 12 (~250 ms a check)
BODY_CACHE_SIZE = 4096  # encoded validation bodies kept (tokens live for hours, boots for seconds)

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
    """Keystone's ``2026-11-25T13:14:19.930Z`` form, to the millisecond (isoformat truncates as
    ``strftime("%f")[:-3]`` did, at two thirds of its cost)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def _links(request: Request) -> dict[str, Any]:
    return {"self": str(request.url), "previous": None, "next": None}


# a name-based UUID cost ~3.5 us a call, and every project-scoped token names its project by one
@functools.lru_cache(maxsize=4096)
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
    methods: tuple[str, ...] = ("password",)
    # Keystone's text forms of the two times: a token never changes, so they are made once, when
    # it is issued, rather than for each body that shows it (issue, validations with and without
    # the catalog)
    issued_iso: str = field(init=False, repr=False, compare=False)
    expires_iso: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "issued_iso", _iso(self.issued_at))
        object.__setattr__(self, "expires_iso", _iso(self.expires_at))


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
        self._catalogs: dict[str, list[dict[str, Any]]] = {}
        self._bodies: dict[tuple[str, bool], tuple[Token, bytes]] = {}  # see _validation_body
        self._password_key = secrets.token_bytes(32)  # see verify_password
        self._verified: dict[str, bytes] = {}  # user id -> HMAC of the password bcrypt accepted

    def project_id(self, name: str) -> str:
        return _stable_id("project", name)

    # -- the Directory the auth resolver reads ----------------------------------------------------
    def user_by_id(self, user_id: str) -> User | None:
        return self.users_by_id.get(user_id)

    def user_by_name(self, name: str) -> User | None:
        return self.users.get(name)

    def project_by_id(self, project_id: str) -> tuple[str, str] | None:
        name = self.projects.get(project_id)
        return (project_id, name) if name is not None else None

    def project_by_name(self, name: str) -> tuple[str, str] | None:
        return self.project_by_id(self.project_id(name))

    def token_user(self, token_id: str) -> User | None:
        token = self._lookup(token_id)
        return token.user if token is not None else None

    # -- catalog ------------------------------------------------------------------------------
    def catalog(self, project_id: str) -> list[dict[str, Any]]:
        """The service catalog scoped to a project (built once per project, then reused)."""
        cached = self._catalogs.get(project_id)
        if cached is None:
            cached = self._catalogs[project_id] = self._build_catalog(project_id)
        return cached

    def _build_catalog(self, project_id: str) -> list[dict[str, Any]]:
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
        domain = dict(DEFAULT_DOMAIN)
        body: dict[str, Any] = {
            "methods": list(token.methods),
            "user": {"domain": domain, "id": user.id, "name": user.name, "password_expires_at": None},
            "audit_ids": [token.audit_id],
            "expires_at": token.expires_iso,
            "issued_at": token.issued_iso,
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
            raise ApiError(401, UNAUTHORIZED)
        return token

    def issue(self, user: User, project_id: str,
              methods: tuple[str, ...] = ("password",)) -> tuple[str, Token]:
        now = time.time()
        token_id = secrets.token_urlsafe(32)
        token = Token(user, project_id, now, now + self.settings.token_ttl, secrets.token_urlsafe(16),
                      methods)
        self.tokens[token_id] = token
        return token_id, token

    # -- endpoints ----------------------------------------------------------------------------
    async def issue_token(self, request: Request):
        body = await json_body(request)
        # Steps 1-2 are a client authenticating; services fetching their own tokens (nova-compute
        # in steps 20, 23, 26, the validators' service tokens) are not those steps.
        # Their work is the server span's own time: no extra span for it (a boot makes three).
        if self._is_service_user(body):
            found = await self._resolve(body)
            token_id, token = self.issue(found.user, found.project_id, found.methods)
            return self._issued(token_id, token)
        trace.get_current_span().set_attributes(step_attributes(Step.AUTH_REQUEST))
        await self.latency.delay(Step.AUTH_REQUEST)
        async with self.latency.span(self.tracer, Step.AUTH_ISSUE_TOKEN) as issue_span:
            found = await self._resolve(body)
            token_id, token = self.issue(found.user, found.project_id, found.methods)
            issue_span.set_attribute("enduser.id", found.user.id)
        return self._issued(token_id, token)

    def _issued(self, token_id: str, token: Token) -> Response:
        """201 with the new token's body: the body a validation with the catalog answers too (as
        Keystone renders both), so it is encoded once, here, and the first validation reuses it."""
        return Response(self._validation_body(token_id, token, True), 201,
                        {"X-Subject-Token": token_id}, media_type="application/json")

    async def _resolve(self, body: dict[str, Any]) -> Any:
        """Check the credentials: on the event loop when no bcrypt check is needed (a token, or a
        password already verified), else in a worker thread (bcrypt releases the GIL, so it runs
        beside the loop instead of stalling every other request behind it)."""
        try:
            return resolve(self, body, slow_ok=False)
        except SlowCheckNeeded:
            return await asyncio.to_thread(resolve, self, body)

    def verify_password(self, user: User, password: str, *, slow_ok: bool) -> bool:
        """bcrypt, as Keystone checks passwords; with ``password_cache`` a verified password is
        remembered as an HMAC-SHA256 under a per-process random key (never the password itself),
        so a user's next login compares digests in constant time instead of paying bcrypt again.
        nova-compute logs in three times a boot, and at bcrypt's minimum cost those checks were
        13 % of a boot's CPU; what a real check costs belongs to the latency profile. Wrong
        passwords always get the full bcrypt check."""
        digest = hmac.new(self._password_key, password.encode(), hashlib.sha256).digest()
        known = self._verified.get(user.id)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        if not slow_ok:
            raise SlowCheckNeeded
        ok = bcrypt.checkpw(password.encode(), user.password_hash)
        if ok and self.settings.password_cache:
            self._verified[user.id] = digest
        return ok

    def _is_service_user(self, body: dict[str, Any]) -> bool:
        try:
            u = body["auth"]["identity"]["password"]["user"]
            user = self.users.get(u["name"]) if "name" in u else self.users_by_id.get(u["id"])
        except (KeyError, TypeError):
            return False
        return user is not None and user.role == "service"

    def _subject(self, request: Request, caller: Token, action: str) -> tuple[str, Token | None]:
        """The ``X-Subject-Token`` and its token, if the caller may see it (Keystone's policy:
        a service or an admin, or the token's own user, ``rule:token_subject``)."""
        subject_id = request.headers.get("x-subject-token", "")
        subject = self._lookup(subject_id)
        if subject is not None and caller.user.role not in ("admin", "service") \
                and subject.user.id != caller.user.id:
            raise ApiError(403, f"You are not authorized to perform the requested action: identity:{action}.")
        return subject_id, subject

    async def validate_token(self, request: Request):
        caller = self._caller(request)
        subject_id, subject = self._subject(request, caller, "validate_token")
        # Step 5 is Keystone validating the token nova-api passed on; validations asked by the
        # other services (21, 24, 27) are steps of theirs, done here without a step number.
        step = Step.KEYSTONE_VALIDATE_TOKEN if caller_step() == Step.API_VALIDATE_TOKEN else None
        if step is not None:
            with step_span(self.tracer, step):
                await self.latency.delay(step)
                if subject is None:
                    raise ApiError(404, TOKEN_NOT_FOUND)
        elif subject is None:
            raise ApiError(404, TOKEN_NOT_FOUND)
        headers = {"X-Subject-Token": subject_id}
        if request.method == "HEAD":
            return None, 200, headers
        # Starlette parses the query on first use (~2.3 us even when it is empty, as a service's
        # validation's is): only a request that has one is asked
        nocatalog = bool(request.scope.get("query_string")) and "nocatalog" in request.query_params
        return Response(self._validation_body(subject_id, subject, not nocatalog), 200, headers,
                        media_type="application/json")

    def _validation_body(self, token_id: str, token: Token, with_catalog: bool) -> bytes:
        """The encoded body of a validation: made once per token and form, then reused (a token
        never changes, and a boot validates the same few tokens a dozen times). A revoked or
        expired token never gets here (:meth:`_lookup` said so first)."""
        key = (token_id, with_catalog)
        hit = self._bodies.get(key)
        if hit is not None and hit[0] is token:
            return hit[1]
        if len(self._bodies) >= BODY_CACHE_SIZE:
            self._bodies.clear()
        body = orjson.dumps(self._token_body(token, with_catalog=with_catalog))
        self._bodies[key] = (token, body)
        return body

    async def revoke_token(self, request: Request):
        caller = self._caller(request)
        subject_id, subject = self._subject(request, caller, "revoke_token")
        if subject is None:
            raise ApiError(404, TOKEN_NOT_FOUND)
        self.revoke(subject_id)
        return None, 204

    def revoke(self, token_id: str) -> bool:
        """Forget a token and tell this process's token caches (False: it was not live)."""
        self.ctx.revoked_tokens.add(token_digest(token_id))
        return self.tokens.pop(token_id, None) is not None

    async def get_catalog(self, request: Request):
        token = self._caller(request)
        return {"catalog": self.catalog(token.project_id), "links": _links(request)}, 200

    async def auth_projects(self, request: Request):
        token = self._caller(request)
        return {"projects": [self._project(token.user.project_id)], "links": _links(request)}, 200

    async def auth_domains(self, request: Request):
        self._caller(request)
        return {"domains": [], "links": _links(request)}, 200  # no domain-scoped roles

    async def auth_system(self, request: Request):
        self._caller(request)
        return {"system": [], "links": _links(request)}, 200  # no system-scoped roles

    def _user_target(self, request: Request, token: Token, action: str) -> User:
        uid = request.path_params["user_id"]
        if uid != token.user.id and token.user.role != "admin":
            raise ApiError(403, f"You are not authorized to perform the requested action: identity:{action}.")
        user = self.users_by_id.get(uid)
        if user is None:
            raise ApiError(404, f"Could not find user: {uid}.")
        return user

    async def user_projects(self, request: Request):
        user = self._user_target(request, self._caller(request), "list_user_projects")
        return {"projects": [self._project(user.project_id)], "links": _links(request)}, 200

    async def show_user(self, request: Request):
        user = self._user_target(request, self._caller(request), "get_user")
        return {"user": {"id": user.id, "name": user.name, "domain_id": "default", "enabled": True,
                         "default_project_id": user.project_id, "password_expires_at": None,
                         "options": {}, "links": {"self": f"{self.base_url}/v3/users/{user.id}"}}}, 200

    async def show_project(self, request: Request):
        token = self._caller(request)
        pid = request.path_params["project_id"]
        if pid != token.project_id and token.user.role != "admin":
            raise ApiError(403, "You are not authorized to perform the requested action: "
                                "identity:get_project.")
        if pid not in self.projects:
            raise ApiError(404, f"Could not find project: {pid}.")
        return {"project": self._project(pid)}, 200

    async def list_projects(self, request: Request):
        token = self._caller(request)
        if token.user.role != "admin":
            raise ApiError(403, "You are not authorized to perform the requested action: "
                                "identity:list_projects.")
        projects = [self._project(pid) for pid in sorted(self.projects, key=self.projects.__getitem__)]
        if "name" in request.query_params:
            projects = [p for p in projects if p["name"] == request.query_params["name"]]
        return {"projects": projects, "links": _links(request)}, 200

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
            Route("/v3/auth/domains", handler(self.auth_domains), methods=["GET"]),
            Route("/v3/auth/system", handler(self.auth_system), methods=["GET"]),
            Route("/v3/users/{user_id}", handler(self.show_user), methods=["GET"]),
            Route("/v3/users/{user_id}/projects", handler(self.user_projects), methods=["GET"]),
            Route("/v3/projects", handler(self.list_projects), methods=["GET"]),
            Route("/v3/projects/{project_id}", handler(self.show_project), methods=["GET"]),
        ]
        return make_app(routes, render=keystone_error, tracer=self.tracer, port=self.port)
