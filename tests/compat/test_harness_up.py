"""openstacksdk against ``harness up`` in a subprocess, configured by the shipped ``clouds.yaml``.

The cloud runs as a user runs it (free loopback ports through ``HARNESS_PORTS__*``); the SDK
connects with ``cloud="harness"`` from a copy of the repository's ``clouds.yaml`` whose auth URL
points at the test's Keystone port. SIGTERM stops the cloud and flushes the spans, which must hold
the SDK's auth (steps 1-2) and the boot's steps 3..29 in one trace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from tests.compat.helpers import CIRROS, WAIT_S, assert_auth_steps, assert_boot_trace
from tests.conftest import free_ports
from tests.spanfile import boot_traces, read_spans

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:  # any HTTP answer (300 Multiple Choices) means it serves
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def test_shipped_clouds_yaml_names_the_default_cloud():
    clouds = yaml.safe_load((REPO / "clouds.yaml").read_text())["clouds"]
    assert clouds["harness"]["auth"]["auth_url"] == "http://127.0.0.1:5000/v3"
    assert clouds["harness-admin"]["auth"]["username"] == "admin"


@pytest.mark.timeout(600)
def test_sdk_boots_on_harness_up(tmp_path):
    ports = free_ports()
    env = {**os.environ, **{f"HARNESS_PORTS__{k.upper()}": str(v) for k, v in ports.model_dump().items()}}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    config = yaml.safe_load((REPO / "clouds.yaml").read_text())
    config["clouds"]["harness"]["auth"]["auth_url"] = f"http://127.0.0.1:{ports.keystone}/v3"
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--run-dir", str(run_dir),
                             "--hosts", "2", "--profile", "fast"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for port in ports.model_dump().values():
            _wait_up(f"http://127.0.0.1:{port}/", proc)
        region = OpenStackConfig(config_files=[str(tmp_path / "clouds.yaml")], load_envvars=False) \
            .get_one(cloud="harness")
        conn = Connection(config=region)
        image = conn.image.find_image(CIRROS, ignore_missing=False)
        server = conn.compute.create_server(name="from-clouds-yaml", flavor_id="1", image_id=image.id,
                                            networks="auto")
        server = conn.compute.wait_for_server(server, wait=WAIT_S, interval=0.2)
        assert server.addresses["private"][0]["addr"].startswith("10.0.")
        assert server.id in {s.id for s in conn.compute.servers()}
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=WAIT_S, interval=0.2)
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    spans = read_spans(run_dir / "spans.jsonl")
    assert_boot_trace(boot_traces(spans)[server.id])
    assert_auth_steps(spans)
