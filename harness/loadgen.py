"""``harness boot``: boot N servers with C in flight, against an embedded or a running cloud.

Each boot is traced from the client (a ``boot server`` CLIENT span of service ``harness-client``),
so its trace holds the user's wait and the cloud's 29 steps. Latency is measured by the client
(request to ACTIVE by polling) and, from the spans, broken down per phase by :mod:`analysis`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.client import BootResult, CloudError, OpenStackClient
from harness.cloud import EmbeddedCloud
from harness.config import Settings
from harness.telemetry import Telemetry


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
class BootReport:
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
            "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95), "max_s": max(lat, default=float("nan")),
            "mean_s": statistics.fmean(lat) if lat else float("nan"),
        }

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
            cols = [c for c in self.phases.columns if c != "phase"]
            for c in cols:
                table.add_column(str(c), justify="right")
            for _, row in self.phases.iterrows():
                table.add_row(str(row["phase"]), *(_fmt(row[c]) for c in cols))
            console.print(table)
        if self.spans_path:
            console.print(f"spans: {self.spans_path}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


class BootRunner:
    """Boots ``count`` servers, ``concurrency`` at a time; starts an embedded cloud if no URL."""

    def __init__(self, settings: Settings, *, count: int, concurrency: int, auth_url: str | None = None,
                 flavor: str = "1", image: str | None = None, delete: bool = True,
                 username: str = "demo", password: str = "demo", project: str = "demo",
                 poll_interval: float = 0.02, boot_timeout: float = 300.0) -> None:
        self.settings, self.count, self.concurrency = settings, count, concurrency
        self.auth_url, self.flavor, self.image, self.delete = auth_url, flavor, image, delete
        self.creds = (username, password, project)
        self.poll_interval, self.boot_timeout = poll_interval, boot_timeout

    async def run(self, *, progress: bool = False) -> BootReport:
        cloud: EmbeddedCloud | None = None
        own_telemetry: Telemetry | None = None
        if self.auth_url is None:
            cloud = EmbeddedCloud(self.settings)
            await cloud.start()
            auth_url = cloud.auth_url
            tracer = cloud.telemetry.tracer("harness-client") if cloud.telemetry else trace.NoOpTracer()
        else:
            auth_url = self.auth_url
            Path(self.settings.run_dir).mkdir(parents=True, exist_ok=True)
            own_telemetry = Telemetry(run_dir=Path(self.settings.run_dir), enabled=self.settings.tracing)
            tracer = own_telemetry.tracer("harness-client")
        try:
            results, wall = await self._boot_all(auth_url, tracer, progress)
        finally:
            counts: dict[str, dict[str, int]] = {}
            if cloud is not None:
                counts = await cloud.stop()
            if own_telemetry is not None:
                counts = await asyncio.to_thread(own_telemetry.shutdown)
        spans_path = Path(self.settings.run_dir) / "spans.jsonl"
        report = BootReport(results, wall, spans_path if spans_path.exists() else None, counts)
        report.phases = _phase_table(spans_path) if spans_path.exists() else None
        return report

    async def _boot_all(self, auth_url: str, tracer: trace.Tracer, progress: bool) -> tuple[list[BootResult], float]:
        user, password, project = self.creds
        async with OpenStackClient(auth_url, username=user, password=password, project=project) as client:
            await client.authenticate()
            image = self.image or await _cirros(client)
            sem = asyncio.Semaphore(self.concurrency)
            bar = _progress() if progress else None
            task_id = bar.add_task("booting", total=self.count) if bar else None

            async def one(i: int) -> BootResult:
                async with sem:
                    result = await self._boot_one(client, tracer, i, image)
                if bar is not None and task_id is not None:
                    bar.advance(task_id)
                return result

            t0 = time.perf_counter()
            if bar is not None:
                with bar:
                    results = await asyncio.gather(*(one(i) for i in range(self.count)))
            else:
                results = await asyncio.gather(*(one(i) for i in range(self.count)))
            return list(results), time.perf_counter() - t0

    async def _boot_one(self, client: OpenStackClient, tracer: trace.Tracer, i: int, image: str) -> BootResult:
        started, t0 = time.time(), time.perf_counter()
        with tracer.start_as_current_span("boot server", kind=SpanKind.CLIENT,
                                          attributes={"harness.boot.index": i}) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            try:
                srv = await client.create_server(f"boot-{i}", flavor=self.flavor, image=image)
            except (CloudError, OSError, aiohttp.ClientError) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                return BootResult(None, "REQUEST_FAILED", str(exc), started, time.perf_counter() - t0, None, trace_id)
            accepted = time.perf_counter() - t0
            span.set_attribute("openstack.instance.id", srv["id"])
            try:
                final = await client.wait_for_status(srv["id"], timeout=self.boot_timeout,
                                                     interval=self.poll_interval)
            except (CloudError, TimeoutError, OSError, aiohttp.ClientError) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                return BootResult(srv["id"], "TIMEOUT", str(exc), started, accepted, None, trace_id)
            done = time.perf_counter() - t0
            fault = (final.get("fault") or {}).get("message")
            span.set_attribute("openstack.server.status", final["status"])
            if final["status"] != "ACTIVE":
                span.set_status(Status(StatusCode.ERROR, fault or final["status"]))
        if self.delete:
            await client.delete_server(srv["id"])
            await client.wait_for_delete(srv["id"], interval=self.poll_interval)
        return BootResult(srv["id"], final["status"], fault, started, accepted, done, trace_id,
                          host=final.get("OS-EXT-SRV-ATTR:host"))


async def _cirros(client: OpenStackClient) -> str:
    for img in await client.images():
        if img["name"].startswith("cirros"):
            return img["id"]
    raise ValueError("no cirros image in the cloud: pass --image")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True)


def _phase_table(spans_path: Path) -> Any:
    """Per-phase table from the spans (None when the analysis package is not importable)."""
    try:
        from analysis.boots import boot_table
        from analysis.breakdown import phase_table
        from analysis.load import load_spans
    except ImportError:
        return None
    return phase_table(boot_table(load_spans(spans_path)))
