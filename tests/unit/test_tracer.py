"""The harness tracer's ``start_as_current_span`` behaves as the SDK tracer's: same spans, same
current context, same handling of errors, cancellations and decorators."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from harness.tracer import HarnessTracer


def _pair():
    out = []
    for wrap in (False, True):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "x"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        sdk = provider.get_tracer("harness")
        out.append((HarnessTracer(sdk) if wrap else sdk, exporter))
    return out


def _shape(exporter):
    return [
        (s.name, s.kind, dict(s.attributes), s.status.status_code, s.status.description,
         [(e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"})
          for e in s.events],
         s.parent is not None, s.end_time is not None)
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
    assert _scenario(sdk) == _scenario(ours) == [True] * 4
    assert _shape(our_exp) == _shape(sdk_exp)
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
