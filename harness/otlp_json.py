"""SDK spans -> OTLP/JSON (``ExportTraceServiceRequest``), as the Collector's file exporter writes it.

Written by hand for speed, not convenience: it runs in the cloud's process (when a span ends, see
:mod:`harness.span_file`, or in a BatchSpanProcessor's thread, which shares the GIL with the
cloud's event loop), and going through the SDK's protobuf encoder and
``MessageToDict`` cost about as much CPU as the spans themselves. The mapping follows the OTLP/JSON
rules: ids as lowercase hex, enums as integers, 64-bit integers as strings, lowerCamelCase names,
default values left out. :func:`via_protobuf` is the reference the tests compare with.

Per span (9 attributes, two of them ids, the cloud's GC settings, 2,048 spans a batch, 2-core test
box): the first version cost ~13.8 us; reading the SDK's ReadableSpan fields directly, walking a
plain copy of the attributes, formatting each id once per batch, looking enums up by identity and
reusing the encoded entries of repeated attributes brought it to ~7.3 us. The rest is the dicts
themselves; a bytes-building encoder was tried and cost twice as much (``bytes %`` formatting and
many small objects).
"""

from __future__ import annotations

import base64
from typing import Any, Sequence

import orjson
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4,
         SpanKind.CONSUMER: 5}
_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
# The same, by the members' identity: hashing an Enum member runs Python code (``Enum.__hash__``).
_KIND_BY_ID = {id(k): v for k, v in _KIND.items()}
_STATUS_BY_ID = {id(k): v for k, v in _STATUS.items()}
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


#: Encoded ``{"key": ..., "value": ...}`` entries of str and int attributes, by (key, value): most
#: attributes of a run repeat (method, address, step, phase, template), so most are never built
#: twice. Keys whose values keep changing (ids, URLs, timestamps) stop being cached after
#: :data:`_DISTINCT_MAX` values, so the cache keeps the repeating ones; it never holds more than
#: :data:`_ENTRIES_MAX`. Only :func:`encode_request` output holds these (as bytes), never a dict
#: a caller could change.
_ENTRIES: dict[tuple[Any, ...], dict[str, Any]] = {}
_ENTRIES_MAX = 8192
_DISTINCT_MAX = 64
_DISTINCT: dict[str, int] = {}  # distinct values cached per key
_UNCACHED: set[str] = set()  # keys with too many distinct values


def _entry(k: str, v: Any, t: type) -> dict[str, Any]:
    entry = {"key": k, "value": {"stringValue": v} if t is str else {"intValue": str(v)}}
    if k in _UNCACHED or len(_ENTRIES) >= _ENTRIES_MAX:
        return entry
    seen = _DISTINCT.get(k, 0) + 1
    if seen > _DISTINCT_MAX:
        _UNCACHED.add(k)
        for old in [key for key in list(_ENTRIES) if key[0] == k]:  # list(): one step under the GIL
            _ENTRIES.pop(old, None)
        return entry
    _DISTINCT[k] = seen
    _ENTRIES[(k, v) if t is str else (k, v, int)] = entry
    return entry


def _attributes(attrs: Any) -> list[dict[str, Any]]:
    if not attrs:
        return []
    # ``copy()`` first: a span's ``attributes`` is a read-only view of the SDK's BoundedAttributes,
    # whose ``items()`` goes key by key through the Mapping ABC; its ``copy()`` is a plain dict
    # (three times cheaper to walk). str and int values (exact types: a bool is not an int here)
    # come from the entry cache, where an int's key is a 3-tuple, so "1" and 1 never meet.
    copy = getattr(attrs, "copy", None)
    items = (copy() if copy is not None else attrs).items()
    out = []
    append = out.append
    get = _ENTRIES.get
    for k, v in items:
        t = type(v)
        if t is str:
            append(get((k, v)) or _entry(k, v, t))
        elif t is int:
            append(get((k, v, int)) or _entry(k, v, t))
        else:
            append({"key": k, "value": _value(v)})
    return out


class _Hex:
    """Hex ids of one batch, each formatted once: the spans of a batch share trace ids, and a
    span's id is also its children's parent id."""

    __slots__ = ("traces", "spans")

    def __init__(self) -> None:
        self.traces: dict[int, str] = {}
        self.spans: dict[int, str] = {}

    def trace(self, trace_id: int) -> str:
        text = self.traces.get(trace_id)
        if text is None:
            text = self.traces[trace_id] = format(trace_id, "032x")
        return text

    def span(self, span_id: int) -> str:
        text = self.spans.get(span_id)
        if text is None:
            text = self.spans[span_id] = format(span_id, "016x")
        return text


def _span(s: ReadableSpan, hexes: _Hex | None = None) -> dict[str, Any]:
    hexes = hexes or _Hex()
    if type(s) is ReadableSpan:
        # What the SDK hands to span processors: its fields are read directly, since the public
        # properties copy (``events`` and ``links`` into a new tuple under a lock, ~1 us each) or
        # wrap (``attributes`` in a MappingProxy whose truth test runs Python code) only to be
        # found empty on most spans. Any other ReadableSpan goes through the properties.
        ctx, parent, name, kind = s._context, s._parent, s._name, s._kind
        events, links, status = s._events, s._links, s._status
        start, end = s._start_time, s._end_time
        bounded = s._attributes
        if isinstance(bounded, BoundedAttributes):
            attrs, dropped_attrs = bounded.copy(), bounded.dropped
        else:
            attrs, dropped_attrs = bounded, s.dropped_attributes
    else:
        ctx, parent, name, kind = s.context, s.parent, s.name, s.kind
        events, links, status = s.events, s.links, s.status
        start, end = s.start_time, s.end_time
        attrs, dropped_attrs = s.attributes, s.dropped_attributes
    out: dict[str, Any] = {"traceId": hexes.trace(ctx.trace_id), "spanId": hexes.span(ctx.span_id)}
    if ctx.trace_state:
        out["traceState"] = ctx.trace_state.to_header()
    if parent is not None:
        out["parentSpanId"] = hexes.span(parent.span_id)
    # As the SDK's encoder: the is-remote bits only (it leaves the W3C trace-flags byte at 0).
    out["flags"] = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
    out["name"] = name
    out["kind"] = _KIND_BY_ID.get(id(kind), 1)
    out["startTimeUnixNano"] = str(start)
    out["endTimeUnixNano"] = str(end)
    if attrs:
        out["attributes"] = _attributes(attrs)
    if dropped_attrs:
        out["droppedAttributesCount"] = dropped_attrs
    if events:
        out["events"] = [
            {"timeUnixNano": str(e.timestamp), "name": e.name,
             **({"attributes": _attributes(e.attributes)} if e.attributes else {})}
            for e in events
        ]
    dropped = s.dropped_events
    if dropped:
        out["droppedEventsCount"] = dropped
    if links:
        items = []
        for link in links:
            item: dict[str, Any] = {"traceId": hexes.trace(link.context.trace_id),
                                    "spanId": hexes.span(link.context.span_id)}
            if link.attributes:
                item["attributes"] = _attributes(link.attributes)
            item["flags"] = _HAS_IS_REMOTE | (_IS_REMOTE if link.context.is_remote else 0)
            items.append(item)
        out["links"] = items
    dropped = s.dropped_links
    if dropped:
        out["droppedLinksCount"] = dropped
    code = _STATUS_BY_ID.get(id(status.status_code), 0)
    if code or status.description:
        st: dict[str, Any] = {}
        if status.description:
            st["message"] = status.description
        if code:
            st["code"] = code
        out["status"] = st
    else:
        out["status"] = {}
    return out


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """One ``ExportTraceServiceRequest`` as compact UTF-8 OTLP/JSON (one line, no newline)."""
    return orjson.dumps(_request(spans))


def to_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The request :func:`encode_request` writes, parsed back (for tests and tools)."""
    return orjson.loads(encode_request(spans))


class _Direct:
    """Ids of a lone span, formatted as they come (no batch to share them with)."""

    __slots__ = ()

    @staticmethod
    def trace(trace_id: int) -> str:
        return format(trace_id, "032x")

    @staticmethod
    def span(span_id: int) -> str:
        return format(span_id, "016x")


_DIRECT: Any = _Direct()


def encode_span(span: ReadableSpan) -> bytes:
    """One span's entry of a request's ``spans`` list, as OTLP/JSON bytes, for encoding a span
    when it ends (:mod:`harness.span_file`); :func:`frame_request` puts such entries into
    requests."""
    return orjson.dumps(_span(span, _DIRECT))


def _resource(resource: Any) -> dict[str, Any]:
    return {"attributes": _attributes(resource.attributes)} if resource else {}


def _scope(scope: Any) -> dict[str, Any]:
    sc: dict[str, Any] = {"name": scope.name}
    if scope.version:
        sc["version"] = scope.version
    if getattr(scope, "attributes", None):
        sc["attributes"] = _attributes(scope.attributes)
    return sc


class Frame:
    """The encoded text around one (resource, scope) group's spans in a request: built once per
    group, so a request of encoded spans is only byte joins (see :func:`frame_request`)."""

    __slots__ = ("resource_open", "resource_close", "scope_open", "scope_close")

    def __init__(self, resource: Any, scope: Any) -> None:
        self.resource_open = b'{"resource":' + orjson.dumps(_resource(resource)) + b',"scopeSpans":['
        url = resource.schema_url if resource is not None else ""
        self.resource_close = b"]" + (b',"schemaUrl":' + orjson.dumps(url) if url else b"") + b"}"
        self.scope_open = (b'{"scope":' + orjson.dumps(_scope(scope)) + b","
                           if scope is not None else b"{") + b'"spans":['
        url = scope.schema_url if scope is not None else ""
        self.scope_close = b"]" + (b',"schemaUrl":' + orjson.dumps(url) if url else b"") + b"}"


def frame_request(resources: Sequence[Sequence[tuple[Frame, Sequence[bytes]]]], end: bytes = b"") -> bytes:
    """One request from encoded spans: ``resources`` holds, per resource, its scopes' frames
    (made from that resource and the scope) and their spans' :func:`encode_span` bytes; ``end``
    is appended (a newline, for a file of lines).

    Byte for byte what :func:`encode_request` writes for the same spans in the same grouping.
    The pieces are joined once (a batch is megabytes: nested joins copied it four times more)."""
    parts = [b'{"resourceSpans":[']
    append = parts.append
    for i, scopes in enumerate(resources):
        if i:
            append(b",")
        append(scopes[0][0].resource_open)
        for j, (frame, spans) in enumerate(scopes):
            if j:
                append(b",")
            append(frame.scope_open)
            append(b",".join(spans))
            append(frame.scope_close)
        append(scopes[0][0].resource_close)
    append(b"]}")
    if end:
        append(end)
    return b"".join(parts)


def _request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Spans grouped by resource, then instrumentation scope (shares cached entries: encode it,
    never hand it out)."""
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
    hexes = _Hex()
    for resource, scopes in by_resource.items():
        scope_spans = []
        for scope, members in scopes.items():
            entry: dict[str, Any] = {}
            if scope is not None:
                entry["scope"] = _scope(scope)
            entry["spans"] = [_span(s, hexes) for s in members]
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        rs: dict[str, Any] = {"resource": _resource(resource), "scopeSpans": scope_spans}
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
