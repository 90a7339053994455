"""``harness up --processes``: every service as a supervised child process on loopback.

Start order follows the dependencies: Keystone first (every service validates tokens with it),
then the API services, nova-scheduler and nova-conductor, then the nova-compute processes (they
register their hosts through nova-conductor). Each child is ``python -m harness serve NAME`` with
the supervisor's exact settings (:data:`~harness.topology.service.SETTINGS_ENV`) and run id, logs to
``<run_dir>/logs/<name>.log`` and appends its spans to the run's one ``spans.jsonl``.

A child that dies while the cloud runs is restarted (up to :data:`MAX_RESTARTS` times, its log says
why). Stopping sends SIGTERM in reverse start order, so callers stop before what they call; each
child flushes its spans and reports its span counters, merged into ``span_counts.json``. A child
that does not stop within the grace period is killed (and the report says its spans may be lost).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cloud import SERVICE_NAMES
from harness.config import Settings
from harness.topology.hosts import select_hosts
from harness.topology.preflight import check_broker, prepare_db
from harness.topology.service import SETTINGS_ENV, ready_path, settings_to_env

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
READY_TIMEOUT_S = 180.0
STOP_GRACE_S = 30.0
#: start stages: everything of a stage starts together once the stage before it is ready
STAGES: tuple[tuple[str, ...], ...] = (
    ("keystone",),
    ("glance-api", "neutron-server", "cinder-api", "nova-conductor", "nova-scheduler", "nova-api"),
    ("nova-compute",),
)
assert sorted(s for stage in STAGES for s in stage) == sorted(SERVICE_NAMES)


class SupervisorError(RuntimeError):
    """A child could not start; the message names it and quotes the end of its log."""


@dataclass
class Child:
    """One supervised process: which service, its command line and its life so far."""

    name: str  # unique per process: "nova-compute-2"
    service: str  # what it serves: "nova-compute"
    args: list[str]
    log_path: Path
    ready_file: Path
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def counts_file(self) -> Path:
        return self.ready_file.with_name(f"{self.name}.counts.json")

    def log_tail(self, lines: int = 15) -> str:
        try:
            with self.log_path.open(errors="replace") as fh:
                return "".join(deque(fh, maxlen=lines)).rstrip()
        except OSError:
            return "(no log)"


class Supervisor:
    """Start, watch and stop the processes of one run (see the module docstring)."""

    def __init__(self, settings: Settings, *, compute_processes: int = 1, run_id: str | None = None,
                 python: str = sys.executable, log_level: str = "INFO") -> None:
        if compute_processes < 1:
            raise ValueError("--compute-processes must be at least 1")
        self.settings = settings
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.run_dir = Path(settings.run_dir)
        self.python, self.log_level = python, log_level
        self.compute_processes = compute_processes
        self.children: list[Child] = []
        self._stages: list[list[Child]] = []
        self._stopping = False
        self._watchers: list[asyncio.Task] = []
        self.db_shown = ""

    # -- start --------------------------------------------------------------------------------
    def _plan(self) -> None:
        logs = self.run_dir / "logs"
        for stage in STAGES:
            group: list[Child] = []
            for service in stage:
                shards = self.compute_processes if service == "nova-compute" else 1
                for i in range(1, shards + 1):
                    name = service if shards == 1 else f"{service}-{i}"
                    ready = ready_path(self.run_dir, name)
                    args = [self.python, "-m", "harness", "serve", service, "--run-id", self.run_id,
                            "--ready-file", str(ready), "--log-level", self.log_level]
                    if shards > 1:
                        args += ["--shard", f"{i}/{shards}"]
                    group.append(Child(name, service, args, logs / f"{name}.log", ready))
            self._stages.append(group)
            self.children.extend(group)

    async def start(self) -> None:
        """Check broker and DB, then start every stage; raises a clear error if something fails."""
        s = self.settings
        if self.compute_processes > 1:  # every shard must get hosts
            select_hosts(s, shard=f"{self.compute_processes}/{self.compute_processes}")
        await check_broker(s)
        self.run_dir.mkdir(parents=True, exist_ok=True)  # an SQLite DB's file goes there
        self.db_shown = await prepare_db(s)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        for stale in (self.run_dir / "ready").glob("*") if (self.run_dir / "ready").exists() else ():
            stale.unlink()
        (self.run_dir / "settings.json").write_text(json.dumps({
            "run_id": self.run_id, "started_at": time.time(), "topology": "processes",
            "compute_processes": self.compute_processes, "settings": s.dump()}, indent=2))
        self._plan()
        try:
            for group in self._stages:
                for child in group:
                    await self._spawn(child)
                await asyncio.gather(*(self._wait_ready(c) for c in group))
        except BaseException:
            await self.stop()
            raise
        self._watchers = [asyncio.create_task(self._watch(c), name=f"watch-{c.name}")
                          for c in self.children]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[SETTINGS_ENV] = settings_to_env(self.settings)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    async def _spawn(self, child: Child) -> None:
        child.ready_file.unlink(missing_ok=True)
        with child.log_path.open("ab") as logf:
            logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start {child.name} "
                       f"(restart {child.restarts}) ===\n".encode())
            logf.flush()
            # A session of its own: Ctrl-C reaches the supervisor only, which stops children in order.
            child.proc = await asyncio.create_subprocess_exec(
                *child.args, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=asyncio.subprocess.STDOUT,
                env=self._env(), start_new_session=True,
            )
        log.info("started %s (pid %d)", child.name, child.proc.pid)

    async def _wait_ready(self, child: Child) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert child.proc is not None
        while not child.ready_file.exists():
            if child.proc.returncode is not None:
                raise SupervisorError(
                    f"{child.name} exited with status {child.proc.returncode} while starting; "
                    f"the end of {child.log_path}:\n{child.log_tail()}")
            if time.monotonic() > deadline:
                raise SupervisorError(f"{child.name} was not ready within {READY_TIMEOUT_S:g} s; "
                                      f"the end of {child.log_path}:\n{child.log_tail()}")
            await asyncio.sleep(0.1)
        child.info = json.loads(child.ready_file.read_text())

    async def _watch(self, child: Child) -> None:
        """Restart a child that dies while the cloud runs (not when we stop it)."""
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            if self._stopping:
                return
            if child.restarts >= MAX_RESTARTS:
                log.error("%s exited with status %s and was restarted %d times already: giving up; "
                          "see %s", child.name, code, child.restarts, child.log_path)
                return
            child.restarts += 1
            log.warning("%s exited with status %s: restarting it (%d/%d); see %s",
                        child.name, code, child.restarts, MAX_RESTARTS, child.log_path)
            await asyncio.sleep(1.0)
            if self._stopping:
                return
            await self._spawn(child)

    # -- run and stop -------------------------------------------------------------------------
    def alive(self) -> dict[str, bool]:
        return {c.name: c.proc is not None and c.proc.returncode is None for c in self.children}

    async def stop(self) -> dict[str, dict[str, int]]:
        """SIGTERM in reverse start order, wait, kill stragglers; merge and write span counts."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        killed: list[str] = []
        for group in reversed(self._stages):
            running = [c for c in group if c.proc is not None and c.proc.returncode is None]
            for c in running:
                _signal(c, signal.SIGTERM)
            for c in running:
                assert c.proc is not None
                try:
                    await asyncio.wait_for(c.proc.wait(), STOP_GRACE_S)
                except asyncio.TimeoutError:
                    _signal(c, signal.SIGKILL)
                    await c.proc.wait()
                    killed.append(c.name)
        if killed:
            log.error("killed after %g s without stopping (their last spans may be lost): %s",
                      STOP_GRACE_S, ", ".join(killed))
        return self._merge_counts()

    def _merge_counts(self) -> dict[str, dict[str, int]]:
        merged: dict[str, dict[str, int]] = {}
        for c in self.children:
            try:
                counts = json.loads(c.counts_file.read_text())
            except (OSError, ValueError):
                continue
            for svc, row in counts.items():
                into = merged.setdefault(svc, {k: 0 for k in row})
                for k, v in row.items():
                    into[k] = into.get(k, 0) + v
        if merged:
            (self.run_dir / "span_counts.json").write_text(json.dumps(merged, indent=2))
        return merged


def _signal(child: Child, sig: int) -> None:
    try:
        assert child.proc is not None
        child.proc.send_signal(sig)
    except ProcessLookupError:
        pass
