"""Spans from a Jaeger query service, into the same span table as a run's file.

Two APIs are read:

* ``/api/v3/traces`` (Jaeger v2's OTLP query API): it answers ``{"result": ExportTraceServiceRequest}``
  in OTLP/JSON, which goes through the same parser as ``spans.jsonl`` (:mod:`analysis.otlp`);
* ``/api/traces`` (the UI's JSON API of Jaeger v1 and v2): Jaeger's own model (microsecond times,
  ``tags``, ``references``, ``processes``), converted to OTLP/JSON first.

``api="auto"`` tries v3 and falls back to v1 when the server has no v3 endpoint.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any, Iterable, Sequence

import httpx
import pandas as pd

from analysis.otlp import ParseStats, parse_otlp_bytes

SPAN_KINDS = {
    "server": "SPAN_KIND_SERVER",
    "client": "SPAN_KIND_CLIENT",
    "producer": "SPAN_KIND_PRODUCER",
    "consumer": "SPAN_KIND_CONSUMER",
    "internal": "SPAN_KIND_INTERNAL",
}
#: Jaeger tags that are the span's kind and status, not attributes.
_STATUS_TAGS = {"span.kind", "otel.status_code", "otel.status_description", "error"}


class JaegerError(RuntimeError):
    """Jaeger could not be reached or did not answer as expected; the message says what happened."""


def _get(client: httpx.Client, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
    try:
        return client.get(url, params=params)
    except httpx.HTTPError as exc:
        raise JaegerError(f"cannot reach Jaeger at {url}: {exc}") from None


def _json_documents(text: str) -> list[Any]:
    """One JSON document, or several back to back (a streamed answer)."""
    decoder, pos, docs = json.JSONDecoder(), 0, []
    text = text.strip()
    while pos < len(text):
        try:
            doc, end = decoder.raw_decode(text, pos)
        except ValueError as exc:
            raise JaegerError(f"Jaeger answered something that is not JSON: {exc}") from None
        docs.append(doc)
        pos = end
        while pos < len(text) and text[pos] in " \r\n\t,":
            pos += 1
    return docs


# -- v3 ---------------------------------------------------------------------------------------------
def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fetch_v3(
    base: str,
    client: httpx.Client,
    *,
    service: str | None,
    trace_ids: Sequence[str] | None,
    lookback: dt.timedelta,
    limit: int,
) -> list[dict[str, Any]]:
    """ExportTraceServiceRequests from ``/api/v3/traces`` (None when the endpoint does not exist)."""
    if trace_ids:
        responses = [_get(client, f"{base}/api/v3/traces/{tid}") for tid in trace_ids]
    else:
        now = dt.datetime.now(dt.timezone.utc)
        responses = [
            _get(
                client,
                f"{base}/api/v3/traces",
                {
                    "query.service_name": service,
                    "query.start_time_min": _rfc3339(now - lookback),
                    "query.start_time_max": _rfc3339(now),
                    "query.num_traces": limit,
                },
            )
        ]
    requests = []
    for resp in responses:
        html_page = resp.headers.get("content-type", "").startswith("text/html")  # the UI's catch-all
        if html_page or (resp.status_code == 404 and "trace" not in resp.text.lower()):
            raise _NoEndpoint()
        if resp.status_code == 404:  # a trace id Jaeger does not know
            continue
        if resp.status_code != 200:
            raise JaegerError(f"Jaeger {resp.request.url} answered {resp.status_code}: {resp.text[:300]}")
        for doc in _json_documents(resp.text):
            result = doc.get("result", doc) if isinstance(doc, dict) else None
            if isinstance(result, dict) and "resourceSpans" in result:
                requests.append(result)
    return requests


class _NoEndpoint(Exception):
    pass


# -- v1 ---------------------------------------------------------------------------------------------
def _tag_value(tag: dict[str, Any]) -> dict[str, Any]:
    kind, value = str(tag.get("type", "string")).lower(), tag.get("value")
    if kind == "bool":
        return {"boolValue": bool(value)}
    if kind == "int64":
        return {"intValue": str(int(value))}
    if kind == "float64":
        return {"doubleValue": float(value)}
    if kind == "binary":
        return {"bytesValue": value if isinstance(value, str) else base64.b64encode(bytes(value)).decode()}
    return {"stringValue": "" if value is None else str(value)}


def v1_trace_to_otlp(trace: dict[str, Any]) -> dict[str, Any]:
    """A trace of Jaeger's JSON model as an OTLP/JSON ExportTraceServiceRequest."""
    processes = trace.get("processes") or {}
    by_process: dict[str, list[dict[str, Any]]] = {}
    for span in trace.get("spans") or []:
        tags = {t.get("key"): t for t in span.get("tags") or [] if isinstance(t, dict)}
        parent = next(
            (r.get("spanID") for r in span.get("references") or [] if r.get("refType") == "CHILD_OF"), None
        )
        if parent is None:  # a FOLLOWS_FROM link still places the span under its cause
            parent = next((r.get("spanID") for r in span.get("references") or []), None)
        start_ns = int(span["startTime"]) * 1000
        status_code = str((tags.get("otel.status_code") or {}).get("value", "")).upper()
        if status_code not in ("OK", "ERROR"):
            status_code = "ERROR" if (tags.get("error") or {}).get("value") in (True, "true") else ""
        status: dict[str, Any] = {}
        if status_code:
            status["code"] = f"STATUS_CODE_{status_code}"
        if "otel.status_description" in tags:
            status["message"] = str(tags["otel.status_description"].get("value"))
        kind = SPAN_KINDS.get(
            str((tags.get("span.kind") or {}).get("value", "")).lower(), "SPAN_KIND_INTERNAL"
        )
        by_process.setdefault(span.get("processID", ""), []).append(
            {
                "traceId": span.get("traceID") or trace.get("traceID"),
                "spanId": span.get("spanID"),
                "parentSpanId": parent or "",
                "name": span.get("operationName", ""),
                "kind": kind,
                "startTimeUnixNano": str(start_ns),
                "endTimeUnixNano": str(start_ns + int(span["duration"]) * 1000),
                "attributes": [
                    {"key": k, "value": _tag_value(t)} for k, t in tags.items() if k not in _STATUS_TAGS
                ],
                "status": status,
            }
        )
    resource_spans = []
    for pid, spans in by_process.items():
        proc = processes.get(pid) or {}
        attrs = [{"key": "service.name", "value": {"stringValue": proc.get("serviceName", pid)}}]
        attrs += [
            {"key": t["key"], "value": _tag_value(t)}
            for t in proc.get("tags") or []
            if isinstance(t, dict) and t.get("key") != "service.name"
        ]
        resource_spans.append({"resource": {"attributes": attrs}, "scopeSpans": [{"spans": spans}]})
    return {"resourceSpans": resource_spans}


def fetch_v1(
    base: str,
    client: httpx.Client,
    *,
    service: str | None,
    trace_ids: Sequence[str] | None,
    lookback: dt.timedelta,
    limit: int,
) -> list[dict[str, Any]]:
    """ExportTraceServiceRequests converted from ``/api/traces``."""
    if trace_ids:
        responses = [_get(client, f"{base}/api/traces/{tid}") for tid in trace_ids]
    else:
        responses = [
            _get(
                client,
                f"{base}/api/traces",
                {"service": service, "lookback": f"{int(lookback.total_seconds())}s", "limit": limit},
            )
        ]
    requests = []
    for resp in responses:
        if resp.status_code == 404:
            continue
        if resp.status_code != 200:
            raise JaegerError(f"Jaeger {resp.request.url} answered {resp.status_code}: {resp.text[:300]}")
        body = _json_documents(resp.text)[0]
        for trace in (body.get("data") or []) if isinstance(body, dict) else []:
            requests.append(v1_trace_to_otlp(trace))
    return requests


def _to_frame(requests: Iterable[dict[str, Any]]) -> pd.DataFrame:
    data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in requests)
    frame, stats = parse_otlp_bytes(data, ParseStats())
    frame.attrs.update(
        lines=stats.lines,
        malformed_lines=stats.malformed_lines,
        malformed_spans=stats.malformed_spans,
        first_error=stats.first_error,
    )
    return frame


def load_jaeger(
    url: str,
    *,
    service: str | None = "nova-api",
    trace_ids: Sequence[str] | None = None,
    lookback: dt.timedelta = dt.timedelta(hours=1),
    limit: int = 1000,
    api: str = "auto",
    timeout: float = 30.0,
) -> pd.DataFrame:
    """The span table of traces from Jaeger at ``url`` (the query service or UI base URL).

    Either the given ``trace_ids``, or up to ``limit`` traces through ``service`` in the last
    ``lookback``. ``api`` is ``v3``, ``v1`` or ``auto`` (v3, else v1).
    """
    if api not in ("auto", "v3", "v1"):
        raise ValueError(f"api must be auto, v3 or v1, not {api!r}")
    if not trace_ids and not service:
        raise ValueError("give trace ids or a service to search")
    base = url.rstrip("/")
    kw = dict(service=service, trace_ids=list(trace_ids or []), lookback=lookback, limit=limit)
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        if api in ("auto", "v3"):
            try:
                return _to_frame(fetch_v3(base, client, **kw))
            except _NoEndpoint:
                if api == "v3":
                    raise JaegerError(
                        f"{base} has no /api/v3/traces (Jaeger before 1.35?); try api='v1'"
                    ) from None
        return _to_frame(fetch_v1(base, client, **kw))
