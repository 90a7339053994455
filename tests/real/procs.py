"""Run ``harness up --processes`` as a user would (a subprocess), for the end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from tests.conftest import free_ports

#: processes of a run with one nova-compute: keystone, 6 API/RPC services, nova-compute
SERVICES = 8


@dataclass
class ProcessCloud:
    proc: subprocess.Popen
    run_dir: Path
    auth_url: str
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def harness_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "OTEL_"))}
    env.update(extra or {})
    return env


@asynccontextmanager
async def process_cloud(
    tmp_path: Path, *, transport: str, db: str, hosts: int = 8, compute_processes: int = 1,
    env: dict[str, str] | None = None, ready_timeout: float = 240.0,
) -> AsyncIterator[ProcessCloud]:
    """Start the cloud of processes on free ports; stop it with SIGTERM (as Ctrl-C would)."""
    ports = free_ports()
    run_dir = tmp_path / "run"
    out = tmp_path / "up.out"
    port_env = {f"HARNESS_PORTS__{k.upper()}": str(v) for k, v in ports.model_dump().items()}
    cmd = [sys.executable, "-m", "harness", "up", "--processes", "--transport", transport, "--db", db,
           "--run-dir", str(run_dir), "--hosts", str(hosts), "--profile", "fast", "--seed", "7",
           "--compute-processes", str(compute_processes)]
    with out.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=harness_env({**port_env, **(env or {})}))
    cloud = ProcessCloud(proc, run_dir, f"http://127.0.0.1:{ports.keystone}/v3", out)
    try:
        expected = SERVICES - 1 + compute_processes
        deadline = time.monotonic() + ready_timeout
        ready = run_dir / "ready"
        while not (ready.exists() and len(list(ready.glob("*.json"))) >= expected
                   and "Ctrl-C stops" in cloud.text()):
            if proc.poll() is not None:
                raise AssertionError(f"harness up --processes exited with {proc.returncode}:\n{cloud.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not up within {ready_timeout} s:\n{cloud.text()}")
            await asyncio.sleep(0.2)
        yield cloud
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(proc.wait, 120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"harness up --processes did not stop on Ctrl-C:\n{cloud.text()}")
