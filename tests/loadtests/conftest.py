"""Fixtures of the Locust tests: a cloud in a subprocess, Locust in subprocesses, the spans they wrote.

Spans are read with :mod:`tests.spanfile`. Locust runs on gevent and the cloud on asyncio, so neither may run inside the other (nor inside
pytest's process): the cloud is ``harness up`` in a subprocess on free loopback ports, stopped with
SIGTERM (which flushes every span into ``<run_dir>/spans.jsonl``), and Locust is the ``locust``
command, exactly as a user runs both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import free_port, free_ports

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
START_TIMEOUT_S = 60.0


@dataclass
class CloudProcess:
    """``harness up`` running in a subprocess; :meth:`stop` ends it and returns its output."""

    run_dir: Path
    ports: Any
    proc: subprocess.Popen
    log_path: Path
    output: str = field(default="", init=False)

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.keystone}/v3"

    def stop(self, timeout: float = 60.0) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.output = self.log_path.read_text(errors="replace")
        return self.output


def start_cloud(run_dir: Path, *, profile: str = "fast", hosts: int = 8, seed: int = 1234,
                extra_args: tuple[str, ...] = ()) -> CloudProcess:
    """Start ``harness up`` on free ports and wait until Keystone answers ``GET /v3``."""
    ports = free_ports()
    env = {**os.environ,
           "HARNESS_PORTS__KEYSTONE": str(ports.keystone), "HARNESS_PORTS__NOVA": str(ports.nova),
           "HARNESS_PORTS__GLANCE": str(ports.glance), "HARNESS_PORTS__NEUTRON": str(ports.neutron),
           "HARNESS_PORTS__CINDER": str(ports.cinder)}
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.parent / f"{run_dir.name}-cloud.log"
    cmd = [sys.executable, "-c", "from harness.cli import main; main()", "up", "--run-dir", str(run_dir),
           "--profile", profile, "--hosts", str(hosts), "--seed", str(seed), *extra_args]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=run_dir.parent)
    cloud = CloudProcess(run_dir=run_dir, ports=ports, proc=proc, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"harness up exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{cloud.auth_url}", timeout=2) as resp:
                if resp.status == 200:
                    return cloud
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            cloud.stop()
            raise RuntimeError(f"harness up did not answer within {START_TIMEOUT_S}s:\n{cloud.output}")
        time.sleep(0.1)


@pytest.fixture
def cloud_process(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``cloud = cloud_process()`` starts ``harness up`` (stopped at teardown if still up)."""
    clouds: list[CloudProcess] = []

    def factory(name: str = "run", **kw: Any) -> CloudProcess:
        cloud = start_cloud(tmp_path / name, **kw)
        clouds.append(cloud)
        return cloud

    yield factory
    for cloud in clouds:
        cloud.stop()


def locust_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


def locust_env(**extra: str) -> dict[str, str]:
    """The environment of a Locust subprocess: no OTLP export, no colour, nothing from the caller's
    ``LOCUST_*`` variables (they would change the options under test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "OTEL_", "HARNESS_"))}
    env.update({"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **extra})
    return env


def run_locust(*args: str, cwd: Path, timeout: float = 120.0,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``locust`` to completion (headless runs end by themselves); ``env`` adds variables."""
    return subprocess.run(locust_cmd(*args), cwd=cwd, env=locust_env(**(env or {})), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def port():
    """``port()``: a free loopback port."""
    return free_port
