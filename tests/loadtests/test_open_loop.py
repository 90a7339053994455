"""The open-loop shape: boots arrive as a Poisson process at the target rate, whatever the cloud does.

Over the steady part of a bounded run: the times Locust started its boots (each boot span starts at
the boot's intended time and says how late it really started) have exponential inter-arrival times
of the target rate (a Kolmogorov-Smirnov test at a loose threshold), and the cloud received every
one of them (nova-api's step-3 ``POST /servers`` spans) at a mean rate within 10% of the target.

The arrival times are seeded (``--load-seed``), so the run's count of arrivals is the same every
time; ``tests/loadtests/test_units.py`` checks the generator itself over many more draws.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from tests.loadtests.conftest import run_locust
from tests.spanfile import read_spans

pytestmark = pytest.mark.slow  # a cloud and Locust in subprocesses: tens of seconds

RATE = 8.0  # boots per second
RUN_S = 25
WARMUP_S = 3.0  # users spawn in the first second; skip until every stream runs
USERS = 8  # independent arrival streams of 1 boot/s each; every boot runs in a greenlet of its own
KS_P_MIN = 0.01


def test_open_loop_arrivals_are_poisson_at_the_target_rate(cloud_process, tmp_path):
    cloud = cloud_process()
    res = run_locust("--headless", "-u", str(USERS), "-r", str(USERS), "-t", f"{RUN_S}s",
                     "--stop-timeout", "30", "--host", cloud.auth_url, "--run-dir", str(cloud.run_dir),
                     "--load-shape", "open", "--arrival-rate", str(RATE), "--load-seed", "42",
                     "--poll-interval", "0.2", "--only-summary", cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    cloud.stop()

    record = json.loads((cloud.run_dir / "locust-runs.jsonl").read_text())
    assert record["options"]["load_shape"] == "open" and record["options"]["arrival_rate"] == RATE
    spans = read_spans(cloud.run_dir / "spans.jsonl")
    boots = [s for s in spans if s.service == "locust" and s.name == "nova.boot_server"]
    assert all(b.attrs["harness.load.arrival_rate"] == RATE and b.attrs["harness.load.users"] == USERS
               for b in boots)
    lags = np.array([b.attrs["harness.load.schedule_lag_ms"] for b in boots])
    assert (lags >= 0).all()

    # the shape's arrivals: when Locust actually started each boot (its intended time + the lag)
    started = np.sort([b.start / 1e9 + b.attrs["harness.load.schedule_lag_ms"] / 1e3 for b in boots])
    steady = started[started >= started[0] + WARMUP_S]
    gaps = np.diff(steady)
    ks = stats.kstest(gaps, "expon", args=(0, 1 / RATE))
    # ... and the cloud saw each of them, at the same mean rate
    at_cloud = np.sort([s.start for s in spans if s.service == "nova-api" and s.step == 3]) / 1e9
    assert len(at_cloud) == len(boots)
    at_cloud = at_cloud[at_cloud >= started[0] + WARMUP_S]
    rate = (len(at_cloud) - 1) / (at_cloud[-1] - at_cloud[0])
    print(f"open loop: {len(steady)} arrivals, {rate:.3f}/s (target {RATE}), KS {ks}, "
          f"start lag p50/p99 {np.percentile(lags, 50):.1f}/{np.percentile(lags, 99):.1f} ms")
    assert ks.pvalue > KS_P_MIN, f"inter-arrival times are not exponential: {ks}"
    assert abs(rate - RATE) / RATE < 0.10, f"{len(at_cloud)} arrivals at {rate:.2f}/s, target {RATE}/s"
