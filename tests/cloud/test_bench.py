"""``harness bench`` end to end: a short experiment, resumable, SLAs that fail loudly."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from harness.experiment.sla import SlaSpec, check
from harness.experiment.spec import ExperimentError, load_experiment

HARNESS = [sys.executable, "-m", "harness.cli"]

EXPERIMENT = """
name = "ci"
duration_s = 3
hosts = 4
profiles = ["fast"]
schedulers = ["filter_scheduler", "pack"]
loads = [{users = 3}]
[boot]
poll_interval_s = 0.05
[sla]
max_failure_rate_pct = 0
"""


def _bench(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess:
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    return subprocess.run([*HARNESS, "bench", str(exp), "--out", str(tmp_path / "out"), *extra],
                          capture_output=True, text=True, timeout=300, env={"COLUMNS": "160", **_env()})


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env


def test_short_experiment_end_to_end_and_resume(tmp_path):
    res = _bench(tmp_path, EXPERIMENT)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-2000:]
    out = tmp_path / "out"
    cells = ["filter_scheduler__u3__fast", "pack__u3__fast"]
    for cell in cells:
        d = out / cell
        for name in ("settings.json", "spans.jsonl", "results.csv", "boots.csv", "summary.json"):
            assert (d / name).is_file(), f"{cell}/{name}"
        summary = json.loads((d / "summary.json").read_text())
        assert summary["active"] > 0 and summary["error"] == 0 and summary["sla_ok"]
        assert json.loads((d / "settings.json").read_text())["settings"]["scheduler"] == cell.split("__")[0]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["cell"] for r in rows] == cells
    assert (out / "report.html").is_file() and "report.html" in res.stdout
    assert ET.parse(out / "junit.xml").getroot().get("failures") == "0"
    # a second run keeps the finished cells
    before = (out / cells[0] / "summary.json").stat().st_mtime_ns
    again = _bench(tmp_path, EXPERIMENT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / cells[0] / "summary.json").stat().st_mtime_ns == before
    assert "done (kept)" in again.stderr


def test_failing_sla_exits_nonzero_and_names_it(tmp_path):
    text = EXPERIMENT.replace('schedulers = ["filter_scheduler", "pack"]', 'schedulers = ["spread"]') + "max_p95_s = 0.001\n"
    res = _bench(tmp_path, text)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "SLA failed in cell spread__u3__fast: max_p95_s" in " ".join(res.stderr.split())
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert root.get("failures") == "1"


def test_bad_experiment_files_are_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('loads = [{users = 2, rate = 3}]\n')
    with pytest.raises(ExperimentError, match="either"):
        load_experiment(bad)
    bad.write_text('schedulers = []\n')
    with pytest.raises(ExperimentError, match="schedulers"):
        load_experiment(bad)
    bad.write_text('duration_s = "long"\n')
    with pytest.raises(ExperimentError, match="duration_s"):
        load_experiment(bad)
    res = subprocess.run([*HARNESS, "bench", str(tmp_path / "missing.toml")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "missing.toml" in res.stderr and "Traceback" not in res.stderr


def test_sla_checks_like_rally():
    spec = SlaSpec(max_seconds_per_boot=1.0, max_p95_s=0.5, max_failure_rate_pct=10, min_throughput=2,
                   max_mean_phase_ms={"scheduling": 50}, outliers={"max": 0, "sigmas": 2, "min_boots": 5})
    lat = [0.2, 0.21, 0.19, 0.2, 0.22, 0.2, 0.18, 0.2, 0.21, 1.5]
    res = {r.criterion: r for r in check(spec, "c", latencies_s=lat, boots=11, failed=1, throughput=3.0,
                                         phase_means_ms={"scheduling": 80.0})}
    assert not res["max_seconds_per_boot"].success and "1.500" in res["max_seconds_per_boot"].detail
    assert res["max_p95_s"].success is False
    assert res["max_failure_rate_pct"].success  # 1 of 11 = 9.1 %
    assert res["min_throughput"].success
    assert not res["max_mean_phase_ms.scheduling"].success
    assert not res["outliers"].success


def test_sampled_traces_keep_every_boot_in_the_results(tmp_path):
    """With OTEL_TRACES_SAMPLER dropping traces, every boot Locust ran is still a result (from the
    boot log), and only the kept ones have a trace. Before, results came from the traces alone:
    a 0.25 ratio reported 112 boots where Locust ran 467."""
    text = EXPERIMENT.replace('schedulers = ["filter_scheduler", "pack"]', 'schedulers = ["spread"]')
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    env = {"COLUMNS": "160", **_env(), "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
           "OTEL_TRACES_SAMPLER_ARG": "0.3"}
    res = subprocess.run([*HARNESS, "bench", str(exp), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-2000:]
    cell = tmp_path / "out" / "spread__u3__fast"
    summary = json.loads((cell / "summary.json").read_text())
    stats = {r["Name"]: r for r in csv.DictReader((cell / "locust_stats.csv").open())}
    ran = int(stats["boot to ACTIVE"]["Request Count"])
    assert ran >= 10 and summary["boots"] == ran and summary["active"] == ran
    log = [json.loads(line) for line in (cell / "locust-boots.jsonl").read_text().splitlines()]
    kept = sum(1 for r in log if r["sampled"])
    assert 0 < kept < ran  # about 30 % of the traces kept
    traced = 0
    for line in (cell / "spans.jsonl").read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                traced += sum(1 for s in ss["spans"] if s["name"] == "nova.boot_server")
    assert traced == kept
