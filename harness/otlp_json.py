"""SDK spans -> OTLP/JSON (``ExportTraceServiceRequest``), as the Collector's file exporter writes it.

Written by hand for speed, not convenience: the export runs in the BatchSpanProcessor's thread,
which shares the GIL with the cloud's event loop, and going through the SDK's protobuf encoder and
``MessageToDict`` cost about as much CPU as the spans themselves. The mapping follows the OTLP/JSON
rules: ids as lowercase hex, enums as integers, 64-bit integers as strings, lowerCamelCase names,
default values left out. :func:`via_protobuf` is the reference the tests compare with.
"""

from __future__ import annotations

import base64
from typing import Any, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4,
         SpanKind.CONSUMER: 5}
_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
_HAS_IS_REMOTE = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def _value(v: Any) -> dict[str, Any]:
    # Exact types first (almost every attribute is a str, int or float): one ``type()`` call
    # instead of an isinstance chain; bool is tested before the int branch by being its own type.
    t = type(v)
    if t is str:
        return {"stringValue": v}
    if t is int:
        return {"intValue": str(v)}
    if t is float:
        return {"doubleValue": v}
    if t is bool:
        return {"boolValue": v}
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, bytes):
        return {"bytesValue": base64.b64encode(v).decode()}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_value(x) for x in v]} if v else {}}
    return {"stringValue": str(v)}


def _attributes(attrs: Any) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in attrs.items()] if attrs else []


def _span(s: ReadableSpan) -> dict[str, Any]:
    ctx = s.context
    out: dict[str, Any] = {"traceId": format(ctx.trace_id, "032x"), "spanId": format(ctx.span_id, "016x")}
    if ctx.trace_state:
        out["traceState"] = ctx.trace_state.to_header()
    parent = s.parent
    if parent is not None:
        out["parentSpanId"] = format(parent.span_id, "016x")
    # As the SDK's encoder: the is-remote bits only (it leaves the W3C trace-flags byte at 0).
    out["flags"] = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
    out["name"] = s.name
    out["kind"] = _KIND.get(s.kind, 1)
    out["startTimeUnixNano"] = str(s.start_time)
    out["endTimeUnixNano"] = str(s.end_time)
    if s.attributes:
        out["attributes"] = _attributes(s.attributes)
    if s.dropped_attributes:
        out["droppedAttributesCount"] = s.dropped_attributes
    if s.events:
        out["events"] = [
            {"timeUnixNano": str(e.timestamp), "name": e.name,
             **({"attributes": _attributes(e.attributes)} if e.attributes else {})}
            for e in s.events
        ]
    if s.dropped_events:
        out["droppedEventsCount"] = s.dropped_events
    if s.links:
        links = []
        for link in s.links:
            item: dict[str, Any] = {"traceId": format(link.context.trace_id, "032x"),
                                    "spanId": format(link.context.span_id, "016x")}
            if link.attributes:
                item["attributes"] = _attributes(link.attributes)
            item["flags"] = _HAS_IS_REMOTE | (_IS_REMOTE if link.context.is_remote else 0)
            links.append(item)
        out["links"] = links
    if s.dropped_links:
        out["droppedLinksCount"] = s.dropped_links
    code = _STATUS.get(s.status.status_code, 0)
    status: dict[str, Any] = {}
    if s.status.description:
        status["message"] = s.status.description
    if code:
        status["code"] = code
    out["status"] = status
    return out


def to_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Spans grouped by resource, then instrumentation scope, as one export request."""
    by_resource: dict[Any, dict[Any, list[ReadableSpan]]] = {}
    # Spans of one provider share one Resource and one scope object: look them up by identity
    # first, since hashing a Resource serialises its attributes (json.dumps) on every call.
    by_id: dict[tuple[int, int], list[ReadableSpan]] = {}
    for s in spans:
        resource, scope = s.resource, s.instrumentation_scope
        members = by_id.get((id(resource), id(scope)))
        if members is None:
            members = by_id[(id(resource), id(scope))] = (
                by_resource.setdefault(resource, {}).setdefault(scope, []))
        members.append(s)
    resource_spans = []
    for resource, scopes in by_resource.items():
        scope_spans = []
        for scope, members in scopes.items():
            entry: dict[str, Any] = {}
            if scope is not None:
                sc: dict[str, Any] = {"name": scope.name}
                if scope.version:
                    sc["version"] = scope.version
                if getattr(scope, "attributes", None):
                    sc["attributes"] = _attributes(scope.attributes)
                entry["scope"] = sc
            entry["spans"] = [_span(s) for s in members]
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        rs: dict[str, Any] = {"resource": {"attributes": _attributes(resource.attributes)} if resource else {},
                              "scopeSpans": scope_spans}
        if resource is not None and resource.schema_url:
            rs["schemaUrl"] = resource.schema_url
        resource_spans.append(rs)
    return {"resourceSpans": resource_spans}


def via_protobuf(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The same request through the SDK's protobuf encoder (slow; the reference for tests)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    data = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for rs in data.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
                for link in span.get("links", ()):
                    for field in ("traceId", "spanId"):
                        if field in link:
                            link[field] = base64.b64decode(link[field]).hex()
    return data
