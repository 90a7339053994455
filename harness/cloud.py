"""The embedded cloud: every service of the boot path in one process and one event loop.

``EmbeddedCloud`` wires the pieces (settings -> latency model, telemetry, transport, Nova's DB, the
services and their HTTP servers), starts them in dependency order and stops them so that every span
is flushed. It is what ``harness up`` runs and what tests and benchmarks start in-process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from opentelemetry.sdk.trace.export import SpanExporter

from harness.config import Settings
from harness.db import NovaDB
from harness.latency import LatencyModel, load_profile
from harness.messaging import make_transport
from harness.services.base import CloudContext, HttpService, Service
from harness.services.cinder import CinderApi
from harness.services.glance import Glance
from harness.services.http import make_server
from harness.services.keystone import Keystone
from harness.services.neutron import Neutron
from harness.services.nova_api import NovaApi
from harness.services.nova_compute import NovaCompute, host_names
from harness.services.nova_conductor import NovaConductor
from harness.services.nova_scheduler import NovaScheduler
from harness.telemetry import Telemetry

log = logging.getLogger(__name__)


class CloudStartError(RuntimeError):
    """The cloud could not start (a port in use, a bad setting); the message says which."""


class EmbeddedCloud:
    def __init__(self, settings: Settings, *, extra_exporters: Sequence[SpanExporter] = ()) -> None:
        self.settings = settings
        self.run_id = uuid.uuid4().hex[:12]
        self.run_dir = Path(settings.run_dir)
        self._extra_exporters = extra_exporters
        self.services: list[Service] = []
        self._servers: list[tuple[HttpService, Any, asyncio.Task]] = []
        self.telemetry: Telemetry | None = None
        self.db: NovaDB | None = None
        self.span_counts: dict[str, dict[str, int]] = {}
        self.started = False

    # -- properties tests and tools use -------------------------------------------------------
    @property
    def auth_url(self) -> str:
        return self.settings.endpoint("keystone") + "/v3"

    def endpoints(self) -> dict[str, str]:
        return {s.name: s.base_url for s in self.services if isinstance(s, HttpService)}

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> "EmbeddedCloud":
        s = self.settings
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            profile = load_profile(s.profile)
        except ValueError as exc:
            raise CloudStartError(str(exc)) from None
        hosts = host_names(s.effective_host_groups())
        self.telemetry = Telemetry(
            run_dir=self.run_dir if s.otlp_file else None,
            enabled=s.tracing,
            extra_exporters=self._extra_exporters,
            resource_attributes={
                "harness.run.id": self.run_id, "harness.scheduler": s.scheduler,
                "harness.profile": profile.name, "harness.hosts": len(hosts),
            },
        )
        (self.run_dir / "settings.json").write_text(json.dumps(
            {"run_id": self.run_id, "started_at": time.time(), "profile_source": profile.source,
             "settings": s.dump()}, indent=2))
        transport = make_transport(s.transport_url)
        await transport.start()
        self.db = NovaDB(s.effective_db_url(), pool_size=s.db_pool_size)
        await self.db.create_schema()
        ctx = CloudContext(settings=s, telemetry=self.telemetry,
                           latency=LatencyModel(profile, seed=s.seed), transport=transport,
                           db=self.db, run_id=self.run_id)
        self.ctx = ctx
        compute = NovaCompute(ctx, hosts)
        await self.db.seed(h.row for h in compute.hosts.values())
        self.services = [Keystone(ctx), Glance(ctx), Neutron(ctx), CinderApi(ctx), NovaApi(ctx),
                         NovaScheduler(ctx), NovaConductor(ctx), compute]
        for svc in self.services:
            await svc.start()
        for svc in self.services:
            if isinstance(svc, HttpService):
                await self._serve(svc)
        for svc in self.services:  # service tokens up front, not inside the first boot's trace
            auth = getattr(svc, "auth", None)
            if auth is not None:
                await auth.service_token()
        self.started = True
        return self

    async def _serve(self, svc: HttpService) -> None:
        server = make_server(svc.build_app(), self.settings.bind_host, svc.port)

        async def run() -> None:
            try:
                await server.serve()
            except SystemExit:  # uvicorn exits when it cannot bind
                raise CloudStartError(
                    f"{svc.name} cannot listen on {self.settings.bind_host}:{svc.port} "
                    "(port in use? set another with --port-* flags or HARNESS_PORTS__*)"
                ) from None

        task = asyncio.create_task(run(), name=f"http-{svc.name}")
        self._servers.append((svc, server, task))
        while not server.started:
            if task.done():
                await self.stop()
                task.result()  # raises the CloudStartError
                raise CloudStartError(f"{svc.name} stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> dict[str, dict[str, int]]:
        """Stop serving, stop every service, flush every span; returns the span counters."""
        for _, server, _ in self._servers:
            server.should_exit = True
        for _, _, task in self._servers:
            try:
                await asyncio.wait_for(task, 10)
            except (Exception, asyncio.TimeoutError):
                pass
        self._servers.clear()
        for svc in reversed(self.services):
            await svc.stop()
        if self.started:
            await self.ctx.transport.close()
        if self.db is not None:
            await self.db.close()
            self.db = None
        if self.telemetry is not None:
            self.span_counts = await asyncio.to_thread(self.telemetry.shutdown)
            (self.run_dir / "span_counts.json").write_text(json.dumps(self.span_counts, indent=2))
            self.telemetry = None
        self.started = False
        return self.span_counts

    async def __aenter__(self) -> "EmbeddedCloud":
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
