"""One process per service on RabbitMQ and PostgreSQL (``harness up --processes``): concurrent
boots end ACTIVE, each boot is one trace across the processes with all its steps, spans also go
out over OTLP from every process, and a missing broker or DB is one clear message."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.client import OpenStackClient
from tests.cloud.test_boot_flow import assert_complete_boot
from tests.real.otlp_receiver import HttpReceiver
from tests.real.procs import harness_env, process_cloud
from tests.real.test_otlp_export import check_boot_export
from tests.spanfile import boot_traces, read_spans

BOOTS = 50


async def boot_all(auth_url: str, n: int, prefix: str, *, timeout: float = 180) -> list[dict]:
    """Create ``n`` servers at once and wait for each to leave BUILD."""
    async with OpenStackClient(auth_url, timeout=120) as client:
        await client.authenticate()
        image = next(i["id"] for i in await client.images() if i["name"].startswith("cirros"))
        servers = await asyncio.gather(*(client.create_server(f"{prefix}-{i}", image=image) for i in range(n)))
        return await asyncio.gather(*(client.wait_for_status(s["id"], timeout=timeout, interval=0.5)
                                      for s in servers))


@pytest.mark.slow
async def test_fifty_concurrent_boots_across_processes(tmp_path, amqp_url, db_url):
    with HttpReceiver() as receiver:
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        async with process_cloud(tmp_path, transport=amqp_url, db=db_url, hosts=8,
                                 compute_processes=2, env=otel) as cloud:
            finals = await boot_all(cloud.auth_url, BOOTS, "proc")
        assert cloud.proc.returncode == 0, cloud.text()
        received = receiver.spans()
    assert [f["status"] for f in finals] == ["ACTIVE"] * BOOTS, [f.get("fault") for f in finals]
    ids = [f["id"] for f in finals]

    # one trace per boot in the run's spans.jsonl, which every process appended to
    run = cloud.run_dir
    spans = read_spans(run / "spans.jsonl")
    boots = boot_traces(spans)
    assert set(boots) == set(ids)
    for trace in boots.values():
        assert_complete_boot(trace)
    settings = json.loads((run / "settings.json").read_text())
    assert settings["topology"] == "processes"
    # every process wrote its own log and reported its span counters, merged for the run
    logs = {p.stem for p in (run / "logs").glob("*.log")}
    assert logs == {"keystone", "glance-api", "neutron-server", "cinder-api", "nova-api",
                    "nova-scheduler", "nova-conductor", "nova-compute-1", "nova-compute-2"}
    counts = json.loads((run / "span_counts.json").read_text())
    assert sum(c["dropped"] for c in counts.values()) == 0, counts
    assert sum(c["exported"] for c in counts.values()) == len(spans)
    # both compute processes built servers (the scheduler spread them over all 8 hosts' queues)
    hosts = {next(s for s in t if s.step == 13).attrs["messaging.destination.name"] for t in boots.values()}
    assert any(h.endswith(("-1", "-3", "-5", "-7")) for h in hosts)
    assert any(h.endswith(("-2", "-4", "-6", "-8")) for h in hosts)

    # the same spans went out over OTLP from every process (the children inherit OTEL_*)
    check_boot_export(received, ids, run_id=settings["run_id"])
    assert {s.span_id for s in received} == {s.span_id for s in spans}


def _run_up(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "up", "--processes", "--run-dir", str(tmp_path / "run"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=harness_env())


def _text(res: subprocess.CompletedProcess) -> str:
    """The command's output with the console's line wrapping undone."""
    return " ".join((res.stdout + res.stderr).split())


def test_unreachable_broker_is_one_clear_message(tmp_path):
    res = _run_up(tmp_path, "--transport", "amqp://harness:secret@127.0.0.1:1/?connect_timeout=3")
    text = _text(res)
    assert res.returncode == 2, text
    assert "cannot reach RabbitMQ at 127.0.0.1:1/" in text
    assert "start-services.sh" in text
    assert "Traceback" not in text and "secret" not in text
    assert not (tmp_path / "run" / "logs").exists()  # nothing was started


def test_memory_transport_is_refused_with_the_fix(tmp_path):
    res = _run_up(tmp_path)
    text = _text(res)
    assert res.returncode == 2, text
    assert "needs a message broker" in text and "--transport amqp://" in text


def test_unreachable_db_is_one_clear_message(tmp_path, amqp_url):
    res = _run_up(tmp_path, "--transport", amqp_url,
                  "--db", "postgresql+asyncpg://harness:secret@127.0.0.1:1/nova")
    text = _text(res)
    assert res.returncode == 2, text
    assert "cannot use Nova's DB at postgresql+asyncpg://harness:***@127.0.0.1:1/nova" in text
    assert "Traceback" not in text and "secret" not in text


@pytest.mark.slow
async def test_a_dead_service_is_restarted(tmp_path, amqp_url, db_url):
    async with process_cloud(tmp_path, transport=amqp_url, db=db_url, hosts=2) as cloud:
        ready = cloud.run_dir / "ready" / "nova-scheduler.json"
        old = json.loads(ready.read_text())["pid"]
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:  # the supervisor notices, starts a new one, which writes a new ready file
            try:
                new = json.loads(ready.read_text())["pid"]
            except (OSError, ValueError):
                new = old
            if new != old:
                break
            assert time.monotonic() < deadline, cloud.text()
            await asyncio.sleep(0.2)
        finals = await boot_all(cloud.auth_url, 3, "again")
        assert [f["status"] for f in finals] == ["ACTIVE"] * 3, [f.get("fault") for f in finals]
    assert "nova-scheduler exited with status -9: restarting it (1/3)" in " ".join(cloud.text().split())
    assert cloud.proc.returncode == 0, cloud.text()
