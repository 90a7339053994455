"""What the security tests share: every operation of every service (from its published OpenAPI
document), raw requests, and a cloud with a second ordinary project."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from harness.cloud import EmbeddedCloud
from harness.config import Account, _default_accounts

HTTP_SERVICES = ("keystone", "nova", "glance", "neutron", "cinder")
#: Routes that may answer without a token: version discovery, the OpenAPI document, asking
#: Keystone for a token. Written out here, not taken from the documents under test.
PUBLIC = {
    ("keystone", "GET", "/"), ("keystone", "GET", "/v3"), ("keystone", "GET", "/v3/"),
    ("keystone", "POST", "/v3/auth/tokens"),
    ("nova", "GET", "/"), ("nova", "GET", "/v2.1"), ("nova", "GET", "/v2.1/"),
    ("glance", "GET", "/"), ("glance", "GET", "/versions"),
    ("neutron", "GET", "/"), ("neutron", "GET", "/v2.0"), ("neutron", "GET", "/v2.0/"),
    ("cinder", "GET", "/"), ("cinder", "GET", "/v3"), ("cinder", "GET", "/v3/"),
} | {(s, "GET", "/openapi.json") for s in HTTP_SERVICES}


@dataclass(frozen=True)
class Op:
    service: str  # port name: keystone, nova, ...
    base: str
    method: str
    path: str
    params: tuple[str, ...]

    def url(self, values: dict[str, str] | None = None) -> str:
        path = self.path
        for p in self.params:
            path = path.replace("{" + p + "}", (values or {}).get(p, str(uuid.uuid4())))
        return self.base + path


def alt_accounts() -> list[Account]:
    """The default users plus ``alt``, a member of a project of its own."""
    return [*_default_accounts(), Account(name="alt", password="alt-pass-8f2c", project="alt", role="member")]


async def raw(method: str, url: str, **kw: Any) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, **kw) as r:
            text = await r.text()
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = None
            return r.status, body, text


async def operations(cloud: EmbeddedCloud) -> list[Op]:
    ops = []
    for name in HTTP_SERVICES:
        base = cloud.settings.endpoint(name)
        status, doc, text = await raw("GET", base + "/openapi.json")
        assert status == 200, (name, status, text)
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                params = tuple(p["name"] for p in op.get("parameters", []) if p["in"] == "path")
                ops.append(Op(name, base, method.upper(), path, params))
    return ops


async def token(cloud: EmbeddedCloud, user: str, password: str | None = None, project: str | None = None) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password or user}}},
        "scope": {"project": {"name": project or user, "domain": {"id": "default"}}}}}
    async with aiohttp.ClientSession() as s:
        async with s.post(cloud.auth_url + "/auth/tokens", json=body) as r:
            assert r.status == 201, await r.text()
            return r.headers["X-Subject-Token"]


class ThreadedCloud:
    """An embedded cloud running in a thread of its own (its own event loop), for synchronous
    clients such as schemathesis: ``with ThreadedCloud(settings) as cloud: ...``."""

    def __init__(self, settings: Any) -> None:
        import threading

        self.settings = settings
        self.cloud: EmbeddedCloud | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="threaded-cloud", daemon=True)

    def _run(self) -> None:
        import asyncio

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with EmbeddedCloud(self.settings) as cloud:
                    self.cloud = cloud
                    self._loop = asyncio.get_running_loop()
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # reported to the thread that waits in __enter__
                self._error = exc
                self._ready.set()

        asyncio.run(main())

    def __enter__(self) -> EmbeddedCloud:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None or self.cloud is None:
            raise RuntimeError(f"the cloud did not start: {self._error!r}")
        return self.cloud

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
