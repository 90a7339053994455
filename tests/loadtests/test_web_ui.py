"""Locust's web UI, driven the way a browser drives it, against ``harness up`` in a subprocess.

One cloud and one ``locust`` web UI process serve the module. Each test starts its own swarm over
the UI's HTTP endpoints (``POST /swarm`` with the start form's fields, the harness's options among
them), reads ``/stats/requests`` while it runs and stops it (``POST /stop``). Where Debian's
``chromium`` is installed, a real headless browser loads the page during a run, the rendered page
must show the boot statistics, and its screenshot is the one in ``docs/locust-ui.png`` (retaken
with ``UPDATE_SCREENSHOTS=1``, or when the file is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import free_port
from tests.loadtests.conftest import REPO, CloudProcess, locust_cmd, locust_env, start_cloud

pytestmark = pytest.mark.slow  # a cloud and Locust in subprocesses: tens of seconds

SCREENSHOT = REPO / "docs" / "locust-ui.png"
#: ``UPDATE_SCREENSHOTS=1 pytest tests/loadtests/test_web_ui.py`` retakes docs/locust-ui.png
UPDATE_SCREENSHOT = os.environ.get("UPDATE_SCREENSHOTS") == "1"
WINDOW = (1400, 900)


class WebUi:
    def __init__(self, url: str, cloud: CloudProcess, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.cloud, self.proc, self.log = url, cloud, proc, log
        self.http = httpx.Client(base_url=url, timeout=30)

    def stats(self) -> dict[str, Any]:
        resp = self.http.get("/stats/requests")
        resp.raise_for_status()
        return resp.json()

    def entry(self, report: dict[str, Any], method: str, name: str) -> dict[str, Any] | None:
        return next((s for s in report["stats"] if s["method"] == method and s["name"] == name), None)

    def swarm(self, **form: Any) -> dict[str, Any]:
        resp = self.http.post("/swarm", data={"host": self.cloud.auth_url, **form})
        resp.raise_for_status()
        return resp.json()

    def wait_for(self, predicate, what: str, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        report: dict[str, Any] = {}
        while time.monotonic() < deadline:
            report = self.stats()
            if predicate(report):
                return report
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; last report: {json.dumps(report)[:2000]}\n"
                             f"locust log:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> dict[str, Any]:
        resp = self.http.post("/stop")
        resp.raise_for_status()
        return self.wait_for(lambda r: r["state"] == "stopped", "the run to stop")


@pytest.fixture(scope="module")
def web_ui(tmp_path_factory) -> Iterator[WebUi]:
    base = tmp_path_factory.mktemp("webui")
    cloud = start_cloud(base / "run")
    port = free_port()
    log = base / "locust.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            locust_cmd("--web-host", "127.0.0.1", "--web-port", str(port), "--host", cloud.auth_url,
                       "--run-dir", str(cloud.run_dir), "--stop-timeout", "30", "--poll-interval", "0.2"),
            cwd=base, env=locust_env(), stdout=fh, stderr=subprocess.STDOUT)
    ui = WebUi(f"http://127.0.0.1:{port}", cloud, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"locust exited: {log.read_text()[-3000:]}"
            try:
                if ui.http.get("/").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"web UI not up: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield ui
    finally:
        ui.http.close()
        proc.send_signal(signal.SIGTERM)  # Locust shuts down on SIGTERM (flushing the spans)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        cloud.stop()


def boots_done(ui: WebUi, n: int):
    def check(report: dict[str, Any]) -> bool:
        boot = ui.entry(report, "BOOT", "boot to ACTIVE")
        return report["state"] == "running" and boot is not None and boot["num_requests"] >= n
    return check


def test_start_watch_and_stop_a_swarm_over_the_web_ui(web_ui: WebUi):
    page = web_ui.http.get("/").text
    for option in ("load_shape", "arrival_rate", "poll_interval", "token_per_boot"):
        assert option in page, f"the harness option {option} is not in the web UI's start form"

    started = web_ui.swarm(user_count=2, spawn_rate=2, load_shape="closed", poll_interval="0.1")
    assert started["success"], started
    report = web_ui.wait_for(boots_done(web_ui, 3), "3 boots")
    assert report["user_count"] == 2
    for method, name in (("POST", "/servers"), ("GET", "/servers/[id]"), ("DELETE", "/servers/[id]")):
        assert web_ui.entry(report, method, name) is not None, (method, name)

    final = web_ui.stop()
    boot = web_ui.entry(final, "BOOT", "boot to ACTIVE")
    assert boot["num_requests"] >= 3 and boot["num_failures"] == 0 and final["errors"] == []

    # the run's record has the form's values: the web UI's fields reached the user and the shape
    runs = [json.loads(line) for line in (web_ui.cloud.run_dir / "locust-runs.jsonl").read_text().splitlines()]
    record = runs[-1]
    assert record["options"]["poll_interval"] == 0.1 and record["users"] == 2
    final_boots = next(e for e in record["stats"] if e["method"] == "BOOT")
    assert final_boots["requests"] == boot["num_requests"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_a_real_browser_shows_the_boot_statistics_during_a_run(web_ui: WebUi, tmp_path):
    started = web_ui.swarm(user_count=3, spawn_rate=3, load_shape="closed", poll_interval="0.2")
    assert started["success"], started
    try:
        web_ui.wait_for(boots_done(web_ui, 10), "10 boots")
        browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                   "--virtual-time-budget=8000", f"--user-data-dir={tmp_path / 'profile'}"]
        dom = subprocess.run([*browser, "--dump-dom", web_ui.url + "/"], capture_output=True, text=True,
                             timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        # rendered by the UI's JavaScript from /stats/requests: not in the HTML the server sent
        assert "boot to ACTIVE" in dom.stdout and "/servers/[id]" in dom.stdout, dom.stdout[-2000:]
        shot = tmp_path / "locust-ui.png"
        res = subprocess.run([*browser, f"--screenshot={shot}", web_ui.url + "/"], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
        assert _png_size(shot) == WINDOW and shot.stat().st_size > 20_000  # not a blank page
    finally:
        web_ui.stop()
    if UPDATE_SCREENSHOT or not SCREENSHOT.exists():  # not on every run: it is a tracked file
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
