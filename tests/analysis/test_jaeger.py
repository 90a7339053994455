"""The Jaeger loader against a small fake Jaeger query service (both APIs), compared with the
same spans read from a file."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from analysis import boot_table
from analysis.jaeger import JaegerError, load_jaeger
from analysis.otlp import parse_otlp_bytes
from analysis.synthetic import SpanRec, as_jsonl, otlp_request
from tests.analysis.traces import no_valid_host_boot, sequential_boot

KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
CORE = [
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
    "status_code",
]


def v3_document(spans: list[SpanRec]) -> dict:
    """What Jaeger v2's /api/v3 answers: OTLP/JSON with enums as numbers."""
    req = otlp_request(spans)
    for rs in req["resourceSpans"]:
        for s in rs["scopeSpans"][0]["spans"]:
            s["kind"] = KINDS[s["kind"].removeprefix("SPAN_KIND_")]
            if "code" in s["status"]:
                s["status"]["code"] = {"STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}[s["status"]["code"]]
    return {"result": req}


def v1_trace(spans: list[SpanRec]) -> dict:
    """What /api/traces answers for one trace: Jaeger's model, microseconds, typed tags."""
    services = sorted({s.service for s in spans})
    pid = {svc: f"p{i + 1}" for i, svc in enumerate(services)}

    def tag(k, v):
        t = (
            "bool"
            if isinstance(v, bool)
            else "int64"
            if isinstance(v, int)
            else "float64"
            if isinstance(v, float)
            else "string"
        )
        return {"key": k, "type": t, "value": v}

    out = []
    for s in spans:
        tags = [tag(k, v) for k, v in s.attributes.items()] + [tag("span.kind", s.kind.lower())]
        if s.status_code == "ERROR":
            tags += [
                tag("otel.status_code", "ERROR"),
                tag("error", True),
                tag("otel.status_description", s.status_message),
            ]
        out.append(
            {
                "traceID": s.trace_id,
                "spanID": s.span_id,
                "operationName": s.name,
                "references": [{"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_span_id}]
                if s.parent_span_id
                else [],
                "startTime": s.start_ns // 1000,
                "duration": (s.end_ns - s.start_ns) // 1000,
                "tags": tags,
                "logs": [],
                "processID": pid[s.service],
                "warnings": None,
            }
        )
    return {
        "traceID": spans[0].trace_id,
        "spans": out,
        "processes": {pid[svc]: {"serviceName": svc, "tags": []} for svc in services},
    }


class FakeJaeger:
    def __init__(self, traces: dict[str, list[SpanRec]], *, v3: bool = True) -> None:
        self.traces, self.v3, self.requests = traces, v3, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                fake.requests.append((url.path, parse_qs(url.query)))
                parts = url.path.strip("/").split("/")
                if parts[:3] == ["api", "v3", "traces"] and fake.v3:
                    if len(parts) == 4:
                        spans = fake.traces.get(parts[3])
                        return (
                            self._send(404, {"error": {"message": "trace not found"}})
                            if spans is None
                            else self._send(200, v3_document(spans))
                        )
                    q = parse_qs(url.query)
                    assert {"query.service_name", "query.start_time_min", "query.start_time_max"} <= set(q)
                    return self._send(200, v3_document([s for t in fake.traces.values() for s in t]))
                if parts[:2] == ["api", "traces"]:
                    if len(parts) == 3:
                        spans = fake.traces.get(parts[2])
                        return (
                            self._send(
                                404, {"data": None, "errors": [{"code": 404, "msg": "trace not found"}]}
                            )
                            if spans is None
                            else self._send(200, {"data": [v1_trace(spans)]})
                        )
                    assert "service" in parse_qs(url.query)
                    return self._send(200, {"data": [v1_trace(t) for t in fake.traces.values()]})
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b"404 page not found")

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def traces():
    return {
        t["root"].trace_id: list(t.values()) for t in (sequential_boot(seed=21), no_valid_host_boot(seed=22))
    }


def expected(traces) -> pd.DataFrame:
    data = b"".join(as_jsonl(spans) for spans in traces.values())
    return parse_otlp_bytes(data)[0]


def _core(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[CORE].astype(str).sort_values(["trace_id", "span_id"]).reset_index(drop=True)


@pytest.mark.parametrize("api, v3_server", [("v3", True), ("v1", True), ("auto", False)])
def test_search_gives_the_spans_the_file_gives(traces, api, v3_server):
    with FakeJaeger(traces, v3=v3_server) as jaeger:
        frame = load_jaeger(jaeger.url, service="nova-api", api=api)
        used = {path.split("/")[2] for path, _ in jaeger.requests}
    assert used == ({"v3"} if api == "v3" else {"traces"} if api == "v1" else {"v3", "traces"})
    pd.testing.assert_frame_equal(_core(frame), _core(expected(traces)))
    boots = boot_table(frame).sort_values("trace_id").reset_index(drop=True)
    want = boot_table(expected(traces)).sort_values("trace_id").reset_index(drop=True)
    assert boots["total_ms"].tolist() == want["total_ms"].tolist()
    assert boots["outcome"].tolist() == want["outcome"].tolist()


@pytest.mark.parametrize("api", ["v3", "v1"])
def test_traces_by_id_and_unknown_ids(traces, api):
    first = next(iter(traces))
    with FakeJaeger(traces) as jaeger:
        frame = load_jaeger(jaeger.url, trace_ids=[first, "0" * 32], api=api)
    assert set(frame["trace_id"]) == {first}
    assert len(frame) == len(traces[first])


def test_unreachable_jaeger_is_a_clear_error():
    with FakeJaeger({}) as jaeger:
        url = jaeger.url
    with pytest.raises(JaegerError, match="cannot reach Jaeger"):
        load_jaeger(url, trace_ids=["ab" * 16], timeout=2)
