"""Options shared by every command that starts a cloud, and the settings they build."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from harness.config import Settings, load_settings

console = Console(stderr=True)
out = Console()

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML settings file (also HARNESS_CONFIG).")
ProfileOpt = typer.Option(None, "--profile", "-p", help="Latency profile: zero, fast, realistic or a .toml path.")
HostsOpt = typer.Option(None, "--hosts", "-n", help="Number of fake compute hosts (default 8).", min=1)
RunDirOpt = typer.Option(None, "--run-dir", help="Where spans.jsonl and settings.json go.")
SchedulerOpt = typer.Option(None, "--scheduler", "-s", help="Scheduling algorithm (see `harness schedulers`).")
SchedulerOptOpt = typer.Option(
    None, "--scheduler-opt", "-O", help="A scheduler option key=value (repeat; see `harness schedulers NAME`)."
)
SeedOpt = typer.Option(None, "--seed", help="Seed of every random generator.")
BindOpt = typer.Option(None, "--bind", help="Address to listen on (default 127.0.0.1).")
TransportOpt = typer.Option(None, "--transport", help="Messaging URL: memory:// or amqp://user:pass@host:port/.")
DbOpt = typer.Option(None, "--db", help="Nova DB URL (default: SQLite file in the run dir).")
PortOffsetOpt = typer.Option(
    None, "--port-offset", help="Add this to every default port (run two clouds side by side)."
)


def parse_scheduler_opts(pairs: Optional[list[str]]) -> dict[str, str]:
    """``["ram_weight_multiplier=-1", ...]`` -> a dict (values stay text; each option parses its own)."""
    opts: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--scheduler-opt {pair!r}: use key=value (see `harness schedulers NAME` for the keys)")
        opts[key.strip()] = value.strip()
    return opts


def build_settings(
    *, config: Optional[Path] = None, port_offset: Optional[int] = None,
    scheduler_opt: Optional[list[str]] = None, **flags: Any
) -> Settings:
    """Settings from flags, env and file; a bad value ends the command with a clear message.

    ``scheduler_opt`` (``--scheduler-opt key=value``) overrides single keys of the settings'
    ``scheduler_options``; the algorithm and its options are checked here, before any cloud starts.
    """
    extra_opts = parse_scheduler_opts(scheduler_opt)
    try:
        settings = load_settings(config, **flags)
    except FileNotFoundError as exc:
        fail(str(exc))
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        fail(f"invalid settings: {errors}")
    if port_offset:
        ports = settings.ports.model_copy(update={
            k: v + port_offset for k, v in settings.ports.model_dump().items()
        })
        settings = settings.model_copy(update={"ports": ports})
    if extra_opts:
        settings = settings.model_copy(update={"scheduler_options": {**settings.scheduler_options, **extra_opts}})
    from harness.scheduling import make_scheduler

    try:
        make_scheduler(settings.scheduler, seed=settings.seed, options=settings.scheduler_options)
    except ValueError as exc:
        fail(str(exc))
    return settings


def fail(message: str, code: int = 2) -> "typer.Exit":
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)
