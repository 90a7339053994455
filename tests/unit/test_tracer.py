"""The harness tracer behaves as the SDK tracer: same spans (checked field by field through the
OTLP/JSON encoder, with the same ids), same current context, same handling of errors,
cancellations and decorators; the fast span path steps aside whenever it could differ."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from opentelemetry.sdk.trace import SpanLimits, sampling
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from harness.otlp_json import to_otlp_json
from harness.propagation import HarnessPropagator
from harness.tracer import HarnessTracer


class _CountingIds(RandomIdGenerator):
    """The same ids in the same order for both tracers, so their spans compare field by field."""

    def __init__(self) -> None:
        self.n = 0

    def generate_trace_id(self) -> int:
        self.n += 1
        return 0x0AF7651916CD43DD8448EB2100000000 + self.n

    def generate_span_id(self) -> int:
        self.n += 1
        return 0xB7AD6B7100000000 + self.n


def _pair(**provider_kw):
    out = []
    for wrap in (False, True):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "x"}), id_generator=_CountingIds(),
                                  shutdown_on_exit=False, **provider_kw)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        sdk = provider.get_tracer("harness", schema_url="https://opentelemetry.io/schemas/1.26.0")
        out.append((HarnessTracer(sdk) if wrap else sdk, exporter))
    return out


def _encoded(exporter):
    """The exported request without timestamps (the only thing that differs between runs)."""
    data = to_otlp_json(exporter.get_finished_spans())
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                span.pop("startTimeUnixNano"), span.pop("endTimeUnixNano")
                for event in span.get("events", ()):
                    event.pop("timeUnixNano")
                    for a in event.get("attributes", ()):
                        if a["key"] == "exception.stacktrace":
                            a["value"] = "..."
    return data


def _shape(exporter):
    return [
        (s.name, s.kind, dict(s.attributes), s.status.status_code, s.status.description,
         [(e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"})
          for e in s.events],
         s.parent is not None, s.end_time is not None, int(s.context.trace_flags),
         s.context.trace_state, s.context.is_remote, s.parent and s.parent.is_remote)
        for s in exporter.get_finished_spans()
    ]


def _scenario(tracer):
    seen = []
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={"a": 1}) as outer:
        seen.append(trace.get_current_span() is outer)
        with tracer.start_as_current_span("inner") as inner:
            seen.append(trace.get_current_span() is inner)
        seen.append(trace.get_current_span() is outer)
        with pytest.raises(ValueError):
            with tracer.start_as_current_span("fails"):
                raise ValueError("bad input")
        with pytest.raises(KeyError):
            with tracer.start_as_current_span("quiet", record_exception=False,
                                              set_status_on_exception=False):
                raise KeyError("k")
        with pytest.raises(asyncio.CancelledError):  # a BaseException: ended, not recorded
            with tracer.start_as_current_span("cancelled"):
                raise asyncio.CancelledError()
        with tracer.start_as_current_span("ok") as ok:
            ok.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("kept open", end_on_exit=False) as kept:
            pass
        kept.end()
        with tracer.start_as_current_span("root", context=trace.set_span_in_context(trace.INVALID_SPAN)):
            pass
    seen.append(trace.get_current_span() is trace.INVALID_SPAN)
    return seen


def test_same_spans_as_the_sdk_tracer():
    (sdk, sdk_exp), (ours, our_exp) = _pair()
    assert ours.fast
    assert _scenario(sdk) == _scenario(ours) == [True] * 4
    assert _shape(our_exp) == _shape(sdk_exp)
    assert _encoded(our_exp) == _encoded(sdk_exp)
    names = [s.name for s in our_exp.get_finished_spans()]
    assert names == ["inner", "fails", "quiet", "cancelled", "ok", "kept open", "root", "outer"]
    by_name = {s.name: s for s in our_exp.get_finished_spans()}
    assert by_name["root"].parent is None and by_name["inner"].parent.span_id == \
        by_name["outer"].context.span_id


def test_as_a_decorator_each_call_is_a_span():
    (sdk, sdk_exp), (ours, our_exp) = _pair()
    for tracer in (sdk, ours):
        @tracer.start_as_current_span("sync")
        def work(x):
            return trace.get_current_span().is_recording() and x

        @tracer.start_as_current_span("async")
        async def awork(x):
            return trace.get_current_span().is_recording() and x

        assert work(1) == 1 and work(2) == 2
        assert asyncio.run(awork(3)) == 3
    assert _shape(our_exp) == _shape(sdk_exp)
    assert [s.name for s in our_exp.get_finished_spans()] == ["sync", "sync", "async"]


def test_start_span_is_the_sdk_tracers_own():
    (_, _), (ours, exporter) = _pair()
    span = ours.start_span("manual", kind=SpanKind.CLIENT, attributes={"k": "v"})
    span.end()
    assert exporter.get_finished_spans()[0].attributes["k"] == "v"


def _odd_cases(tracer):
    """Inputs the fast path hands to the SDK, and remote or unsampled parents."""
    remote = HarnessPropagator().extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                          "baggage": "openstack.boot.step=5"})
    unsampled = HarnessPropagator().extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
    with tracer.start_as_current_span("from a remote parent", context=remote, kind=SpanKind.SERVER):
        pass
    with tracer.start_as_current_span("unsampled parent", context=unsampled) as span:
        assert not span.is_recording()
    with tracer.start_as_current_span("odd values", attributes={"list": ["a", "b"], "none": None, "t": (1, 2),
                                                                "bytes": b"x", "": "empty key"}):
        pass
    with tracer.start_as_current_span("many", attributes={f"a{i}": i for i in range(200)}):
        pass
    with tracer.start_as_current_span("linked", links=[trace.Link(trace.get_current_span(remote).get_span_context())]):
        pass
    with tracer.start_as_current_span("events") as span:
        span.add_event("e", {"k": "v"})
        span.set_attributes({"late": 1, "later": "x"})
        span.update_name("renamed")


def test_odd_inputs_and_parents_give_the_sdk_spans():
    (sdk, sdk_exp), (ours, our_exp) = _pair()
    _odd_cases(sdk)
    _odd_cases(ours)
    assert _encoded(our_exp) == _encoded(sdk_exp)
    assert _shape(our_exp) == _shape(sdk_exp)
    names = [s.name for s in our_exp.get_finished_spans()]
    assert names == ["from a remote parent", "odd values", "many", "linked", "renamed"]
    many = next(s for s in our_exp.get_finished_spans() if s.name == "many")
    assert many.dropped_attributes == 200 - 128


@pytest.mark.parametrize("settings", [
    {"sampler": sampling.ALWAYS_OFF},
    {"sampler": sampling.TraceIdRatioBased(0.5)},
    {"span_limits": SpanLimits(max_span_attribute_length=3)},
    {"span_limits": SpanLimits(max_span_attributes=2)},
], ids=["always_off", "ratio", "value_length", "attribute_count"])
def test_other_sdk_settings_take_the_sdk_path(settings):
    (sdk, sdk_exp), (ours, our_exp) = _pair(**settings)
    assert not ours.fast
    for tracer in (sdk, ours):
        with tracer.start_as_current_span("s", attributes={"k": "value", "n": 1, "m": 2}):
            pass
    assert _encoded(our_exp) == _encoded(sdk_exp)


def test_the_sdk_internal_metrics_take_the_sdk_path(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    (_, _), (ours, _) = _pair()
    assert not ours.fast
