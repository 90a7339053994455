"""SDK spans -> OTLP/JSON (``ExportTraceServiceRequest``), as the Collector's file exporter writes it.

Written by hand for speed, not convenience: going through the SDK's protobuf encoder and
``MessageToDict`` cost about as much CPU as the spans themselves. The mapping follows the OTLP/JSON
rules: ids as lowercase hex, enums as integers, 64-bit integers as strings, lowerCamelCase names,
default values left out. :func:`via_protobuf` is the reference the tests compare with.

Two halves, so the encoding can run in another process (:mod:`harness.span_export`):
:func:`capture` takes a record of plain values from an ended span (in the cloud's process, when
the span ends), and :class:`RecordGroups` encodes batches of records (in the export process, which
imports neither the SDK nor the API: this module imports them only on first use).
:func:`encode_request` does both for a batch of ReadableSpans (an in-process exporter's path).

Per span (9 attributes, two of them ids, the cloud's GC settings, 2,048 spans a batch, 2-core test
box): the first version cost ~13.8 us; walking a plain copy of the attributes, formatting each id
once per batch, looking enums up by identity and reusing the encoded entries of repeated
attributes brought it to ~7.3 us. The rest is the dicts themselves; a bytes-building encoder was
tried and cost twice as much (``bytes %`` formatting and many small objects).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import orjson

if TYPE_CHECKING:  # not imported at run time: the export process needs none of the SDK
    from opentelemetry.sdk.trace import ReadableSpan

# OTLP's enum codes by the API members' identity (hashing an Enum member runs Python code,
# ``Enum.__hash__``); filled on first use (:func:`_enum_codes`), so that importing this module
# does not import the OpenTelemetry API (the export process only encodes records).
_KIND_BY_ID: dict[int, int] = {}
_STATUS_BY_ID: dict[int, int] = {}


def _enum_codes() -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    _KIND_BY_ID.update({id(SpanKind.INTERNAL): 1, id(SpanKind.SERVER): 2, id(SpanKind.CLIENT): 3,
                        id(SpanKind.PRODUCER): 4, id(SpanKind.CONSUMER): 5})
    _STATUS_BY_ID.update({id(StatusCode.UNSET): 0, id(StatusCode.OK): 1, id(StatusCode.ERROR): 2})


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


# A span's record: what :func:`capture` takes from an ended span, as plain values (ints, strs,
# dicts, tuples) that ``marshal`` and ``pickle`` carry to another process, and that
# :func:`_record_span` encodes. Its fields, by position:
R_GROUP = 0  # the caller's small int for the span's (resource, scope) group
R_TRACE_ID, R_SPAN_ID, R_TRACE_STATE = 1, 2, 3  # ints; the W3C tracestate header or None
R_PARENT_ID, R_PARENT_REMOTE = 4, 5  # the parent's span id or None; its is_remote
R_NAME, R_KIND, R_START, R_END = 6, 7, 8, 9  # kind as OTLP's code (1..5)
R_ATTRS, R_DROPPED_ATTRS = 10, 11  # a plain dict (a copy)
R_EVENTS, R_DROPPED_EVENTS = 12, 13  # ((name, time, attrs dict or None, dropped attrs), ...)
R_LINKS, R_DROPPED_LINKS = 14, 15  # ((trace id, span id, is_remote, attrs or None, dropped), ...)
R_STATUS, R_STATUS_MESSAGE = 16, 17  # OTLP's status code (0..2); the description or None
#: The short record of a light span with only those (no trace state, events, links, status or
#: dropped counts: most spans), from :func:`capture_light`: (group, trace id, span id, parent id,
#: parent remote, name, kind, start, end, attributes). Eight fields fewer to build and marshal
#: (~0.2 us a span on the loop's thread); :func:`full_records` restores the layout above.
SHORT_LEN = 10


def capture(s: "ReadableSpan", group: int) -> tuple:
    """The record of an ended span (layout above), read through ReadableSpan's public attributes
    only, so any span type that has them works (the SDK's, a lighter one). ~3.6 us for the SDK's
    ReadableSpan on the 2-core box, of which ``events`` and ``links`` are ~0.6 us each (the SDK
    copies each list under a lock to say it is empty)."""
    ctx = s.context
    parent = s.parent
    status = s.status
    kind = _KIND_BY_ID.get(id(s.kind))
    code = _STATUS_BY_ID.get(id(status.status_code))
    if kind is None or code is None:
        kind, code = _codes(s.kind, status.status_code)
    trace_state = ctx.trace_state
    attrs = s.attributes
    events = s.events
    links = s.links
    return (
        group, ctx.trace_id, ctx.span_id, trace_state.to_header() if trace_state else None,
        None if parent is None else parent.span_id, parent is not None and parent.is_remote,
        s.name, kind, s.start_time, s.end_time,
        # a plain dict is the span's own (a light span's; written no more once ended): kept as
        # is; the SDK's read-only view is copied (its ``copy`` is the dict underneath's)
        attrs if type(attrs) is dict else (attrs.copy() if attrs is not None else None),
        s.dropped_attributes,
        _events(events) if events else (), s.dropped_events,
        _links(links) if links else (), s.dropped_links, code, status.description,
    )


#: What :func:`capture_light` compares a span's trace state with by identity (the one nearly
#: every light span has); set on first use by :func:`_light_constants`.
_LIGHT: list[Any] = []


def capture_light(s: Any, group: int) -> tuple:
    """:func:`capture`'s record of an ended :class:`harness.light_span.LightSpan`, read from its
    slots and its span contexts' tuple fields (``SpanContext``'s properties are Python calls,
    seven a span): the same values, ~1 us less a span on the event loop's thread. A span with no
    extra (no events, links, status or drops: most) and no trace state gets the short record
    (:data:`SHORT_LEN`)."""
    if not _LIGHT:
        _light_constants()
    ctx = s.context
    parent = s.parent
    more = s._more
    kind = _KIND_BY_ID.get(id(s.kind))
    state = ctx[4]
    if more is None and kind is not None and state is _LIGHT[0]:
        return (group, ctx[0], ctx[1], None if parent is None else parent[1],
                parent is not None and parent[2], s.name, kind, s.start_time, s.end_time,
                s.attributes)
    status = s.status
    code = _STATUS_BY_ID.get(id(status.status_code))
    if kind is None or code is None:
        kind, code = _codes(s.kind, status.status_code)
    events = s.events
    links = s.links
    return (
        group, ctx[0], ctx[1], state.to_header() if state is not _LIGHT[0] and state else None,
        None if parent is None else parent[1], parent is not None and parent[2],
        s.name, kind, s.start_time, s.end_time, s.attributes, s.dropped_attributes,
        _events(events) if events else (), s.dropped_events,
        _links(links) if links else (), s.dropped_links, code, status.description,
    )


def full_records(records: list[tuple]) -> list[tuple]:
    """``records`` with every short one (:data:`SHORT_LEN`) in the full layout."""
    return [r if len(r) != SHORT_LEN else (r[0], r[1], r[2], None, r[3], r[4], r[5], r[6], r[7],
                                           r[8], r[9], 0, (), 0, (), 0, 0, None)
            for r in records]


def _light_constants() -> None:
    from opentelemetry.trace import DEFAULT_TRACE_STATE

    _LIGHT[:] = [DEFAULT_TRACE_STATE]
    if not _KIND_BY_ID:
        _enum_codes()


def _events(events: Sequence[Any]) -> tuple:
    return tuple([(e.name, e.timestamp, e.attributes.copy() if e.attributes else None,
                   getattr(e, "dropped_attributes", 0)) for e in events])


def _links(links: Sequence[Any]) -> tuple:
    return tuple([(lk.context.trace_id, lk.context.span_id, lk.context.is_remote,
                   lk.attributes.copy() if lk.attributes else None,
                   getattr(lk, "dropped_attributes", 0)) for lk in links])


def _codes(kind: Any, status_code: Any) -> tuple[int, int]:
    if not _KIND_BY_ID:
        _enum_codes()
    return _KIND_BY_ID.get(id(kind), 1), _STATUS_BY_ID.get(id(status_code), 0)


def _record_span(r: tuple, hexes: Any) -> dict[str, Any]:
    """A record's entry of a request's ``spans`` list (dicts to encode, sharing cached ones)."""
    out: dict[str, Any] = {"traceId": hexes.trace(r[1]), "spanId": hexes.span(r[2])}
    if r[3]:
        out["traceState"] = r[3]
    parent_id = r[4]
    if parent_id is not None:
        out["parentSpanId"] = hexes.span(parent_id)
    # As the SDK's encoder: the is-remote bits only (it leaves the W3C trace-flags byte at 0).
    out["flags"] = _HAS_IS_REMOTE | (_IS_REMOTE if r[5] else 0)
    out["name"] = r[6]
    out["kind"] = r[7]
    out["startTimeUnixNano"] = str(r[8])
    out["endTimeUnixNano"] = str(r[9])
    attrs = r[10]
    if attrs:
        out["attributes"] = _attributes(attrs)
    if r[11]:
        out["droppedAttributesCount"] = r[11]
    if r[12]:
        events = []
        for name, timestamp, e_attrs, e_dropped in r[12]:
            event: dict[str, Any] = {"timeUnixNano": str(timestamp), "name": name}
            if e_attrs:
                event["attributes"] = _attributes(e_attrs)
            if e_dropped:
                event["droppedAttributesCount"] = e_dropped
            events.append(event)
        out["events"] = events
    if r[13]:
        out["droppedEventsCount"] = r[13]
    if r[14]:
        items = []
        for trace_id, span_id, is_remote, l_attrs, l_dropped in r[14]:
            item: dict[str, Any] = {"traceId": hexes.trace(trace_id), "spanId": hexes.span(span_id)}
            if l_attrs:
                item["attributes"] = _attributes(l_attrs)
            if l_dropped:
                item["droppedAttributesCount"] = l_dropped
            item["flags"] = _HAS_IS_REMOTE | (_IS_REMOTE if is_remote else 0)
            items.append(item)
        out["links"] = items
    if r[15]:
        out["droppedLinksCount"] = r[15]
    code, message = r[16], r[17]
    if code or message:
        st: dict[str, Any] = {}
        if message:
            st["message"] = message
        if code:
            st["code"] = code
        out["status"] = st
    else:
        out["status"] = {}
    return out


def _span(s: "ReadableSpan", hexes: Any = None) -> dict[str, Any]:
    return _record_span(capture(s, 0), hexes or _Hex())


def encode_request(spans: Sequence["ReadableSpan"]) -> bytes:
    """One ``ExportTraceServiceRequest`` as compact UTF-8 OTLP/JSON (one line, no newline)."""
    return orjson.dumps(_request(spans))


def to_otlp_json(spans: Sequence["ReadableSpan"]) -> dict[str, Any]:
    """The request :func:`encode_request` writes, parsed back (for tests and tools)."""
    return orjson.loads(encode_request(spans))


def _resource(resource: Any) -> dict[str, Any]:
    return {"attributes": _attributes(resource.attributes)} if resource else {}


def _scope(scope: Any) -> dict[str, Any]:
    sc: dict[str, Any] = {"name": scope.name}
    if scope.version:
        sc["version"] = scope.version
    if getattr(scope, "attributes", None):
        sc["attributes"] = _attributes(scope.attributes)
    return sc


def describe_group(resource: Any, scope: Any) -> tuple:
    """A (resource, scope) pair as plain values, for another process (:class:`RecordGroups`):
    (resource attributes, resource schema URL, scope as (name, version, schema URL, attributes)
    or None)."""
    r_attrs = dict(resource.attributes) if resource is not None else None
    r_url = resource.schema_url if resource is not None else ""
    if scope is None:
        return (r_attrs, r_url, None)
    s_attrs = getattr(scope, "attributes", None)
    return (r_attrs, r_url, (scope.name, scope.version, scope.schema_url,
                             dict(s_attrs) if s_attrs else None))


class _Described:
    """A resource or scope rebuilt from :func:`describe_group`'s values (what the encoder reads)."""

    __slots__ = ("name", "version", "schema_url", "attributes")

    def __init__(self, name: str, version: Any, schema_url: str, attributes: Any) -> None:
        self.name, self.version, self.schema_url = name, version, schema_url
        self.attributes = attributes or {}


class RecordGroups:
    """The groups of an export process's records: each group's resource and scope entries are
    encoded once, and groups whose resource (or scope) is equal share a request entry, as the
    SDK's encoder groups equal Resources."""

    def __init__(self) -> None:
        self.groups: dict[int, tuple[Any, Any, bytes, bytes, str]] = {}
        self.descriptions: dict[int, tuple] = {}
        self._resources: dict[bytes, Any] = {}
        self._scopes: dict[bytes, Any] = {}

    def add(self, gid: int, description: tuple) -> None:
        r_attrs, r_url, scope = description
        resource = _Described("", None, r_url, r_attrs) if r_attrs is not None else None
        key = orjson.dumps([r_attrs, r_url], option=orjson.OPT_SORT_KEYS, default=str)
        rkey = self._resources.setdefault(key, (len(self._resources), resource))
        scope_obj = _Described(*scope) if scope is not None else None
        skey_text = orjson.dumps(scope, option=orjson.OPT_SORT_KEYS, default=str)
        skey = self._scopes.setdefault(skey_text, (len(self._scopes), scope_obj))
        service = str((r_attrs or {}).get("service.name", "?"))
        self.groups[gid] = (rkey[0], skey[0], rkey[1], skey[1], service)
        self.descriptions[gid] = description

    def service(self, gid: int) -> str:
        return self.groups[gid][4]

    def request(self, records: Sequence[tuple]) -> dict[str, Any]:
        """One ``ExportTraceServiceRequest`` of ``records`` (their groups added before), grouped
        by resource, then scope, in first-seen order, as :func:`encode_request` groups spans."""
        by_resource: dict[int, tuple[Any, dict[int, tuple[Any, list]]]] = {}
        by_gid: dict[int, list] = {}
        groups = self.groups
        hexes = _Hex()
        for r in records:
            gid = r[0]
            members = by_gid.get(gid)
            if members is None:
                rkey, skey, resource, scope, _ = groups[gid]
                scopes = by_resource.setdefault(rkey, (resource, {}))[1]
                members = by_gid[gid] = scopes.setdefault(skey, (scope, []))[1]
            members.append(_record_span(r, hexes))
        return _framed((resource, scopes.values()) for resource, scopes in by_resource.values())

    def encode(self, records: Sequence[tuple], end: bytes = b"") -> bytes:
        """:meth:`request` as one line of compact OTLP/JSON (``end`` appended)."""
        return orjson.dumps(self.request(records)) + end


def _request(spans: Sequence["ReadableSpan"]) -> dict[str, Any]:
    """Spans grouped by resource, then instrumentation scope (shares cached entries: encode it,
    never hand it out)."""
    by_resource: dict[Any, dict[Any, list["ReadableSpan"]]] = {}
    # Spans of one provider share one Resource and one scope object: look them up by identity
    # first, since hashing a Resource serialises its attributes (json.dumps) on every call.
    by_id: dict[tuple[int, int], list["ReadableSpan"]] = {}
    for s in spans:
        resource, scope = s.resource, s.instrumentation_scope
        members = by_id.get((id(resource), id(scope)))
        if members is None:
            members = by_id[(id(resource), id(scope))] = (
                by_resource.setdefault(resource, {}).setdefault(scope, []))
        members.append(s)
    hexes = _Hex()
    return _framed(
        (resource, ((scope, [_span(s, hexes) for s in members]) for scope, members in scopes.items()))
        for resource, scopes in by_resource.items())


def _framed(groups: Iterable[tuple[Any, Iterable[tuple[Any, list[dict[str, Any]]]]]]) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` from encoded spans grouped by resource, then scope (both
    encoders frame their groups here, so the two can only differ in how a span is encoded)."""
    resource_spans = []
    for resource, scopes in groups:
        scope_spans = []
        for scope, spans in scopes:
            entry: dict[str, Any] = {}
            if scope is not None:
                entry["scope"] = _scope(scope)
            entry["spans"] = spans
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        rs: dict[str, Any] = {"resource": _resource(resource), "scopeSpans": scope_spans}
        if resource is not None and resource.schema_url:
            rs["schemaUrl"] = resource.schema_url
        resource_spans.append(rs)
    return {"resourceSpans": resource_spans}


def via_protobuf(spans: Sequence["ReadableSpan"]) -> dict[str, Any]:
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
