"""Loading spans files: the fast Arrow path, the tolerant slow path, pieces, the Parquet cache."""

from __future__ import annotations

import base64
import json
import os
import random

import pandas as pd
import pytest

from analysis.load import CACHE_FILE, SpanSourceError, load_spans
from analysis.otlp import parse_otlp_bytes, parse_otlp_file
from analysis.synthetic import TraceBuilder, as_jsonl, otlp_request, synthetic_run
from harness.steps import Step
from tests.analysis.traces import sequential_boot


def _line(spans, **resource) -> bytes:
    return as_jsonl(list(spans), resource or {"harness.scheduler": "filter_scheduler"})


def test_columns_and_types(tmp_path):
    trace = sequential_boot()
    (tmp_path / "spans.jsonl").write_bytes(_line(trace.values()))
    df = load_spans(tmp_path)
    assert len(df) == len(trace)
    assert list(df.columns[:13]) == [
        "trace_id",
        "span_id",
        "parent_span_id",
        "service",
        "name",
        "kind",
        "step",
        "phase",
        "start_ns",
        "end_ns",
        "duration_ms",
        "status_code",
        "status_message",
    ]
    root = df[df["span_id"] == trace["root"].span_id].iloc[0]
    assert root["parent_span_id"] is None or pd.isna(root["parent_span_id"])
    assert (root["service"], root["kind"], root["step"], root["phase"]) == ("nova-api", "SERVER", 3, "api")
    assert root["duration_ms"] == pytest.approx(30.0)
    fetch = df[df["span_id"] == trace["m"].span_id].iloc[0]
    assert pd.isna(fetch["step"]) and fetch["phase"] == "token_validation"  # from the attribute
    assert str(df["step"].dtype) == "Int64"
    assert df["messaging.harness.queue_wait_ms"].dtype == float
    assert df["harness.scheduler"].iloc[0] == "filter_scheduler"
    assert set(df["status_code"].astype(str)) == {"UNSET"}


def test_malformed_lines_are_counted_not_fatal(tmp_path):
    good = _line(sequential_boot().values())
    bad_span = json.loads(good)
    bad_span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "not-an-id"
    path = tmp_path / "spans.jsonl"
    path.write_bytes(
        good
        + b"garbage {\n"
        + b'{"no": "spans"}\n'
        + b"[1, 2]\n"
        + json.dumps(bad_span).encode()
        + b"\n"
        + good[: len(good) // 2]
    )
    df = load_spans(path)
    n = len(sequential_boot())
    assert len(df) == n + (n - 1)  # the good line and the line with one bad span
    assert df.attrs["malformed_lines"] == 4  # garbage, not OTLP, an array, the torn last line
    assert df.attrs["malformed_spans"] == 1
    assert df.attrs["first_error"]


def test_collector_style_enums_numbers_and_base64_ids():
    """The Collector writes enums as integers; protobuf's own JSON writes ids in base64."""
    rec = list(sequential_boot().values())[0]
    span = {
        "traceId": base64.b64encode(bytes.fromhex(rec.trace_id)).decode(),
        "spanId": base64.b64encode(bytes.fromhex(rec.span_id)).decode(),
        "name": "POST /servers",
        "kind": 2,
        "startTimeUnixNano": rec.start_ns,
        "endTimeUnixNano": rec.end_ns,
        "attributes": [
            {"key": "openstack.boot.step", "value": {"intValue": 3}},
            {"key": "ratio", "value": {"doubleValue": 0.5}},
            {"key": "ok", "value": {"boolValue": True}},
            {"key": "filters", "value": {"arrayValue": {"values": [{"stringValue": "RamFilter=3"}]}}},
        ],
        "status": {"code": 2, "message": "boom"},
    }
    data = (
        json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": {
                            "attributes": [{"key": "service.name", "value": {"stringValue": "nova-api"}}]
                        },
                        "scopeSpans": [{"spans": [span]}],
                    }
                ]
            }
        ).encode()
        + b"\n"
    )
    df, stats = parse_otlp_bytes(data)
    assert stats.malformed_lines == stats.malformed_spans == 0
    row = df.iloc[0]
    assert (row["trace_id"], row["span_id"]) == (rec.trace_id, rec.span_id)
    assert (row["kind"], row["status_code"], row["status_message"], row["step"]) == (
        "SERVER",
        "ERROR",
        "boom",
        3,
    )
    assert row["ratio"] == 0.5 and bool(row["ok"]) is True and list(row["filters"]) == ["RamFilter=3"]


def test_pieces_give_the_same_table_as_one_read(tmp_path):
    path = tmp_path / "spans.jsonl"
    synthetic_run(path, n_spans=3000, seed=5, boots_per_line=3)
    whole, _ = parse_otlp_file(path)
    pieces, stats = parse_otlp_file(path, chunk_bytes=50_000)
    assert stats.lines == len(path.read_bytes().splitlines())
    pd.testing.assert_frame_equal(whole.astype(str), pieces.astype(str))


def test_an_attribute_whose_type_changes_between_pieces_becomes_text(tmp_path):
    tb = TraceBuilder(random.Random(3))
    a = tb.span("x", "svc", 0, 1, attributes={"v": 7})
    b = tb.span("y", "svc", 1, 2, attributes={"v": "seven"})
    path = tmp_path / "spans.jsonl"
    path.write_bytes(as_jsonl([a]) + as_jsonl([b]))
    df, _ = parse_otlp_file(path, chunk_bytes=10)  # one line per piece
    assert sorted(df["v"].astype(str)) == ["7", "seven"]


def test_parquet_cache_is_used_while_current_and_rebuilt_when_the_file_grows(tmp_path):
    path = tmp_path / "spans.jsonl"
    path.write_bytes(_line(sequential_boot(seed=1).values()))
    first = load_spans(tmp_path, cache=True)
    assert (tmp_path / CACHE_FILE).is_file()
    cached = load_spans(tmp_path, cache=True)
    pd.testing.assert_frame_equal(first, cached, check_dtype=False, check_categorical=False)
    with path.open("ab") as fh:
        fh.write(_line(sequential_boot(seed=2).values()))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    grown = load_spans(tmp_path, cache=True)
    assert len(grown) == 2 * len(first)


def test_lists_of_sources_and_duplicates(tmp_path):
    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "spans.jsonl").write_bytes(_line(sequential_boot(seed=seed).values()))
    both = load_spans([tmp_path / "a", tmp_path / "b"])
    assert len(both) == 2 * len(sequential_boot())
    again = load_spans([tmp_path / "a", tmp_path / "a" / "spans.jsonl"])
    assert len(again) == len(sequential_boot()) and again.attrs["duplicate_spans"] == len(sequential_boot())
    with pytest.raises(SpanSourceError, match="no spans file"):
        load_spans(tmp_path / "missing")


def test_request_helper_groups_by_service():
    tb = TraceBuilder(random.Random(1))
    tb.step(Step.BOOT_REQUEST, 0, 1)
    tb.step(Step.API_VALIDATE_TOKEN, 0, 1)
    tb.step(Step.KEYSTONE_VALIDATE_TOKEN, 0, 1)
    req = otlp_request(tb.spans)
    assert [len(rs["scopeSpans"][0]["spans"]) for rs in req["resourceSpans"]] == [2, 1]
