"""Drives a cell with Locust: ``locust --headless`` in a subprocess against the cell's cloud.

The cloud runs in this process's event loop; Locust (gevent) runs in its own process, as users
would run it, on the other core. Locust writes its CSVs and HTML report into the cell directory
and appends its spans (one ``nova.boot_server`` CLIENT span a boot, ``service.name=locust``) to the
cell's ``spans.jsonl``, so each boot is one trace from the user to the hypervisor. The per-boot
results are read from the boot log the Locust processes write beside them (every finished boot,
its trace kept or not: :mod:`loadtests.boot_log`); the spans are the fallback.
"""

from __future__ import annotations

import asyncio
import math
import signal
import sys
from pathlib import Path
from typing import Any

import loadtests
from harness.client import BootResult
from harness.experiment.spec import Cell, Experiment

LOCUSTFILE = Path(loadtests.__file__).resolve().parent / "locustfile.py"


class LocustFailed(RuntimeError):
    pass


def locust_command(exp: Experiment, cell: Cell, *, auth_url: str, cell_dir: Path) -> list[str]:
    load = cell.load
    if load.users is not None:
        users, shape = load.users, ["--load-shape", "closed"]
    else:
        # Open loop: -u independent Poisson streams that add up to the rate; each stream runs its
        # boots in their own greenlets (up to --max-in-flight), so users do not bound the load.
        rate = float(load.rate or 1.0)
        users = max(1, min(8, math.ceil(rate)))
        shape = ["--load-shape", "open", "--arrival-rate", f"{rate:g}", "--load-seed", str(exp.seed),
                 "--max-in-flight", "1000"]
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(max(users, 1)), "-t", f"{exp.duration_s:g}s", "--stop-timeout", "60",
        "--host", auth_url, "--csv", str(cell_dir / "locust"), "--html", str(cell_dir / "locust.html"),
        "--run-dir", str(cell_dir), "--poll-interval", f"{exp.boot.poll_interval_s:g}",
        "--boot-timeout", f"{exp.boot.boot_timeout_s:g}", "--flavor", exp.boot.flavor,
        *(["--image", exp.boot.image] if exp.boot.image else []),
        "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING",
        *shape,
    ]


async def run_locust(exp: Experiment, cell: Cell, *, auth_url: str, cell_dir: Path) -> float:
    """Run Locust for the cell; returns its wall time. Its output goes to ``locust.log``."""
    cmd = locust_command(exp, cell, auth_url=auth_url, cell_dir=cell_dir)
    log = (cell_dir / "locust.log").open("w")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=asyncio.subprocess.STDOUT,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        code = await asyncio.wait_for(proc.wait(), exp.duration_s + exp.boot.boot_timeout_s + 120)
    except (asyncio.CancelledError, asyncio.TimeoutError):
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # Locust stops its users and writes its results
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except asyncio.TimeoutError:
                proc.kill()
        raise
    finally:
        log.close()
    if code != 0:
        tail = (cell_dir / "locust.log").read_text()[-2000:]
        raise LocustFailed(f"locust exited with {code} in cell {cell.name}:\n{tail}")
    return loop.time() - t0


def results_from_boot_log(path: Path) -> list[BootResult]:
    """One :class:`BootResult` per line of the Locust processes' boot log
    (:mod:`loadtests.boot_log`): every finished boot, whether its trace was kept or not."""
    from loadtests.boot_log import read_boot_log

    return [_result(r["outcome"], r.get("server_id"), r.get("trace_id"), int(r["start_ns"]),
                    int(r["end_ns"]), r.get("message")) for r in read_boot_log(path)]


def _result(outcome: str, server: str | None, trace_id: str | None, start: int, end: int,
            message: str | None) -> BootResult:
    """A boot's result from its outcome and wall-clock start and end (ns)."""
    ok = outcome == "active"
    return BootResult(
        server_id=server, status="ACTIVE" if ok else "ERROR",
        fault=None if ok else (message or "boot failed"), started=start / 1e9,
        accepted_s=float("nan"), active_s=(end - start) / 1e9 if ok else None, trace_id=trace_id,
    )


def results_from_spans(spans: Any) -> list[BootResult]:
    """One :class:`BootResult` per Locust ``nova.boot_server`` span (the user's view of a boot)."""
    boots = spans[(spans["service"] == "locust") & (spans["name"] == "nova.boot_server")]

    def column(key: str) -> list[Any]:
        if key not in boots.columns:
            return [None] * len(boots)
        return [None if v is None or v != v else v for v in boots[key].astype(object).tolist()]

    out: list[BootResult] = []
    for outcome, server, trace_id, start, end, message in zip(
        column("harness.boot.outcome"), column("openstack.instance.id"), boots["trace_id"].tolist(),
        boots["start_ns"].tolist(), boots["end_ns"].tolist(), column("status_message"),
    ):
        if outcome == "interrupted":
            continue  # the run ended mid-boot: not a result
        out.append(_result(outcome, server, trace_id, start, end, message))
    return out
