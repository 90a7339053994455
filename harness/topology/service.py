"""One service in its own process (``harness serve SERVICE``).

The process runs a partial :class:`~harness.cloud.EmbeddedCloud` holding one service (and the
sub-services that share its state: cinder-api with cinder-scheduler and cinder-volume,
neutron-server with its agent). When it is up it writes a *ready file* (JSON: pid, endpoints,
hosts) the supervisor waits for; SIGTERM or SIGINT stop it, and stopping flushes its spans.

A supervisor hands its exact settings to its children in the environment variable
:data:`SETTINGS_ENV` (JSON), so every process of a run agrees on ports, hosts and URLs even when
the settings were built in code; otherwise the usual sources apply (flags, ``HARNESS_*``, TOML).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, Sequence

from harness import aio
from harness.cloud import EmbeddedCloud
from harness.config import Settings

log = logging.getLogger(__name__)

SETTINGS_ENV = "HARNESS_PROCESS_SETTINGS"


def settings_to_env(settings: Settings) -> str:
    """The settings as the JSON a child reads back with :func:`settings_from_env`."""
    return settings.model_dump_json()


def settings_from_env() -> Settings | None:
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        return None
    return Settings(**json.loads(raw))


def ready_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "ready" / f"{name}.json"


async def serve(
    settings: Settings,
    service: str,
    *,
    compute_hosts: Sequence[str] | None = None,
    run_id: str | None = None,
    ready_file: Path | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, dict[str, int]]:
    """Run ``service`` until ``stop`` is set (by default: SIGTERM or SIGINT); returns span counts.

    Raises :class:`~harness.cloud.CloudStartError` (or ``ValueError``) when it cannot start.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready_file is not None:  # a crashed run's file must not say "ready" before we are
        ready_file.unlink(missing_ok=True)
    cloud = EmbeddedCloud(settings, services=[service], compute_hosts=compute_hosts, run_id=run_id)
    try:
        await cloud.start()
    except BaseException:
        await cloud.stop()
        raise
    info: dict[str, Any] = {"pid": os.getpid(), "service": service, "run_id": cloud.run_id,
                            "endpoints": cloud.endpoints()}
    if "nova-compute" in cloud.selected:
        info["hosts"] = list(cloud.service("nova-compute").hosts)  # type: ignore[attr-defined]
    log.info("%s is up: %s", service, json.dumps(info))
    if ready_file is not None:
        ready_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(ready_file)  # the supervisor never reads half a file
    aio.settle_gc()  # this process only serves from now on
    try:
        await stop.wait()
    finally:
        log.info("%s: stopping, flushing spans", service)
        counts = await cloud.stop()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
            # the supervisor merges every process's counters into the run's span_counts.json
            ready_file.with_name(f"{ready_file.stem}.counts.json").write_text(json.dumps(counts))
    log.info("%s stopped: spans %s", service, json.dumps(counts))
    return counts
