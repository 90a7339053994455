"""``harness serve SERVICE`` (one service in this process) and the runner behind
``harness up --processes`` (every service as a supervised child process)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.table import Table

from harness import aio
from harness.cli import app
from harness.cli.common import (
    BindOpt, ConfigOpt, DbOpt, HostsOpt, PortOffsetOpt, ProfileOpt, RunDirOpt, SchedulerOpt,
    SchedulerOptOpt, SeedOpt, TransportOpt, build_settings, console, fail, out,
)
from harness.cloud import SERVICE_NAMES, CloudStartError
from harness.config import Settings

if TYPE_CHECKING:
    from harness.topology.supervisor import Supervisor

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"--log-level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(level=numeric, format=LOG_FORMAT)
    # aio-pika logs every reconnection attempt with a traceback; one line each is enough
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika.tools").setLevel(logging.CRITICAL)


@app.command()
def serve(
    service: str = typer.Argument(..., help=f"The service to run: {', '.join(SERVICE_NAMES)}."),
    host: Optional[List[str]] = typer.Option(
        None, "--host", help="nova-compute: serve this fake host (repeat; default: every host of the settings)."),
    shard: Optional[str] = typer.Option(
        None, "--shard", help="nova-compute: serve every N-th host from the I-th, as I/N (e.g. 2/4)."),
    host_prefix: Optional[str] = typer.Option(
        None, "--host-prefix", envvar="HARNESS_COMPUTE_HOST_PREFIX",
        help="nova-compute: name the hosts <prefix>-<n>; 'hostname' uses this machine's (container's) name."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run id shared by the processes of one run."),
    ready_file: Optional[Path] = typer.Option(
        None, "--ready-file", help="Write this JSON file when the service is up (for supervisors)."),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
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
) -> None:
    """Run one service of the cloud in this process (the others run elsewhere) until SIGTERM.

    It reaches the other services over HTTP (through Keystone's catalog) and the message broker,
    so --transport must be a broker (amqp://...) and nova-api, nova-scheduler and nova-conductor
    need a shared --db (PostgreSQL). cinder-api runs cinder-scheduler and cinder-volume with it,
    neutron-server its agent.
    """
    from harness.topology.hosts import select_hosts, with_host_prefix
    from harness.topology.service import serve as serve_one
    from harness.topology.service import settings_from_env

    if service not in SERVICE_NAMES:
        fail(f"unknown service {service!r}: choose among {', '.join(SERVICE_NAMES)}")
    _configure_logging(log_level)
    try:
        settings = settings_from_env()
    except ValueError as exc:
        fail(f"invalid settings from the supervisor: {exc}")
    if settings is None:
        settings = build_settings(
            config=config, port_offset=port_offset, profile=profile, hosts=hosts, run_dir=run_dir,
            scheduler=scheduler, seed=seed, bind_host=bind, transport_url=transport, db_url=db,
            scheduler_opt=scheduler_opt,
        )
    if settings.transport_url.startswith("memory://") and service != "keystone":
        fail(f"{service} in its own process needs a message broker: pass "
             "--transport amqp://user:pass@host:5672/ (or HARNESS_TRANSPORT_URL)")
    compute_hosts = None
    if service == "nova-compute":
        try:
            if host_prefix:
                settings = with_host_prefix(settings, host_prefix)
            compute_hosts = select_hosts(settings, host or (), shard)
        except ValueError as exc:
            fail(str(exc))
    elif host or shard or host_prefix:
        fail("--host, --shard and --host-prefix apply to nova-compute only")
    try:
        aio.run(serve_one(settings, service, compute_hosts=compute_hosts, run_id=run_id,
                          ready_file=ready_file))
    except (CloudStartError, ValueError) as exc:
        fail(f"{service}: {exc}")


# -- harness up --processes ---------------------------------------------------------------------

def run_processes(settings: Settings, *, compute_processes: int = 1, log_level: str = "INFO") -> None:
    """What ``harness up --processes`` runs: start the supervisor, print where things are, wait
    for Ctrl-C or SIGTERM, stop every child in order and print the span counters."""
    from harness.cli.cmd_cloud import print_counts
    from harness.topology.preflight import PreflightError
    from harness.topology.supervisor import Supervisor, SupervisorError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        sup = Supervisor(settings, compute_processes=compute_processes, log_level=log_level)
        counts = aio.run(_supervise(sup))
    except (PreflightError, SupervisorError, ValueError) as exc:
        fail(str(exc))
    print_counts(counts)


async def _supervise(sup: Supervisor) -> dict[str, dict[str, int]]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    start = asyncio.create_task(sup.start())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({start, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not start.done():  # Ctrl-C while starting
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        return await sup.stop()
    stopper.cancel()
    start.result()  # raises a start failure (the supervisor already stopped what it started)
    _print_processes(sup)
    await stop.wait()
    console.print("stopping: SIGTERM to every process, flushing spans ...")
    return await sup.stop()


def _print_processes(sup: Supervisor) -> None:
    s = sup.settings
    table = Table(title=f"cloud of processes (run {sup.run_id})", show_edge=False)
    for col in ("process", "pid", "serves", "log"):
        table.add_column(col)
    for c in sup.children:
        info = c.info
        serves = ", ".join(info.get("endpoints", {}).values())
        if "hosts" in info:
            serves = f"{len(info['hosts'])} fake hosts ({info['hosts'][0]} ..)"
        elif not serves:
            serves = c.service
        table.add_row(c.name, str(info.get("pid", "?")), serves, str(c.log_path))
    out.print(table)
    otlp = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    out.print(f"auth URL      {s.endpoint('keystone')}/v3   (user demo / demo, project demo)")
    out.print(f"transport     {s.transport_url.split('@')[-1]}   DB {sup.db_shown}")
    out.print(f"spans         {Path(s.run_dir) / 'spans.jsonl'}   (every process appends)")
    out.print(f"OTLP export   {otlp or 'off (set OTEL_EXPORTER_OTLP_ENDPOINT)'}")
    out.print(f"profile       {s.profile}, seed {s.seed}; Ctrl-C stops")
