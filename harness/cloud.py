"""The embedded cloud: every service of the boot path in one process and one event loop.

``EmbeddedCloud`` wires the pieces (settings -> latency model, telemetry, transport, Nova's DB, the
services and their HTTP servers), starts them in dependency order and stops them so that every span
is flushed. It is what ``harness up`` runs and what tests and benchmarks start in-process.

With ``services=`` it runs only some of them (``harness serve SERVICE``: one process per service,
see :mod:`harness.topology`); the rest are reached over the network (HTTP through Keystone's
catalog, RPC through the broker). Nova's DB is opened only by the services that own it; a
nova-compute without it registers its hosts through nova-conductor, as Nova's resource tracker
does.
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

from harness import bottlenecks
from harness.config import Settings
from harness.db import NovaDB
from harness.faults import FaultInjector, plan_from_profile
from harness.latency import LatencyModel, load_profile
from harness.messaging import make_transport
from harness.services.base import CloudContext, HttpService, Service
from harness.services import fault_gate, openapi
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


#: Every service of a cloud as ``harness serve`` names it, in start order. Sub-services run in
#: their owner's process, as they share its state: cinder-api with cinder-scheduler and
#: cinder-volume, neutron-server with its agent.
SERVICE_NAMES = ("keystone", "glance-api", "neutron-server", "cinder-api", "nova-api",
                 "nova-scheduler", "nova-conductor", "nova-compute")
DB_SERVICES = frozenset({"nova-api", "nova-scheduler", "nova-conductor"})
#: seconds a partial cloud waits for the services it needs (Keystone, nova-conductor)
DEPENDENCY_WAIT_S = 60.0


class EmbeddedCloud:
    def __init__(
        self,
        settings: Settings,
        *,
        extra_exporters: Sequence[SpanExporter] = (),
        services: Sequence[str] | None = None,
        compute_hosts: Sequence[str] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.settings = settings = bottlenecks.effective(settings)  # planted ones override
        unknown = [n for n in services or () if n not in SERVICE_NAMES]
        if unknown:
            raise ValueError(f"unknown service {', '.join(map(repr, unknown))}: "
                             f"choose among {', '.join(SERVICE_NAMES)}")
        #: the services this cloud runs (all of them by default)
        self.selected = tuple(n for n in SERVICE_NAMES if services is None or n in services)
        self.partial = self.selected != SERVICE_NAMES
        self._compute_hosts = list(compute_hosts) if compute_hosts is not None else None
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.run_dir = Path(settings.run_dir)
        self._extra_exporters = extra_exporters
        self.services: list[Service] = []
        self._servers: list[tuple[HttpService, Any, asyncio.Task]] = []
        self.telemetry: Telemetry | None = None
        self.faults: FaultInjector | None = None
        self.db: NovaDB | None = None
        self._transport: Any = None
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
        try:
            specs, fault_seed = plan_from_profile(profile.faults)
        except ValueError as exc:
            raise CloudStartError(f"profile {profile.source}: {exc}") from None
        self.faults = FaultInjector(
            specs, seed=s.seed if fault_seed is None else fault_seed,
            db_pool=1 if bottlenecks.planted(s, bottlenecks.Bottleneck.DB_POOL) else None)
        hosts = host_names(s.effective_host_groups())
        if self._compute_hosts is not None:
            known = {name for name, _ in hosts}
            missing = [h for h in self._compute_hosts if h not in known]
            if missing:
                raise CloudStartError(f"unknown compute host {', '.join(missing)}: the settings "
                                      f"define {hosts[0][0] if hosts else 'none'} .. {hosts[-1][0] if hosts else ''}")
            hosts = [(n, g) for n, g in hosts if n in self._compute_hosts]
        self.telemetry = Telemetry(
            run_dir=self.run_dir if s.otlp_file else None,
            enabled=s.tracing,
            extra_exporters=self._extra_exporters,
            resource_attributes={
                "harness.run.id": self.run_id, "harness.scheduler": s.scheduler,
                "harness.profile": profile.name, "harness.hosts": len(hosts),
            },
        )
        (self.run_dir / self._file("settings.json")).write_text(json.dumps(
            {"run_id": self.run_id, "started_at": time.time(), "profile_source": profile.source,
             "services": list(self.selected), "settings": s.dump()}, indent=2))
        transport = make_transport(s.transport_url)
        try:
            await transport.start()
        except ConnectionError as exc:  # the broker is down or refuses us: say so, no traceback
            raise CloudStartError(str(exc)) from None
        self._transport = transport
        if DB_SERVICES & set(self.selected):
            self.db = NovaDB(s.effective_db_url(), pool_size=s.db_pool_size,
                             shared=not DB_SERVICES <= set(self.selected))
            await self._db_call(self.db.create_schema())
        ctx = CloudContext(settings=s, telemetry=self.telemetry,
                           latency=LatencyModel(profile, seed=s.seed, faults=self.faults), transport=transport,
                           db=self.db, run_id=self.run_id)
        self.ctx = ctx
        factories = {
            "keystone": Keystone, "glance-api": Glance, "neutron-server": Neutron,
            "cinder-api": CinderApi, "nova-api": NovaApi, "nova-scheduler": NovaScheduler,
            "nova-conductor": NovaConductor, "nova-compute": lambda c: NovaCompute(c, hosts),
        }
        self.services = [factories[name](ctx) for name in self.selected]
        compute = next((svc for svc in self.services if isinstance(svc, NovaCompute)), None)
        if self.db is not None:  # compute nodes are known here only when compute runs here
            rows = [h.row for h in compute.hosts.values()] if compute is not None else []
            await self._db_call(self.db.seed(rows))
        for svc in self.services:
            await svc.start()
        for svc in self.services:
            if isinstance(svc, HttpService):
                await self._serve(svc)
        if compute is not None and self.db is None:
            await self._register_hosts(compute)
        for svc in self.services:  # service tokens up front, not inside the first boot's trace
            auth = getattr(svc, "auth", None)
            if auth is not None:
                await self._await_dependency("keystone", auth.service_token)
        self.started = True
        return self

    def _file(self, name: str) -> str:
        """A run-dir file name; a partial cloud's carry its services (``span_counts-nova-api.json``)."""
        if not self.partial:
            return name
        stem, dot, ext = name.rpartition(".")
        return f"{stem}-{'+'.join(self.selected)}{dot}{ext}"

    async def _db_call(self, op: Any) -> Any:
        """Run a DB setup step; an unreachable DB is a clear CloudStartError."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return await op
        except (OSError, SQLAlchemyError) as exc:
            where = make_url(self.settings.effective_db_url()).render_as_string(hide_password=True)
            reason = getattr(exc, "orig", None) or exc
            raise CloudStartError(f"cannot use Nova's DB at {where}: {reason}") from None

    async def _await_dependency(self, what: str, fn: Any) -> Any:
        """Call ``fn`` until it works: in a partial cloud, the service it needs may start later."""
        deadline = time.monotonic() + (DEPENDENCY_WAIT_S if self.partial else 0)
        while True:
            try:
                return await fn()
            except Exception as exc:
                if time.monotonic() >= deadline:
                    if not self.partial:
                        raise
                    raise CloudStartError(f"{what} did not answer within {DEPENDENCY_WAIT_S:g} s: "
                                          f"{exc or type(exc).__name__}") from None
                await asyncio.sleep(0.5)

    async def _register_hosts(self, compute: NovaCompute) -> None:
        """Report this process's hosts to nova-conductor, which records them in Nova's DB."""
        rows = [h.row for h in compute.hosts.values()]

        async def register() -> Any:
            return await compute.conductor.call("conductor", "compute_node_register",
                                                {"nodes": rows}, timeout=10)

        await self._await_dependency("nova-conductor", register)

    async def _serve(self, svc: HttpService) -> None:
        app = fault_gate.install(svc.build_app(), svc, self.faults)  # faults act at the door
        openapi.add_route(app, svc)
        server = make_server(app, self.settings.bind_host, svc.port)

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
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
        if self.db is not None:
            await self.db.close()
            self.db = None
        if self.telemetry is not None:
            self.span_counts = await asyncio.to_thread(self.telemetry.shutdown)
            (self.run_dir / self._file("span_counts.json")).write_text(json.dumps(self.span_counts, indent=2))
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
