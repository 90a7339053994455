"""What every service is built from: the shared run context and the service base class.

Settings, the latency model, the transport, telemetry and Nova's DB are passed in (no hidden
globals), so a service can run in the embedded cloud, in its own process, or in a unit test with
fakes. Each service has its own tracer (its own ``service.name``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from harness.config import Settings
from harness.db import NovaDB
from harness.latency import LatencyModel
from harness.messaging import RpcClient, RpcServer, Transport
from harness.messaging.rpc import Method
from harness.services.rest import RestClient, TokenValidator
from harness.telemetry import Telemetry


@dataclass
class CloudContext:
    """Everything services share in one run; built once by :mod:`harness.cloud`."""

    settings: Settings
    telemetry: Telemetry
    latency: LatencyModel
    transport: Transport
    db: NovaDB | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: SHA-256 digests of tokens Keystone revoked in this process: the services' token caches
    #: check it on every hit (keystonemiddleware's ``check_revocations_for_cached``). Across
    #: processes (``harness up --processes``) a cached token lives until ``token_cache_ttl``.
    revoked_tokens: set[bytes] = field(default_factory=set)

    def tracer(self, service: str, instance_id: str | None = None) -> trace.Tracer:
        return self.telemetry.tracer(service, instance_id)

    def keystone_url(self) -> str:
        return self.settings.endpoint("keystone")

    def service_account(self, name: str) -> tuple[str, str, str]:
        for acct in self.settings.accounts:
            if acct.name == name:
                return acct.name, acct.password, acct.project
        raise KeyError(f"no account {name!r} in the settings (service users are seeded by default)")


class Service:
    """Base of every service: a tracer, a REST client, RPC helpers and start/stop hooks."""

    name: str = "?"

    def __init__(self, ctx: CloudContext, *, instance_id: str | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.latency = ctx.latency
        self.tracer = ctx.tracer(self.name, instance_id)
        self._rest: RestClient | None = None
        self._servers: list[RpcServer] = []
        self._clients: list[RpcClient] = []

    @property
    def rest(self) -> RestClient:
        if self._rest is None:
            self._rest = RestClient(self.tracer, self.latency, user_agent=f"harness-{self.name}")
        return self._rest

    def token_validator(self, *, account: str) -> TokenValidator:
        user, password, project = self.ctx.service_account(account)
        return TokenValidator(
            self.rest,
            keystone_url=self.ctx.keystone_url(),
            service_user=user,
            service_password=password,
            service_project=project,
            cache_ttl=self.settings.token_cache_ttl if self.settings.token_cache else 0.0,
            cache_steps=self.settings.token_cache_steps,
            revoked=self.ctx.revoked_tokens,
        )

    def rpc_client(self, exchange: str) -> RpcClient:
        client = RpcClient(
            self.ctx.transport, self.tracer, self.latency,
            exchange=exchange, timeout=self.settings.rpc_response_timeout,
        )
        self._clients.append(client)
        return client

    def rpc_server(self, exchange: str, topic: str, methods: dict[str, Method], *, workers: int) -> RpcServer:
        server = RpcServer(
            transport=self.ctx.transport, tracer=self.tracer, latency=self.latency,
            exchange=exchange, topic=topic, methods=methods, workers=workers, service=self.name,
        )
        self._servers.append(server)
        return server

    async def start(self) -> None:
        for client in self._clients:
            await client.start()
        for server in self._servers:
            await server.start()

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()
        for client in self._clients:
            await client.stop()
        if self._rest is not None:
            await self._rest.close()


class HttpService(Service):
    """A service that also answers REST on a port: ``app`` is its ASGI application."""

    port_name: str = "?"

    @property
    def port(self) -> int:
        return getattr(self.settings.ports, self.port_name)

    @property
    def base_url(self) -> str:
        return self.settings.endpoint(self.port_name)

    def build_app(self) -> Any:  # pragma: no cover - each service defines it
        raise NotImplementedError
