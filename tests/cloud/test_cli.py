"""The ``harness`` command as a user runs it: ``up`` in a subprocess, ``boot``, bad flags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.conftest import free_ports
from tests.spanfile import boot_traces, read_spans

HARNESS = [sys.executable, "-m", "harness.cli"]


def _env_ports() -> tuple[dict[str, str], dict[str, int]]:
    p = free_ports()
    ports = {"KEYSTONE": p.keystone, "NOVA": p.nova, "GLANCE": p.glance, "NEUTRON": p.neutron, "CINDER": p.cinder}
    env = {**os.environ, **{f"HARNESS_PORTS__{k}": str(v) for k, v in ports.items()}}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env, ports


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:  # any HTTP answer (version discovery says 300) is "up"
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def test_up_serves_until_sigterm_and_flushes(tmp_path):
    env, ports = _env_ports()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*HARNESS, "up", "--run-dir", str(run_dir), "--hosts", "4", "--profile", "fast"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_up(f"http://127.0.0.1:{ports['CINDER']}/", proc)
        boot = subprocess.run(
            [*HARNESS, "boot", "-N", "3", "-C", "3", "--auth-url", f"http://127.0.0.1:{ports['KEYSTONE']}/v3",
             "--run-dir", str(tmp_path / "client")],
            env=env, capture_output=True, text=True, timeout=120)
        assert boot.returncode == 0, boot.stderr + boot.stdout
        assert "3/3 ACTIVE" in boot.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert f"127.0.0.1:{ports['NOVA']}" in stdout and "spans.jsonl" in stdout
    assert "dropped" in stderr  # the span counter table
    counts = json.loads((run_dir / "span_counts.json").read_text())
    assert all(c["dropped"] == 0 and c["ended"] == c["exported"] for c in counts.values())
    # the client's spans (own file) and the cloud's join into one trace per boot
    spans = read_spans(run_dir / "spans.jsonl") + read_spans(tmp_path / "client" / "spans.jsonl")
    boots = boot_traces(spans)
    assert len(boots) == 3
    for trace in boots.values():
        root = [s for s in trace if s.parent_id is None]
        assert [r.service for r in root] == ["harness-client"]
        assert {s.step for s in trace if s.step} == set(range(3, 30))


def test_boot_embedded_prints_phases(tmp_path):
    env, _ = _env_ports()
    res = subprocess.run([*HARNESS, "boot", "-N", "4", "-C", "2", "--run-dir", str(tmp_path / "r"), "--hosts", "2"],
                         env={**env, "COLUMNS": "120"}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "4/4 ACTIVE" in res.stdout
    for phase in ("token_validation", "scheduling", "image", "network", "volume", "spawn"):
        assert phase in res.stdout


def test_bad_flags_get_a_clear_message(tmp_path):
    env, _ = _env_ports()
    res = subprocess.run([*HARNESS, "up", "--profile", "nope", "--run-dir", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown latency profile 'nope'" in res.stderr
    assert "Traceback" not in res.stderr
    res = subprocess.run([*HARNESS, "boot", "--scheduler", "magic", "--run-dir", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "magic" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([*HARNESS, "up", "--hosts", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "hosts" in res.stderr.lower()
    res = subprocess.run([*HARNESS, "boot", "--watch", "sometimes", "--run-dir", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "'sometimes'" in res.stderr and "--watch" in res.stderr
    assert "Traceback" not in res.stderr


def test_port_in_use_is_reported(tmp_path):
    import socket

    env, ports = _env_ports()
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports["NOVA"]))
        s.listen()
        res = subprocess.run([*HARNESS, "up", "--run-dir", str(tmp_path)], env=env, capture_output=True,
                             text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert f"cannot listen on 127.0.0.1:{ports['NOVA']}" in res.stderr and "Traceback" not in res.stderr
