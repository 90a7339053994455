"""Headless Locust runs against ``harness up`` in a subprocess: statistics, results and traces.

The main run is the issue's CI check: about 20 s, a few users, zero failures, boots counted, and
every boot Locust made has one complete trace (steps 3-29) whose root is Locust's client span.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.loadtests.conftest import run_locust
from tests.spanfile import by_trace, read_spans

pytestmark = pytest.mark.slow  # a cloud and Locust in subprocesses: tens of seconds

RUN_S = 20
CLIENT = "SPAN_KIND_CLIENT"  # OTLP/JSON enum name
API_NAMES = {("POST", "/servers"), ("GET", "/servers/[id]"), ("DELETE", "/servers/[id]"),
             ("POST", "/v3/auth/tokens"), ("BOOT", "boot to ACTIVE")}


def read_stats(prefix: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as fh:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(fh)}


def read_failures(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_failures.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_headless_run_has_no_failures_and_every_boot_is_one_trace_from_locust(cloud_process, tmp_path):
    cloud = cloud_process()
    prefix = tmp_path / "result"
    res = run_locust("--headless", "-u", "3", "-r", "3", "-t", f"{RUN_S}s", "--stop-timeout", "30",
                     "--host", cloud.auth_url, "--run-dir", str(cloud.run_dir), "--poll-interval", "0.1",
                     "--csv", str(prefix), "--html", str(tmp_path / "report.html"), "--only-summary",
                     cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    cloud.stop()

    # Locust's CSV is written once a second and not again at the end, so it may miss the last
    # boots; the run record (written when the run stops) has the final numbers.
    stats = read_stats(prefix)
    assert API_NAMES <= set(stats), sorted(stats)
    assert stats[("", "Aggregated")]["Failure Count"] == "0", read_failures(prefix)
    assert "boot to ACTIVE" in (tmp_path / "report.html").read_text()

    records = [json.loads(line) for line in (cloud.run_dir / "locust-runs.jsonl").read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    cloud_run_id = json.loads((cloud.run_dir / "settings.json").read_text())["run_id"]
    assert record["cloud"] == {"run_id": cloud_run_id, "scheduler": "filter_scheduler", "profile": "fast",
                               "hosts": 8}
    assert record["users"] == 3 and record["options"]["load_shape"] == "closed"
    assert "password" not in record["options"]
    final = {(e["method"], e["name"]): e for e in record["stats"]}
    assert API_NAMES <= set(final) and record["total"]["failures"] == 0
    boots = final[("BOOT", "boot to ACTIVE")]["requests"]
    assert boots >= 10, final
    assert final[("POST", "/servers")]["requests"] == boots

    spans = read_spans(cloud.run_dir / "spans.jsonl")
    traces = by_trace(spans)
    locust_boots = [s for s in spans if s.service == "locust" and s.name == "nova.boot_server"]
    assert len(locust_boots) == boots  # every boot Locust counted has its span, none interrupted
    for boot in locust_boots:
        assert boot.kind == CLIENT
        assert boot.attrs["harness.boot.outcome"] == "active"
        assert boot.attrs["harness.load.run.id"] == record["run_id"]
        assert boot.attrs["harness.run.id"] == cloud_run_id
        assert boot.attrs["harness.scheduler"] == "filter_scheduler"
        assert boot.attrs["harness.load.shape"] == "closed" and boot.attrs["harness.load.users"] == 3
        assert boot.attrs["locust.user.id"]
        trace = traces[boot.trace_id]
        roots = [s for s in trace if s.parent_id is None]
        assert [r.span_id for r in roots] == [boot.span_id], [r.name for r in roots]
        steps = {s.step for s in trace if s.step is not None}
        assert set(range(3, 30)) <= steps, f"trace {boot.trace_id} lacks steps {set(range(3, 30)) - steps}"
        step3 = [s for s in trace if s.step == 3]
        assert len(step3) == 1 and step3[0].parent_id == boot.span_id
        assert step3[0].attrs["openstack.instance.id"] == boot.attrs["openstack.instance.id"]
        spawn = max(s.end for s in trace if s.step == 29)
        assert boot.start <= step3[0].start and boot.end >= spawn  # the user waits for the whole boot
    deletes = [s for s in spans if s.service == "locust" and s.name == "nova.delete_server"]
    assert len(deletes) == boots  # each delete is a trace of its own, apart from its boot's
    assert {d.trace_id for d in deletes}.isdisjoint(b.trace_id for b in locust_boots)


TINY_CLOUD = """\
host_groups = [{count = 1, vcpus = 4, memory_mb = 1024, local_gb = 100}]
"""


def test_error_boots_are_failures_with_the_fault_and_token_per_boot_traces_auth(cloud_process, tmp_path):
    """m1.small (2 GB) fits no host of 1 GB: every boot goes to ERROR with Nova's fault; with
    --token-per-boot every boot's trace also holds the user's authentication (steps 1-2)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CLOUD)
    cloud = cloud_process(extra_args=("--config", str(config)))
    prefix = tmp_path / "result"
    res = run_locust("--headless", "-u", "2", "-r", "2", "-t", "6s", "--stop-timeout", "30",
                     "--host", cloud.auth_url, "--run-dir", str(cloud.run_dir), "--poll-interval", "0.1",
                     "--flavor", "m1.small", "--token-per-boot", "--csv", str(prefix), "--only-summary",
                     cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]  # Locust's exit code when requests failed
    cloud.stop()

    record = json.loads((cloud.run_dir / "locust-runs.jsonl").read_text())
    final = {(e["method"], e["name"]): e for e in record["stats"]}
    boots = final[("BOOT", "boot to ACTIVE")]["requests"]
    assert boots >= 2 and final[("BOOT", "boot to ACTIVE")]["failures"] == boots
    for name in (("POST", "/servers"), ("GET", "/servers/[id]"), ("DELETE", "/servers/[id]")):
        assert final[name]["failures"] == 0, name  # the API calls themselves all worked
    assert [e["name"] for e in record["errors"]] == ["boot to ACTIVE"], record["errors"]
    assert "No valid host was found" in record["errors"][0]["error"]
    failures = read_failures(prefix)  # Locust's own failures CSV says the same
    assert [f["Name"] for f in failures] == ["boot to ACTIVE"], failures
    assert "No valid host was found" in failures[0]["Error"]
    assert final[("POST", "/v3/auth/tokens")]["requests"] >= boots  # one per boot (+ each user's first)

    spans = read_spans(cloud.run_dir / "spans.jsonl")
    traces = by_trace(spans)
    locust_boots = [s for s in spans if s.service == "locust" and s.name == "nova.boot_server"]
    assert len(locust_boots) == boots
    for b in locust_boots:
        assert b.status.get("code") == "STATUS_CODE_ERROR"
        assert "No valid host was found" in b.status.get("message", "")
        assert b.attrs["harness.boot.authenticated"] is True
        steps = {s.step for s in traces[b.trace_id] if s.step is not None}
        assert {1, 2, 3} <= steps, steps
    # every server, even those in ERROR, was deleted
    assert final[("DELETE", "/servers/[id]")]["requests"] == boots


def test_an_image_the_cloud_does_not_have_is_a_clear_failure(cloud_process, tmp_path):
    cloud = cloud_process()
    res = run_locust("--headless", "-u", "1", "-r", "1", "-t", "3s", "--host", cloud.auth_url,
                     "--run-dir", str(cloud.run_dir), "--image", "windows-95", "--only-summary", cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    record = json.loads((cloud.run_dir / "locust-runs.jsonl").read_text())
    final = {(e["method"], e["name"]): e for e in record["stats"]}
    assert final[("BOOT", "boot to ACTIVE")]["failures"] >= 1 and ("POST", "/servers") not in final
    assert final[("GET", "/v2/images")]["failures"] == 0  # the listing worked; the name matched nothing
    error = record["errors"][0]["error"]
    assert "--image 'windows-95': no image of that id or name" in error and "cirros-0.6.2-x86_64-disk" in error


def test_with_locust_otel_the_spans_come_from_locusts_own_tracer_provider(cloud_process, tmp_path):
    """``--otel``: Locust sets up OpenTelemetry from the OTEL_* variables (here: spans to the console)
    and the harness adds the run's spans file to Locust's provider instead of making its own."""
    cloud = cloud_process()
    res = run_locust("--otel", "--headless", "-u", "1", "-r", "1", "-t", "3s", "--stop-timeout", "30",
                     "--host", cloud.auth_url, "--run-dir", str(cloud.run_dir), "--only-summary", cwd=tmp_path,
                     env={"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
                          "OTEL_LOGS_EXPORTER": "none"})
    assert res.returncode == 0, res.stderr[-3000:]
    cloud.stop()
    assert '"name": "nova.boot_server"' in res.stdout  # Locust's console exporter got them
    resources = [rs["resource"] for line in (cloud.run_dir / "spans.jsonl").read_text().splitlines()
                 for rs in json.loads(line)["resourceSpans"]]
    locust = [{a["key"]: a["value"].get("stringValue") for a in r["attributes"]} for r in resources
              if any(a["key"] == "service.name" and a["value"].get("stringValue") == "locust"
                     for a in r["attributes"])]
    assert locust and all(str(r.get("filename")).endswith("locustfile.py") for r in locust)  # Locust's resource
    boots = [s for s in read_spans(cloud.run_dir / "spans.jsonl")
             if s.service == "locust" and s.name == "nova.boot_server"]
    assert boots and all(s.attrs["harness.boot.outcome"] == "active" for s in boots)
