"""One Locust user's view of an OpenStack cloud: its token, the token's catalog, the image and flavor.

It does what keystoneauth does for the real clients: authenticate with a password against the
Keystone v3 auth URL, keep the token until it is near expiry, and find every other endpoint in the
token's catalog. So the locustfile never needs a Nova or Glance URL and works unchanged against a
real cloud. Requests go through Locust's ``HttpSession`` with a fixed ``name``, so Locust's
statistics group them by API call (``POST /v3/auth/tokens``, ``GET /v2/images``).

Each request carries the W3C ``traceparent`` of the current span (the boot's client span), so the
cloud's spans of that request join the boot's trace. Tokens are never put into spans or logs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from harness.telemetry import inject_headers
from loadtests.load_options import LoadOptions

if TYPE_CHECKING:  # importing Locust monkey-patches the process: only the type is needed here
    from locust.clients import HttpSession

#: A token is renewed when less than this many seconds of it are left (or a tenth of its lifetime,
#: for short-lived tokens), so a boot never starts with a token that expires while it polls.
TOKEN_RENEW_MARGIN_S = 60.0
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_MAX_IMAGE_PAGES = 20


class CloudError(Exception):
    """The cloud answered something a boot cannot go on from (the message says what)."""


def auth_url_of(host: str) -> str:
    """Keystone's v3 URL from Locust's ``--host`` (``http://h:5000`` and ``.../v3/`` both work)."""
    url = (host or "").strip().rstrip("/")
    if not re.match(r"^https?://[^/]+", url):
        raise ValueError(f"--host must be Keystone's auth URL like http://127.0.0.1:5000/v3, got {host!r}")
    return url if url.endswith("/v3") else url + "/v3"


def catalog_endpoint(catalog: list[dict[str, Any]], service_type: str, *, interface: str = "public",
                     region: str | None = None) -> str:
    """The URL of ``service_type`` in a token's catalog (first match of interface and region)."""
    for entry in catalog:
        if entry.get("type") != service_type:
            continue
        for ep in entry.get("endpoints", ()):
            if ep.get("interface") == interface and (region is None or ep.get("region") == region):
                return str(ep["url"]).rstrip("/")
    where = f" in region {region}" if region else ""
    raise CloudError(f"the token's catalog has no {interface} {service_type!r} endpoint{where}")


def response_error(resp: Any) -> str:
    """A short text for a failed response: the OpenStack error message, or the transport error."""
    if getattr(resp, "error", None) is not None and not resp.status_code:
        return f"{type(resp.error).__name__}: {resp.error}"
    try:
        body = resp.json()
        inner = next(iter(body.values())) if isinstance(body, dict) and body else {}
        message = inner.get("message") if isinstance(inner, dict) else None
    except ValueError:
        message = None
    return f"HTTP {resp.status_code}: {message or (resp.text or '')[:200]}"


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    issued_at: float
    expires_at: float
    catalog: list[dict[str, Any]]

    def fresh(self, now: float) -> bool:
        margin = min(TOKEN_RENEW_MARGIN_S, (self.expires_at - self.issued_at) / 10)
        return now < self.expires_at - margin


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class KeystoneSession:
    """Token, endpoints and resolved boot arguments of one user (one ``HttpSession``)."""

    #: image and flavor ids resolved once per process and cloud, not once per user (gevent runs
    #: one greenlet at a time, and no lookup yields between reading and writing this)
    _resolved: dict[tuple[str, str, str, str], str] = {}

    def __init__(self, client: "HttpSession", host: str, options: LoadOptions) -> None:
        self.client = client
        self.auth_url = auth_url_of(host)
        self.options = options
        self.token: Token | None = None

    # -- auth ---------------------------------------------------------------------------------
    def ensure_token(self, *, renew: bool = False) -> bool:
        """Have a valid token; True when this call authenticated (steps 1-2 happened now)."""
        if not renew and self.token is not None and self.token.fresh(time.time()):
            return False
        self.token = self._authenticate()
        return True

    def _authenticate(self) -> Token:
        o = self.options
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": o.username, "domain": {"id": o.domain}, "password": o.password}}},
            "scope": {"project": {"name": o.project_name, "domain": {"id": o.domain}}},
        }}
        with self.client.post(f"{self.auth_url}/auth/tokens", name="/v3/auth/tokens", json=body,
                              headers=inject_headers(), catch_response=True) as resp:
            if resp.status_code != 201 or "X-Subject-Token" not in resp.headers:
                error = response_error(resp)
                resp.failure(error)
                raise CloudError(f"authentication as {o.username!r} failed: {error}")
            token = resp.json()["token"]
            return Token(id=resp.headers["X-Subject-Token"], issued_at=time.time(),
                         expires_at=_timestamp(token["expires_at"]), catalog=token.get("catalog", []))

    def headers(self) -> dict[str, str]:
        """``X-Auth-Token`` plus the trace context of the current span."""
        if self.token is None:
            raise CloudError("no token: call ensure_token() first")
        return inject_headers({"X-Auth-Token": self.token.id})

    def endpoint(self, service_type: str) -> str:
        if self.token is None:
            self.ensure_token()
        assert self.token is not None
        return catalog_endpoint(self.token.catalog, service_type, interface=self.options.interface,
                                region=self.options.region)

    def forget_token(self) -> None:
        """Drop the token (the cloud answered 401): the next call authenticates again."""
        self.token = None

    # -- boot arguments -------------------------------------------------------------------------
    def image_id(self) -> str:
        """``--image`` as an id: an id is taken as is; a name is looked up with ``GET /v2/images``,
        exact match first, else the first image (by name) whose name contains it."""
        wanted = self.options.image
        if _UUID.match(wanted):
            return wanted
        key = (self.auth_url, self.options.project_name, "image", wanted)
        if key in self._resolved:
            return self._resolved[key]
        images = self._list_images()
        exact = [i for i in images if i.get("name") == wanted]
        partial = sorted((i for i in images if wanted.lower() in str(i.get("name", "")).lower()),
                         key=lambda i: str(i.get("name")))
        found = (exact or partial or [None])[0]
        if found is None:
            names = ", ".join(sorted(str(i.get("name")) for i in images)) or "none"
            raise CloudError(f"--image {wanted!r}: no image of that id or name (images: {names})")
        self._resolved[key] = found["id"]
        return found["id"]

    def _list_images(self) -> list[dict[str, Any]]:
        self.ensure_token()
        base = self.endpoint("image")
        url: str | None = f"{base}/v2/images?limit=200"
        images: list[dict[str, Any]] = []
        for _ in range(_MAX_IMAGE_PAGES):
            if url is None:
                break
            with self.client.get(url, name="/v2/images", headers=self.headers(), catch_response=True) as resp:
                if resp.status_code != 200:
                    error = response_error(resp)
                    resp.failure(error)
                    raise CloudError(f"listing images failed: {error}")
                body = resp.json()
            images.extend(body.get("images", []))
            nxt = body.get("next")
            url = (base + nxt) if nxt else None
        return images

    def flavor_id(self) -> str:
        """``--flavor`` as an id: matched against the ids, then the names, of ``GET /flavors``."""
        wanted = self.options.flavor
        key = (self.auth_url, self.options.project_name, "flavor", wanted)
        if key in self._resolved:
            return self._resolved[key]
        self.ensure_token()
        with self.client.get(f"{self.endpoint('compute')}/flavors", name="/flavors", headers=self.headers(),
                             catch_response=True) as resp:
            if resp.status_code != 200:
                error = response_error(resp)
                resp.failure(error)
                raise CloudError(f"listing flavors failed: {error}")
            flavors = resp.json().get("flavors", [])
        found = next((f for f in flavors if str(f.get("id")) == wanted), None) or next(
            (f for f in flavors if f.get("name") == wanted), None)
        if found is None:
            names = ", ".join(f"{f.get('id')} ({f.get('name')})" for f in flavors) or "none"
            raise CloudError(f"--flavor {wanted!r}: no flavor of that id or name (flavors: {names})")
        self._resolved[key] = str(found["id"])
        return str(found["id"])
