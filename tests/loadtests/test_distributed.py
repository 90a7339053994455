"""A distributed Locust run: one master and two workers against ``harness up`` in a subprocess.

The master runs the shape and collects the statistics; the workers run the users and write their
spans. The run completes, both workers booted servers, and the master's combined statistics count
exactly the boots the two workers made (read back from their spans), all under one run id.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from tests.conftest import free_port
from tests.loadtests.conftest import locust_cmd, locust_env
from tests.spanfile import read_spans

pytestmark = pytest.mark.slow  # a cloud and Locust in subprocesses: tens of seconds

USERS = 4
RUN_S = 15


def test_master_and_two_workers_report_combined_statistics(cloud_process, tmp_path):
    cloud = cloud_process()
    port = free_port()
    common = ("--run-dir", str(cloud.run_dir))  # workers write their spans into the run directory
    master = subprocess.Popen(
        locust_cmd("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                   "--expect-workers", "2", "--expect-workers-max-wait", "60", "--headless",
                   "-u", str(USERS), "-r", str(USERS), "-t", f"{RUN_S}s", "--stop-timeout", "30",
                   "--host", cloud.auth_url, "--poll-interval", "0.1", "--csv", str(tmp_path / "result"),
                   "--only-summary", *common),
        cwd=tmp_path, env=locust_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [
        subprocess.Popen(locust_cmd("--worker", "--master-host", "127.0.0.1", "--master-port", str(port), *common),
                         cwd=tmp_path, env=locust_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
        for _ in range(2)
    ]
    try:
        master_out, _ = master.communicate(timeout=150)
        worker_outs = [w.communicate(timeout=60)[0] for w in workers]
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert master.returncode == 0, master_out[-4000:]
    assert all(w.returncode == 0 for w in workers), [o[-2000:] for o in worker_outs]
    cloud.stop()

    records = [json.loads(line) for line in (cloud.run_dir / "locust-runs.jsonl").read_text().splitlines()]
    assert len(records) == 1  # written by the master only
    record = records[0]
    stats = {(e["method"], e["name"]): e for e in record["stats"]}
    assert record["total"]["failures"] == 0 and record["errors"] == []
    boots = stats[("BOOT", "boot to ACTIVE")]["requests"]
    assert boots >= 10 and stats[("POST", "/servers")]["requests"] == boots

    spans = read_spans(cloud.run_dir / "spans.jsonl")
    locust_boots = [s for s in spans if s.service == "locust" and s.name == "nova.boot_server"]
    per_worker = Counter(s.attrs["locust.worker.index"] for s in locust_boots)
    assert set(per_worker) == {0, 1}, per_worker  # both workers booted servers
    assert sum(per_worker.values()) == boots  # the master's numbers are the two workers' together
    assert {s.attrs["harness.load.run.id"] for s in locust_boots} == {record["run_id"]}
    assert {s.attrs["harness.load.users"] for s in locust_boots} == {USERS}
    assert all(s.attrs["harness.boot.outcome"] == "active" for s in locust_boots)
