"""The hand-written OTLP/JSON encoder says exactly what the SDK's protobuf encoder says."""

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from harness.otlp_json import to_otlp_json, via_protobuf
from harness.telemetry import extract_context, inject_headers


def _spans():
    exporter = InMemorySpanExporter()
    out = []
    for svc in ("nova-api", "keystone"):
        provider = TracerProvider(resource=Resource.create({"service.name": svc, "harness.hosts": 8}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("harness", "1.0", schema_url="https://opentelemetry.io/schemas/1.26.0")
        with tracer.start_as_current_span("POST /servers", kind=SpanKind.SERVER, attributes={
            "openstack.boot.step": 3, "ratio": 0.5, "ok": True, "list": ["a", "b"], "nums": [1, 2],
            "empty": [],
        }) as root:
            root.add_event("instance.error", {"message": "no host"})
            headers = inject_headers()
            with tracer.start_as_current_span("call scheduler", kind=SpanKind.CLIENT,
                                              links=[Link(root.get_span_context(), {"why": "x"})]) as c:
                c.set_status(Status(StatusCode.ERROR, "boom"))
            with tracer.start_as_current_span("remote child", context=extract_context(headers),
                                              kind=SpanKind.CONSUMER):
                pass
            with tracer.start_as_current_span("ok span") as ok:
                ok.set_status(Status(StatusCode.OK))
    out.extend(exporter.get_finished_spans())
    return out


def test_same_as_the_protobuf_encoder():
    spans = _spans()
    assert to_otlp_json(spans) == via_protobuf(spans)


def test_repeated_attributes_keep_their_types():
    """Entries are reused across spans: 1, True, 1.0 and "1" under one key stay four values."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "nova-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("harness")
    for _ in range(2):
        for value in (1, True, 1.0, "1", 0, False, "", [1], ["1"]):
            with tracer.start_as_current_span("s", attributes={"v": value}):
                pass
    spans = exporter.get_finished_spans()
    data = to_otlp_json(spans)
    assert data == via_protobuf(spans)
    values = [s["attributes"][0]["value"] for s in data["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert values[:4] == [{"intValue": "1"}, {"boolValue": True}, {"doubleValue": 1.0}, {"stringValue": "1"}]
    assert values[:9] == values[9:]


def test_keys_with_ever_new_values_leave_the_entry_cache():
    """An id per span must not fill the cache and push the repeating entries out of it."""
    from harness import otlp_json

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "nova-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("harness")
    for i in range(otlp_json._DISTINCT_MAX * 3):
        with tracer.start_as_current_span("s", attributes={"test.unique.id": f"id-{i}", "test.method": "GET"}):
            pass
    spans = exporter.get_finished_spans()
    data = to_otlp_json(spans)
    assert data == via_protobuf(spans)
    assert "test.unique.id" in otlp_json._UNCACHED and "test.method" not in otlp_json._UNCACHED
    assert not any(key[0] == "test.unique.id" for key in otlp_json._ENTRIES)
    assert ("test.method", "GET") in otlp_json._ENTRIES


def test_enums_are_integers_and_ids_hex():
    data = to_otlp_json(_spans())
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert isinstance(span["kind"], int) and len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert all(c in "0123456789abcdef" for c in span["traceId"])
    _ = trace  # the API module is what instrumented code imports


def test_records_carried_by_marshal_encode_to_the_same_request():
    """The export process's path (a record captured when the span ends, carried by marshal, its
    group described once) writes byte for byte what the batch encoder writes for the spans."""
    import marshal

    from harness.otlp_json import RecordGroups, capture, describe_group, encode_request

    spans = _spans()
    gids: dict = {}
    groups = RecordGroups()
    records = []
    for s in spans:
        key = (id(s.resource), id(s.instrumentation_scope))
        if key not in gids:
            gids[key] = len(gids)
            groups.add(gids[key], marshal.loads(marshal.dumps(
                describe_group(s.resource, s.instrumentation_scope))))
        records.append(capture(s, gids[key]))
    line = groups.encode(marshal.loads(marshal.dumps(records)))
    assert len(gids) == 2
    assert line == encode_request(spans)
    assert orjson.loads(line) == via_protobuf(spans)


def test_equal_resources_share_one_entry():
    """Two providers with equal resources (two groups) make one resourceSpans entry, as the SDK's
    encoder groups equal Resources."""
    from harness.otlp_json import RecordGroups, capture, describe_group

    exporter = InMemorySpanExporter()
    for _ in range(2):
        provider = TracerProvider(resource=Resource.create({"service.name": "glance-api"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("harness").start_as_current_span("s"):
            pass
    spans = exporter.get_finished_spans()
    assert spans[0].resource is not spans[1].resource
    groups = RecordGroups()
    for gid, s in enumerate(spans):
        groups.add(gid, describe_group(s.resource, s.instrumentation_scope))
    data = groups.request([capture(s, gid) for gid, s in enumerate(spans)])
    assert data == via_protobuf(spans)
    assert len(data["resourceSpans"]) == 1 and len(data["resourceSpans"][0]["scopeSpans"]) == 1
