"""Service-to-service REST: a traced HTTP client and keystonemiddleware-like token validation.

The client span follows the OTel HTTP client conventions (name ``GET /v2/images/{image_id}``,
``url.template``, ``http.response.status_code``); it carries ``traceparent`` to the callee and never
records a header, so tokens stay out of traces.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

import aiohttp
import orjson
from multidict import istr
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

from harness.latency import LatencyModel
from harness.services.http import ApiError
from harness.services.http1_client import Http1Client, handles
from harness.services.request_timeout import RequestTimeouts
from harness.steps import Step
from harness.telemetry import STEP_ATTRS, inject_headers


#: Validations a service caches before it prunes the expired ones (a long run's many tokens).
TOKEN_CACHE_MAX = 10_000

#: Validation bodies whose parsed context a validator keeps (~4 KB each: at most ~4 MB).
PARSED_BODIES_MAX = 1024

_CLIENT = SpanKind.CLIENT

#: Transport errors of a REST call (connection refused, reset, timeout): callers catch this.
HttpError = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A read response: status, headers and body (the connection is already released)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return orjson.loads(self.content)


class RestClient:
    """One per service: a client span per request, sent by :mod:`harness.services.http1_client`
    (plain ``http://``, the services' own loopback calls) or an aiohttp session (the rest).

    aiohttp rather than httpx: the whole cloud shares one event loop, and a boot makes a dozen
    service-to-service calls; aiohttp's client costs several times less CPU per request, and the
    small keep-alive client less again (``bench/http_client.py``). ``http1=False`` sends
    everything through aiohttp.
    """

    def __init__(self, tracer: trace.Tracer, latency: LatencyModel, *, user_agent: str,
                 timeout: float = 60.0, http1: bool = True) -> None:
        self.tracer, self.latency = tracer, latency
        self.user_agent, self.timeout = user_agent, timeout
        self._session: aiohttp.ClientSession | None = None
        self._default_headers = {istr("User-Agent"): user_agent, istr("Accept"): "application/json",
                                 istr("Accept-Encoding"): "gzip, deflate"}
        # the same headers, connection limit and connect timeout as the aiohttp session's
        self._http1 = Http1Client(default_headers=[(str(k), v) for k, v in self._default_headers.items()],
                                  limit_per_host=256, connect_timeout=5.0) if http1 else None
        # the whole-request timeout, without an event-loop timer per request (see request_timeout)
        self._timeouts = RequestTimeouts(timeout)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512, limit_per_host=256, ttl_dns_cache=None),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),  # total: self._timeouts
                # every header aiohttp would add on its own is given here, so it adds none and
                # needs no per-request skip list (keystoneauth's Accept and Accept-Encoding)
                headers=self._default_headers,
                # request bodies by orjson (compact, as aiohttp's default json.dumps but cheaper),
                # handed over as bytes: no str to encode again
                json_serialize_bytes=orjson.dumps,
                cookie_jar=aiohttp.DummyCookieJar(),  # OpenStack APIs set no cookies: skip the jar's work
            )
        return self._session

    async def close(self) -> None:
        self._timeouts.close()
        if self._http1 is not None:
            self._http1.close()
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        template: str,
        step: Step | None = None,
        for_step: Step | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> HttpResponse:
        """Send a request in a CLIENT span.

        ``step``: this request *is* that boot step (its span gets the step and its delay);
        ``for_step``: it is made inside that step, which the callee learns from the baggage.
        """
        target = URL(url)  # parsed once: for the span and for aiohttp (which would parse it again)
        attrs: dict[str, Any] = {
            "http.request.method": method,
            "server.address": target.host or "",
            "server.port": target.port or 80,
            "url.full": url,
            "url.template": template,
        }
        if step is not None:
            attrs.update(STEP_ATTRS[step])  # the shared table's entry, merged (not copied first)
        if attributes:
            attrs.update(attributes)
        with self.tracer.start_as_current_span(f"{method} {template}", None, _CLIENT, attrs) as span:
            # a step's modeled time includes this client's own work (harness.latency)
            async with self.latency.step(step) if step is not None else nullcontext():
                hdrs = inject_headers(dict(headers or {}), step=step if for_step is None else for_step)
                try:
                    with self._timeouts.limit():
                        if self._http1 is not None and handles(target, method):
                            status, resp_headers, body = await self._http1.request(
                                method, target.extend_query(params) if params else target,
                                headers=hdrs, body=None if json is None else orjson.dumps(json),
                                content_type=None if json is None else "application/json")
                            result = HttpResponse(status, resp_headers, body)
                        else:
                            async with self.session.request(method, target, headers=hdrs, json=json,
                                                            params=params) as resp:
                                body = await resp.read()
                                result = HttpResponse(resp.status, resp.headers, body)
                except HttpError as exc:
                    span.set_attribute("error.type", type(exc).__name__)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                    raise
            span.set_attribute("http.response.status_code", result.status_code)
            if result.status_code >= 400:
                span.set_attribute("error.type", str(result.status_code))
                span.set_status(Status(StatusCode.ERROR))
            return result


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Who is asking (keystonemiddleware's X-User-Id/X-Project-Id/X-Roles), never the token."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple[str, ...]
    expires_at: float
    token: str = field(repr=False)  # passed on (as Nova's RequestContext does), never logged

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class TokenValidator:
    """Validates each request's ``X-Auth-Token`` with Keystone (``GET /v3/auth/tokens``).

    The service authenticates itself first (its own service token, as keystonemiddleware does).
    With ``cache_ttl > 0`` validations are cached like keystonemiddleware's token cache (in-process,
    ``token_cache_time``), so a client's status polls do not each cost a Keystone round trip. A
    validation that is a boot step (``step`` given) still goes to Keystone unless ``cache_steps``:
    the seed's flow validates at each of those steps, and a trace must show them.
    """

    def __init__(
        self,
        client: RestClient,
        *,
        keystone_url: str,
        service_user: str,
        service_password: str,
        service_project: str,
        cache_ttl: float = 0.0,
        cache_steps: bool = False,
        revoked: set[bytes] | None = None,
    ) -> None:
        self.client, self.keystone_url = client, keystone_url.rstrip("/")
        self._creds = (service_user, service_password, service_project)
        self._service_token: str | None = None
        self._service_expiry = 0.0
        self.cache_ttl, self.cache_steps = cache_ttl, cache_steps
        self._revoked = revoked if revoked is not None else set()
        self._cache: dict[str, tuple[AuthContext, float]] = {}
        self._parsed: dict[bytes, AuthContext] = {}  # validation body -> its context (_context)

    async def service_token(self) -> str:
        if self._service_token is None or time.time() > self._service_expiry - 60:
            token, body = await password_auth(self.client, self.keystone_url, *self._creds)
            self._service_token = token
            self._service_expiry = _iso_to_epoch(body["token"]["expires_at"])
        return self._service_token

    async def validate(self, token: str | None, *, step: Step | None = None) -> AuthContext:
        if not token:
            raise ApiError(401, "The request you have made requires authentication.")
        now = time.time()
        if self.cache_ttl > 0 and (step is None or self.cache_steps):
            hit = self._cache.get(token)
            if hit and hit[1] > now and hit[0].expires_at > now:
                if not self._revoked or token_digest(token) not in self._revoked:
                    return hit[0]
                del self._cache[token]  # revoked since: Keystone answers 404 below
        service_token = await self.service_token()
        resp = await self.client.request(
            "GET",
            f"{self.keystone_url}/v3/auth/tokens",
            template="/v3/auth/tokens",
            step=step,
            headers={"X-Auth-Token": service_token, "X-Subject-Token": token},
        )
        if resp.status_code == 401 and "service" in resp.text.lower():
            self._service_token = None  # our own token went stale: fetch again next time
        if resp.status_code in (401, 404):
            raise ApiError(401, "The request you have made requires authentication.")
        if resp.status_code != 200:
            raise ApiError(503, f"Identity service answered {resp.status_code} to token validation")
        ctx = self._parsed.get(resp.content)
        if ctx is None or ctx.token != token:
            ctx = self._context(resp, token)
        if self.cache_ttl > 0:
            if len(self._cache) >= TOKEN_CACHE_MAX:  # drop what expired before growing further
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now and v[0].expires_at > now}
            self._cache[token] = (ctx, now + self.cache_ttl)
        return ctx

    def _context(self, resp: HttpResponse, token: str) -> AuthContext:
        """Who the validation body names. Keystone answers a token's validations with the same
        bytes each time (a token never changes; a boot validates the same few tokens a dozen
        times), so each distinct body is parsed once (orjson reads the whole ~4 KB body, catalog
        included: ~10 us) and its context reused; every validation still asks Keystone."""
        t = resp.json()["token"]
        ctx = AuthContext(
            user_id=t["user"]["id"], user_name=t["user"]["name"],
            project_id=t["project"]["id"], project_name=t["project"]["name"],
            roles=tuple(r["name"] for r in t.get("roles", ())),
            expires_at=_iso_to_epoch(t["expires_at"]), token=token,
        )
        if len(self._parsed) >= PARSED_BODIES_MAX:
            self._parsed.clear()
        self._parsed[resp.content] = ctx
        return ctx


def token_digest(token: str) -> bytes:
    """How a revoked token is remembered (its SHA-256, never the token itself)."""
    return hashlib.sha256(token.encode()).digest()


async def password_auth(
    client: RestClient, keystone_url: str, user: str, password: str, project: str,
    *, step: Step | None = None, for_step: Step | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Keystone v3 password auth scoped to a project in domain Default; (token, body)."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": {"id": "default"}}},
        }
    }
    resp = await client.request(
        "POST", f"{keystone_url.rstrip('/')}/v3/auth/tokens", template="/v3/auth/tokens",
        step=step, for_step=for_step, json=body, attributes=attributes,
    )
    if resp.status_code != 201:
        raise ApiError(503, f"Identity service refused the service credentials ({resp.status_code})")
    return resp.headers["X-Subject-Token"], resp.json()


def _iso_to_epoch(text: str) -> float:
    """Keystone's ``expires_at`` (ISO 8601, ``Z`` or an offset) as epoch seconds; a time without
    an offset is UTC (Python 3.11's fromisoformat reads ``Z`` itself)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def catalog_url(catalog: list[dict[str, Any]], service_type: str, *, interface: str = "public",
                region: str | None = None) -> str:
    """The endpoint of ``service_type`` from a token's catalog, as keystoneauth finds it."""
    for entry in catalog:
        if entry.get("type") != service_type:
            continue
        for ep in entry.get("endpoints", ()):
            if ep.get("interface") == interface and (region is None or ep.get("region") == region):
                return ep["url"]
    raise LookupError(f"no {interface} endpoint of type {service_type!r} in the catalog")
