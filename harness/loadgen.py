"""The built-in load generator: boots from asyncio, in fixed counts, closed loops or open loops.

``harness boot`` and the experiment runner use it when Locust is not wanted (it needs no second
process). Each boot is traced from the client (a ``boot server`` CLIENT span of service
``harness-client``), so its trace holds the user's wait and the cloud's steps. Three shapes:

* :func:`fixed_count` — N boots, C in flight (``harness boot``);
* :func:`closed_loop` — U users, each boots, waits for ACTIVE, deletes, repeats, for a duration;
* :func:`open_loop` — boots arrive as a Poisson process at a given rate, whatever the cloud's
  speed (as wrk2 does); each boot's latency is measured from its *intended* start, so a cloud that
  falls behind shows it (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.client import BootResult, CloudError, OpenStackClient
from harness.cloud import EmbeddedCloud
from harness.config import Settings
from harness.status_watch import StatusWatcher
from harness.telemetry import Telemetry

_TRANSPORT_ERRORS = (CloudError, OSError, aiohttp.ClientError, asyncio.TimeoutError)


def percentile(values: list[float], q: float) -> float:
    """Exact percentile (linear interpolation, as numpy's default)."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class BootOptions:
    flavor: str = "1"
    image: str | None = None  # default: the cirros image, found by name
    delete: bool = True
    poll_interval: float = 0.05
    #: how a boot learns it is ACTIVE: "server" polls GET /servers/{id} per boot (as openstacksdk
    #: and Rally do); "list" shares one GET /servers/detail?changes-since= per interval among all
    #: boots in flight (harness.status_watch), so polling does not dominate the cloud's load
    watch: str = "server"
    boot_timeout: float = 300.0
    username: str = "demo"
    password: str = "demo"
    project: str = "demo"


class Booter:
    """Boots one server at a time on behalf of a user: create, poll to ACTIVE/ERROR, delete."""

    def __init__(self, client: OpenStackClient, tracer: trace.Tracer, image: str, opts: BootOptions) -> None:
        if opts.watch not in ("server", "list"):
            raise ValueError(f"watch must be 'server' or 'list', got {opts.watch!r}")
        self.client, self.tracer, self.image, self.opts = client, tracer, image, opts
        self.watcher = StatusWatcher(client, interval=opts.poll_interval) if opts.watch == "list" else None

    async def _wait_final(self, server_id: str) -> dict[str, Any]:
        if self.watcher is not None:
            return await self.watcher.wait(server_id, timeout=self.opts.boot_timeout)
        return await self.client.wait_for_status(server_id, timeout=self.opts.boot_timeout,
                                                 interval=self.opts.poll_interval)

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.close()

    async def boot(self, name: str, *, intended_start: float | None = None,
                   attributes: dict[str, Any] | None = None) -> BootResult:
        """One boot; with ``intended_start`` (perf_counter time) latency counts from then."""
        started = time.time()
        t0 = intended_start if intended_start is not None else time.perf_counter()
        with self.tracer.start_as_current_span("boot server", kind=SpanKind.CLIENT,
                                               attributes=attributes or {}) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            try:
                srv = await self.client.create_server(name, flavor=self.opts.flavor, image=self.image)
            except _TRANSPORT_ERRORS as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                return BootResult(None, "REQUEST_FAILED", str(exc), started, time.perf_counter() - t0,
                                  None, trace_id)
            accepted = time.perf_counter() - t0
            span.set_attribute("openstack.instance.id", srv["id"])
            try:
                final = await self._wait_final(srv["id"])
            except (*_TRANSPORT_ERRORS, TimeoutError) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                return BootResult(srv["id"], "TIMEOUT", str(exc), started, accepted, None, trace_id)
            done = time.perf_counter() - t0
            fault = (final.get("fault") or {}).get("message")
            span.set_attribute("openstack.server.status", final["status"])
            if final["status"] != "ACTIVE":
                span.set_status(Status(StatusCode.ERROR, fault or final["status"]))
        if self.opts.delete:
            try:
                await self.client.delete_server(srv["id"])
                await self.client.wait_for_delete(srv["id"], interval=self.opts.poll_interval)
            except (*_TRANSPORT_ERRORS, TimeoutError):
                pass  # the boot's outcome is what is measured; a slow delete is the cloud's
        return BootResult(srv["id"], final["status"], fault, started, accepted, done, trace_id,
                          host=final.get("OS-EXT-SRV-ATTR:host"))


# -- load shapes ------------------------------------------------------------------------------------

Tick = Callable[[BootResult], None]


async def fixed_count(booter: Booter, *, count: int, concurrency: int, tick: Tick | None = None) -> list[BootResult]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> BootResult:
        async with sem:
            r = await booter.boot(f"boot-{i}", attributes={"harness.boot.index": i})
        if tick:
            tick(r)
        return r

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def closed_loop(booter: Booter, *, users: int, duration: float, tick: Tick | None = None) -> list[BootResult]:
    """``users`` users, each booting back to back until ``duration`` seconds have passed."""
    deadline = time.perf_counter() + duration
    results: list[BootResult] = []

    async def user(u: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            r = await booter.boot(f"u{u}-{i}", attributes={"harness.user.id": u, "harness.boot.index": i})
            results.append(r)
            if tick:
                tick(r)
            i += 1

    await asyncio.gather(*(user(u) for u in range(users)))
    return results


async def open_loop(booter: Booter, *, rate: float, duration: float, seed: int,
                    max_in_flight: int = 10000, tick: Tick | None = None) -> list[BootResult]:
    """Poisson arrivals at ``rate`` boots/s for ``duration`` s; latency from the intended start."""
    rng = random.Random(seed)
    start = time.perf_counter()
    intended = start
    tasks: list[asyncio.Task] = []
    i = 0
    while True:
        intended += rng.expovariate(rate)
        if intended - start >= duration:
            break
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if sum(1 for t in tasks if not t.done()) >= max_in_flight:
            continue  # a bound on memory, not on the schedule: such arrivals are dropped, counted
        tasks.append(asyncio.create_task(booter.boot(
            f"o-{i}", intended_start=intended,
            attributes={"harness.boot.index": i, "harness.arrival.intended_s": intended - start})))
        i += 1
    results = list(await asyncio.gather(*tasks))
    if tick:
        for r in results:
            tick(r)
    return results


# -- running against an embedded or a remote cloud --------------------------------------------------

@dataclass
class LoadReport:
    results: list[BootResult]
    wall_s: float
    spans_path: Path | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    phases: Any = None  # pandas DataFrame from analysis.breakdown.phase_table, when spans exist

    @property
    def active(self) -> list[BootResult]:
        return [r for r in self.results if r.status == "ACTIVE"]

    @property
    def failed(self) -> list[BootResult]:
        return [r for r in self.results if r.status != "ACTIVE"]

    def summary(self) -> dict[str, float]:
        lat = [r.active_s for r in self.active if r.active_s is not None]
        return {
            "boots": len(self.results), "active": len(self.active), "error": len(self.failed),
            "wall_s": self.wall_s, "boots_per_s": len(self.active) / self.wall_s if self.wall_s else 0.0,
            "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95), "p99_s": percentile(lat, 99),
            "max_s": max(lat, default=float("nan")), "mean_s": statistics.fmean(lat) if lat else float("nan"),
        }

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.results]

    def print(self, console: Console) -> None:
        s = self.summary()
        console.print(
            f"[bold]{s['active']}/{s['boots']} ACTIVE[/], {s['error']} ERROR in {s['wall_s']:.2f} s "
            f"({s['boots_per_s']:.1f} boots/s); boot to ACTIVE p50 {s['p50_s'] * 1000:.1f} ms, "
            f"p95 {s['p95_s'] * 1000:.1f} ms, max {s['max_s'] * 1000:.1f} ms"
        )
        faults: dict[str, int] = {}
        for r in self.failed:
            faults[r.fault or r.status] = faults.get(r.fault or r.status, 0) + 1
        for text, n in sorted(faults.items(), key=lambda kv: -kv[1]):
            console.print(f"  [red]{n} x[/] {text}")
        if self.phases is not None and len(self.phases):
            table = Table(title="time per phase, ms (from the spans)", show_edge=False)
            table.add_column("phase")
            wanted = ("median", "p90", "p95", "p99", "max", "mean", "share_pct")
            cols = [c for c in wanted if c in self.phases.columns] or list(self.phases.columns)
            for c in cols:
                table.add_column(str(c), justify="right")
            for phase, row in self.phases.iterrows():
                table.add_row(str(phase), *(_fmt(row[c]) for c in cols))
            console.print(table)
        if self.spans_path:
            console.print(f"spans: {self.spans_path}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


Shape = Callable[[Booter, Tick | None], Awaitable[list[BootResult]]]


async def run_load(settings: Settings, shape: Shape, *, opts: BootOptions, auth_url: str | None = None,
                   progress_total: int | None = None, progress: bool = False,
                   cloud: EmbeddedCloud | None = None) -> LoadReport:
    """Run ``shape`` against a cloud: ``cloud`` if given, the one at ``auth_url``, or a fresh
    embedded one (started and stopped here, so its spans are flushed when this returns)."""
    own_cloud: EmbeddedCloud | None = None
    own_telemetry: Telemetry | None = None
    if cloud is None and auth_url is None:
        own_cloud = cloud = EmbeddedCloud(settings)
        await cloud.start()
    if cloud is not None:
        auth_url = cloud.auth_url
        tracer = cloud.telemetry.tracer("harness-client") if cloud.telemetry else trace.NoOpTracer()
    else:
        Path(settings.run_dir).mkdir(parents=True, exist_ok=True)
        own_telemetry = Telemetry(run_dir=Path(settings.run_dir), enabled=settings.tracing)
        tracer = own_telemetry.tracer("harness-client")
    assert auth_url is not None
    bar = _progress() if progress else None
    try:
        async with OpenStackClient(auth_url, username=opts.username, password=opts.password,
                                   project=opts.project) as client:
            await client.authenticate()
            image = opts.image or await _cirros(client)
            booter = Booter(client, tracer, image, opts)
            task_id = bar.add_task("booting", total=progress_total) if bar else None

            def tick(_: BootResult) -> None:
                if bar is not None and task_id is not None:
                    bar.advance(task_id)

            t0 = time.perf_counter()
            try:
                if bar is not None:
                    with bar:
                        results = await shape(booter, tick)
                else:
                    results = await shape(booter, None)
            finally:
                await booter.close()
            wall = time.perf_counter() - t0
    finally:
        counts: dict[str, dict[str, int]] = {}
        if own_cloud is not None:
            counts = await own_cloud.stop()
        if own_telemetry is not None:
            counts = await asyncio.to_thread(own_telemetry.shutdown)
    spans_path = Path(settings.run_dir) / "spans.jsonl"
    report = LoadReport(results, wall, spans_path if spans_path.exists() else None, counts)
    if own_cloud is not None and spans_path.exists():
        report.phases = phase_table_of(spans_path)
    return report


async def _cirros(client: OpenStackClient) -> str:
    for img in await client.images():
        if img["name"].startswith("cirros"):
            return img["id"]
    raise ValueError("no cirros image in the cloud: pass --image")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True)


def phase_table_of(spans_path: Path) -> Any:
    """Per-phase table (Rally-style) from a spans file, through the analysis package."""
    from analysis.boots import boot_table
    from analysis.breakdown import phase_table
    from analysis.load import load_spans

    return phase_table(boot_table(load_spans(spans_path)))
