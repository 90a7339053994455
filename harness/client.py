"""A small async OpenStack client: what ``harness boot`` and the tests drive a cloud with.

It finds every endpoint in the token's catalog (as keystoneauth does), so it works against the
embedded cloud and a real one alike. Optionally it opens a client span per boot so the boot's trace
starts at the user, as the Locust user does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from harness.services.rest import HttpResponse, catalog_url
from harness.telemetry import inject_headers

DEFAULT_AUTH_URL = "http://127.0.0.1:5000/v3"


class CloudError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:500]}")
        self.status, self.body = status, body


@dataclass
class BootResult:
    server_id: str | None
    status: str  # ACTIVE, ERROR, or the error of the request
    fault: str | None
    started: float  # wall clock, s
    accepted_s: float  # POST /servers answered
    active_s: float | None  # ACTIVE or ERROR seen by polling
    trace_id: str | None = None
    host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class OpenStackClient:
    def __init__(self, auth_url: str = DEFAULT_AUTH_URL, *, username: str = "demo", password: str = "demo",
                 project: str = "demo", timeout: float = 60.0) -> None:
        self.auth_url = auth_url.rstrip("/")
        if not self.auth_url.endswith("/v3"):
            self.auth_url += "/v3"
        self.username, self.password, self.project = username, password, project
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self.token: str | None = None
        self.catalog: list[dict[str, Any]] = []
        self.expires_at = 0.0
        self._flavor_ids: dict[str, str] | None = None  # flavor id or name -> id, read once

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000, ttl_dns_cache=None),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, method: str, url: str, **kw: Any) -> HttpResponse:
        async with self.http.request(method, url, **kw) as resp:
            return HttpResponse(resp.status, resp.headers, await resp.read())

    async def __aenter__(self) -> "OpenStackClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def authenticate(self) -> str:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": self.username, "domain": {"id": "default"}, "password": self.password}}},
            "scope": {"project": {"name": self.project, "domain": {"id": "default"}}}}}
        resp = await self._send("POST", f"{self.auth_url}/auth/tokens", json=body, headers=inject_headers())
        if resp.status_code != 201:
            raise CloudError(resp.status_code, resp.text)
        self.token = resp.headers["X-Subject-Token"]
        tok = resp.json()["token"]
        self.catalog = tok["catalog"]
        from datetime import datetime

        self.expires_at = datetime.fromisoformat(tok["expires_at"].replace("Z", "+00:00")).timestamp()
        return self.token

    async def _token(self) -> str:
        if self.token is None or time.time() > self.expires_at - 60:
            await self.authenticate()
        assert self.token is not None
        return self.token

    def endpoint(self, service_type: str) -> str:
        return catalog_url(self.catalog, service_type)

    async def request(self, method: str, service_type: str, path: str, **kw: Any) -> HttpResponse:
        token = await self._token()
        headers = inject_headers({"X-Auth-Token": token, **kw.pop("headers", {})})
        return await self._send(method, self.endpoint(service_type) + path, headers=headers, **kw)

    async def flavor_ref(self, flavor: str) -> str:
        """A flavor id for ``flavor`` (an id or a name): Nova's ``flavorRef`` takes ids only."""
        if self._flavor_ids is None:
            ids: dict[str, str] = {}
            for f in await self.flavors():
                ids[str(f["id"])] = str(f["id"])
                ids.setdefault(f["name"], str(f["id"]))
            self._flavor_ids = ids
        return self._flavor_ids.get(str(flavor), str(flavor))

    async def create_server(self, name: str, *, flavor: str = "1", image: str | None = None,
                            **extra: Any) -> dict[str, Any]:
        flavor = await self.flavor_ref(flavor)
        body: dict[str, Any] = {"server": {"name": name, "flavorRef": flavor, **extra}}
        if image is not None:
            body["server"]["imageRef"] = image
        resp = await self.request("POST", "compute", "/servers", json=body)
        if resp.status_code != 202:
            raise CloudError(resp.status_code, resp.text)
        return resp.json()["server"]

    async def get_server(self, server_id: str) -> dict[str, Any] | None:
        resp = await self.request("GET", "compute", f"/servers/{server_id}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise CloudError(resp.status_code, resp.text)
        return resp.json()["server"]

    async def wait_for_status(self, server_id: str, *, timeout: float = 120.0,
                              interval: float = 0.05) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            server = await self.get_server(server_id)
            if server is None:
                raise CloudError(404, f"server {server_id} disappeared")
            if server["status"] in ("ACTIVE", "ERROR"):
                return server
            if time.monotonic() > deadline:
                raise TimeoutError(f"server {server_id} still {server['status']} after {timeout}s")
            await asyncio.sleep(interval)

    async def delete_server(self, server_id: str) -> None:
        resp = await self.request("DELETE", "compute", f"/servers/{server_id}")
        if resp.status_code not in (204, 404):
            raise CloudError(resp.status_code, resp.text)

    async def wait_for_delete(self, server_id: str, *, timeout: float = 60.0, interval: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while await self.get_server(server_id) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server {server_id} not deleted after {timeout}s")
            await asyncio.sleep(interval)

    async def images(self) -> list[dict[str, Any]]:
        resp = await self.request("GET", "image", "/v2/images")
        if resp.status_code != 200:
            raise CloudError(resp.status_code, resp.text)
        return resp.json()["images"]

    async def flavors(self) -> list[dict[str, Any]]:
        resp = await self.request("GET", "compute", "/flavors/detail")
        if resp.status_code != 200:
            raise CloudError(resp.status_code, resp.text)
        return resp.json()["flavors"]
