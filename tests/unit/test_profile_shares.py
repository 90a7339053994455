"""bench/profile_capacity.py's grouping of py-spy samples: the running frame's file decides the
part (first match wins), idle thread waits are left out, tracing is also counted inclusively."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "profile_capacity.py"
_spec = importlib.util.spec_from_file_location("profile_capacity", _PATH)
profile_capacity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(profile_capacity)


def test_samples_are_grouped_by_the_running_frame(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join([
        "main (x.py:1);serve (harness/services/nova_api.py:10);end (harness/light_span.py:5) 30",
        "main (x.py:1);end (harness/light_span.py:5);write (harness/db/fastpath.py:9) 10",
        "main (x.py:1);cycle (uvicorn/protocols/http/httptools_impl.py:3) 20",
        "main (x.py:1);request (harness/services/http1_client.py:7) 15",
        "main (x.py:1);handler (harness/services/glance.py:4) 5",
        "main (x.py:1);dumps (json/encoder.py:2) 20",
        "Thread._bootstrap (threading.py:1);Condition.wait (threading.py:331) 500",
        "",
    ]))
    by_part, tracing_incl, samples, others = profile_capacity.shares(raw, top=3)
    assert samples == 100  # the idle waits are not samples of work
    assert by_part == {"tracing": 0.30, "HTTP server": 0.20, "other": 0.20, "HTTP client": 0.15,
                       "Nova DB": 0.10, "service code": 0.05}
    assert tracing_incl == 0.40  # the DB write under a tracing frame counts there too
    assert others == [("dumps (json/encoder.py:2)", 0.20)]


def test_a_profile_without_samples_is_a_clear_error(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("Thread._bootstrap (threading.py:1);Condition.wait (threading.py:331) 9\n")
    with pytest.raises(SystemExit, match="no samples"):
        profile_capacity.shares(raw)
