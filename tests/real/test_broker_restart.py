"""RabbitMQ stopped and started under a running cloud of processes: boots in flight end cleanly
(ACTIVE after the reconnection, or ERROR with a fault, never stuck in BUILD), and new boots succeed
afterwards without restarting the harness."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.client import CloudError, OpenStackClient
from tests.real.conftest import unavailable
from tests.real.procs import process_cloud
from tests.real.test_processes import boot_all

ROOT = Path(__file__).resolve().parents[2]
#: seconds an rpc.call waits: a reply lost with the broker fails the call this fast (Nova: 60)
RPC_TIMEOUT = "20"


def _restartable() -> None:
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        unavailable("a local RabbitMQ this test may stop and start (root, rabbitmq-server installed)",
                    "rabbitmqctl not found" if shutil.which("rabbitmqctl") is None else "not root")


def _stop_broker() -> None:
    subprocess.run("service rabbitmq-server stop || rabbitmqctl stop", shell=True, check=True,
                   capture_output=True, timeout=120)


def _start_broker() -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "start-services.sh")], check=True,
                   capture_output=True, timeout=300)


async def _boot_one(client: OpenStackClient, name: str, image: str) -> dict:
    t0 = time.time()
    try:
        server = await client.create_server(name, image=image)
    except (CloudError, asyncio.TimeoutError, OSError) as exc:  # refused cleanly at the API
        return {"name": name, "t0": t0, "t1": time.time(), "status": "REFUSED", "error": str(exc)}
    final = await client.wait_for_status(server["id"], timeout=240, interval=0.5)
    return {"name": name, "t0": t0, "t1": time.time(), "status": final["status"],
            "fault": final.get("fault"), "id": server["id"]}


@pytest.mark.slow
async def test_broker_restart_mid_run(tmp_path, amqp_url, db_url):
    _restartable()
    env = {"HARNESS_RPC_RESPONSE_TIMEOUT": RPC_TIMEOUT}
    async with process_cloud(tmp_path, transport=amqp_url, db=db_url, hosts=4, env=env) as cloud:
        pids = {p.stem: json.loads(p.read_text())["pid"] for p in (cloud.run_dir / "ready").glob("*.json")}
        async with OpenStackClient(cloud.auth_url, timeout=200) as client:
            await client.authenticate()
            image = next(i["id"] for i in await client.images() if i["name"].startswith("cirros"))
            outage: dict[str, float] = {}

            async def restart() -> None:
                await asyncio.sleep(1.0)
                outage["stop"] = time.time()
                await asyncio.to_thread(_stop_broker)
                outage["stopped"] = time.time()
                await asyncio.sleep(2.0)
                await asyncio.to_thread(_start_broker)
                outage["back"] = time.time()

            restarter = asyncio.create_task(restart())
            boots: list[asyncio.Task] = []
            i = 0
            while not restarter.done():  # a boot every 0.3 s before, during and after the outage
                boots.append(asyncio.create_task(_boot_one(client, f"r-{i}", image)))
                i += 1
                await asyncio.sleep(0.3)
            await restarter
            results = await asyncio.gather(*boots)
        # every boot ended: ACTIVE, or ERROR with a fault, or refused with an error; none in BUILD
        for r in results:
            assert r["status"] in ("ACTIVE", "ERROR", "REFUSED"), r
            if r["status"] == "ERROR":
                assert r["fault"] and r["fault"].get("message"), r
        # started before the broker was down, finished after: in flight across the outage
        in_flight = [r for r in results if r["t0"] < outage["stopped"] < r["t1"]]
        assert in_flight, f"no boot was in flight during the outage: {outage} {results}"
        # new boots succeed afterwards, without restarting anything
        finals = await boot_all(cloud.auth_url, 5, "after")
        assert [f["status"] for f in finals] == ["ACTIVE"] * 5, [f.get("fault") for f in finals]
        now = {p.stem: json.loads(p.read_text())["pid"] for p in (cloud.run_dir / "ready").glob("*.json")}
        assert now == pids, "a service process was restarted"
    assert cloud.proc.returncode == 0, cloud.text()
    summary = {s: sum(r["status"] == s for r in results) for s in ("ACTIVE", "ERROR", "REFUSED")}
    print(f"broker restart: {len(results)} boots {summary}, {len(in_flight)} in flight, outage {outage}")
