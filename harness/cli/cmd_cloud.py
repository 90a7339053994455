"""``harness up`` (run the embedded cloud) and ``harness boot`` (boot servers, print phases)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from harness import aio
from harness.cli import app
from harness.cli.cmd_faults import BottleneckOpt, FixOpt, apply_bottleneck_flags
from harness.cli.common import (
    BindOpt, ConfigOpt, DbOpt, HostsOpt, PortOffsetOpt, ProfileOpt, RunDirOpt, SchedulerOpt,
    SchedulerOptOpt, SeedOpt, TransportOpt, build_settings, console, fail, out,
)
from harness.cloud import CloudStartError, EmbeddedCloud
from harness.config import Settings


def _settings(config, profile, hosts, run_dir, scheduler, seed, bind, transport, db, port_offset,
              **extra) -> Settings:
    return build_settings(
        config=config, port_offset=port_offset, profile=profile, hosts=hosts, run_dir=run_dir,
        scheduler=scheduler, seed=seed, bind_host=bind, transport_url=transport, db_url=db, **extra,
    )


def print_counts(counts: dict[str, dict[str, int]]) -> None:
    table = Table(title="spans per service", show_edge=False)
    for col in ("service", "started", "ended", "exported", "dropped"):
        table.add_column(col, justify="left" if col == "service" else "right")
    for svc, c in counts.items():
        style = "bold red" if c["dropped"] else None
        table.add_row(svc, *(str(c[k]) for k in ("started", "ended", "exported", "dropped")), style=style)
    console.print(table)
    dropped = sum(c["dropped"] for c in counts.values())
    if dropped:
        console.print(f"[bold red]{dropped} spans were dropped by the SDK[/]")


@app.command()
def up(
    config: Optional[Path] = ConfigOpt,
    profile: Optional[str] = ProfileOpt,
    hosts: Optional[int] = HostsOpt,
    run_dir: Optional[Path] = RunDirOpt,
    scheduler: Optional[str] = SchedulerOpt,
    scheduler_opt: Optional[List[str]] = SchedulerOptOpt,
    seed: Optional[int] = SeedOpt,
    bind: Optional[str] = BindOpt,
    transport: Optional[str] = TransportOpt,
    db: Optional[str] = DbOpt,
    port_offset: Optional[int] = PortOffsetOpt,
    token_cache: Optional[bool] = typer.Option(None, "--token-cache/--no-token-cache",
                                               help="Cache token validations like keystonemiddleware."),
    processes: bool = typer.Option(False, "--processes",
                                   help="One process per service (needs a broker and a shared DB)."),
    compute_processes: int = typer.Option(1, "--compute-processes", min=1,
                                          help="With --processes: nova-compute processes sharing the hosts."),
    bottleneck: Optional[List[str]] = BottleneckOpt,
    fix: Optional[List[str]] = FixOpt,
) -> None:
    """Start the embedded cloud (every service, one process) until Ctrl-C or SIGTERM."""
    settings = _settings(config, profile, hosts, run_dir, scheduler, seed, bind, transport, db,
                         port_offset, token_cache=token_cache,
                         scheduler_opt=scheduler_opt)
    settings = apply_bottleneck_flags(settings, bottleneck, fix)
    if processes:
        from harness.cli.cmd_serve import run_processes

        return run_processes(settings, compute_processes=compute_processes)
    try:
        aio.run(_up(settings))
    except CloudStartError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))


async def _up(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cloud = EmbeddedCloud(settings)
    try:
        await cloud.start()
    except BaseException:
        await cloud.stop()
        raise
    table = Table(title=f"embedded cloud (run {cloud.run_id})", show_edge=False)
    table.add_column("service")
    table.add_column("listens on")
    for name, url in cloud.endpoints().items():
        table.add_row(name, url)
    table.add_row("nova-scheduler", f"{settings.transport_url} topic scheduler ({settings.scheduler})")
    table.add_row("nova-conductor", f"{settings.transport_url} topic conductor")
    n = len(cloud.service("nova-compute").hosts)  # type: ignore[attr-defined]
    table.add_row("nova-compute", f"{n} fake hosts, topics compute.<host>")
    out.print(table)
    out.print(f"auth URL      {cloud.auth_url}   (user demo / demo, project demo)")
    out.print(f"spans         {cloud.telemetry.spans_path if cloud.telemetry else 'tracing off'}")
    otlp = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    out.print(f"OTLP export   {otlp or 'off (set OTEL_EXPORTER_OTLP_ENDPOINT)'}")
    out.print(f"profile       {settings.profile}, seed {settings.seed}; Ctrl-C stops")
    aio.settle_gc()  # this process only serves from now on
    await stop.wait()
    console.print("stopping: flushing spans ...")
    counts = await cloud.stop()
    print_counts(counts)


@app.command()
def boot(
    count: int = typer.Option(10, "--count", "-N", min=1, max=100000, help="Servers to boot."),
    concurrency: int = typer.Option(5, "--concurrency", "-C", min=1, max=10000,
                                    help="Boots in flight at once."),
    auth_url: Optional[str] = typer.Option(
        None, "--auth-url", help="Boot on a running cloud (Keystone v3 URL); default: start an embedded one."),
    flavor: str = typer.Option("1", "--flavor", help="Flavor id or name."),
    image: Optional[str] = typer.Option(None, "--image", help="Image id (default: the cirros image)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the servers running (default: delete each)."),
    watch: str = typer.Option(
        "server", "--watch",
        help="How a boot learns it is ACTIVE: 'server' polls GET /servers/{id} per boot (as openstacksdk "
             "does), 'list' shares one GET /servers/detail?changes-since= per interval among all boots."),
    poll_interval: float = typer.Option(0.05, "--poll-interval", min=0.001, help="Seconds between polls."),
    config: Optional[Path] = ConfigOpt,
    profile: Optional[str] = ProfileOpt,
    hosts: Optional[int] = HostsOpt,
    run_dir: Optional[Path] = RunDirOpt,
    scheduler: Optional[str] = SchedulerOpt,
    scheduler_opt: Optional[List[str]] = SchedulerOptOpt,
    seed: Optional[int] = SeedOpt,
    port_offset: Optional[int] = PortOffsetOpt,
) -> None:
    """Boot servers, wait for each to be ACTIVE or ERROR, and print where the time went."""
    from harness.loadgen import BootOptions, fixed_count, run_load

    settings = _settings(config, profile, hosts, run_dir, scheduler, seed, None, None, None, port_offset,
                         scheduler_opt=scheduler_opt)
    if watch not in ("server", "list"):
        raise typer.BadParameter(f"{watch!r} is not 'server' or 'list'", param_hint="--watch")
    opts = BootOptions(flavor=flavor, image=image, delete=not keep, watch=watch, poll_interval=poll_interval)

    async def shape(booter, tick):
        return await fixed_count(booter, count=count, concurrency=concurrency, tick=tick)

    try:
        report = aio.run(run_load(settings, shape, opts=opts, auth_url=auth_url,
                                  progress_total=count, progress=True))
    except CloudStartError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))
    report.print(out)
    if report.counts:
        print_counts(report.counts)
    if report.failed:
        raise typer.Exit(1)
