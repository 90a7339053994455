"""The harness's propagator says exactly what the SDK's W3C trace context + baggage composite says."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.trace.propagation import _SPAN_KEY

from harness.propagation import BAGGAGE_STEP, HarnessPropagator, with_step
from harness.steps import Step
from harness.telemetry import caller_step, extract_context, inject_headers

SDK = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
OURS = HarnessPropagator()
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

CARRIERS = [
    {},
    {"traceparent": TP},
    {"traceparent": TP, "baggage": "openstack.boot.step=20"},
    {"traceparent": TP.replace("-01", "-00"), "baggage": "openstack.boot.step=3"},
    {"traceparent": TP, "tracestate": "vendor=abc,other=1", "baggage": "openstack.boot.step=5"},
    {"traceparent": TP.upper()},  # invalid: hex must be lowercase
    {"traceparent": " " + TP + " "},  # whitespace is allowed around it
    {"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"},
    {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01"},
    {"traceparent": ""},
    {"traceparent": "garbage", "baggage": "openstack.boot.step=7"},
    {"baggage": "openstack.boot.step=7"},
    {"baggage": "openstack.boot.step=7,user=alice%20b"},
    {"baggage": " openstack.boot.step = 7 "},
    {"baggage": "openstack.boot.step=x"},
    {"baggage": "openstack.boot.step=7;meta=1"},
    {"baggage": "key=v%2Cw"},
    {"baggage": ""},
    {"baggage": "=nokey"},
    {"traceparent": TP, "baggage": "openstack.boot.step=020"},  # past the table of usual steps
    {"traceparent": TP, "baggage": "openstack.boot.step=300"},
    {"traceparent": TP.replace("-01", "-03"), "baggage": "openstack.boot.step=0"},
    {"traceparent": TP, "baggage": "user=alice"},
    {"traceparent": TP, "baggage": "openstack.boot.step=1234567890"},  # too long for the pattern
]


def _view(ctx: context.Context) -> tuple:
    sc = trace.get_current_span(ctx).get_span_context()
    return (sc.trace_id, sc.span_id, sc.is_remote, int(sc.trace_flags), sc.trace_state.to_header()
            if sc.trace_state else None, dict(baggage.get_all(ctx)))


@pytest.mark.parametrize("carrier", CARRIERS, ids=[str(c) for c in CARRIERS])
def test_extract_is_the_sdk_composite(carrier):
    assert _view(OURS.extract(carrier)) == _view(SDK.extract(carrier))
    base = baggage.set_baggage("earlier", "1")  # an explicit context is built upon, as the SDK does
    assert _view(OURS.extract(carrier, base)) == _view(SDK.extract(carrier, base))


def test_extract_ignores_the_current_context_as_the_sdk_does():
    token = context.attach(baggage.set_baggage("ambient", "yes"))
    try:
        assert _view(OURS.extract({"baggage": "openstack.boot.step=4"})) == _view(
            SDK.extract({"baggage": "openstack.boot.step=4"}))
    finally:
        context.detach(token)


def _contexts():
    span = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False,
                                        TraceFlags(1)))
    with_state = NonRecordingSpan(SpanContext(1, 2, False, TraceFlags(0), TraceState([("v", "1")])))
    yield context.Context()
    yield trace.set_span_in_context(span)
    yield trace.set_span_in_context(with_state)
    yield baggage.set_baggage(BAGGAGE_STEP, "12", trace.set_span_in_context(span))
    yield baggage.set_baggage(BAGGAGE_STEP, "12")
    yield baggage.set_baggage(BAGGAGE_STEP, "a b")
    yield baggage.set_baggage("user", "x,y", baggage.set_baggage(BAGGAGE_STEP, "3"))
    yield baggage.set_baggage("user", "x")
    yield baggage.set_baggage(BAGGAGE_STEP, "020", trace.set_span_in_context(span))
    yield baggage.set_baggage(BAGGAGE_STEP, "300", trace.set_span_in_context(span))
    yield baggage.set_baggage(BAGGAGE_STEP, 12)  # not a str: the SDK's formatting
    yield context.set_value(_BAGGAGE_KEY, "not a dict", trace.set_span_in_context(span))
    yield context.set_value(_SPAN_KEY, "not a span")


@pytest.mark.parametrize("ctx", list(_contexts()))
def test_inject_is_the_sdk_composite(ctx):
    ours, sdk = {}, {}
    OURS.inject(ours, ctx)
    SDK.inject(sdk, ctx)
    assert ours == sdk


def test_custom_getter_and_setter_go_through_the_sdk():
    class Headers(list):
        pass

    class Getter:
        def get(self, carrier, key):
            return [v for k, v in carrier if k == key] or None

        def keys(self, carrier):
            return [k for k, _ in carrier]

    class Setter:
        def set(self, carrier, key, value):
            carrier.append((key, value))

    ctx = baggage.set_baggage(BAGGAGE_STEP, "9", trace.set_span_in_context(NonRecordingSpan(
        SpanContext(5, 6, False, TraceFlags(1)))))
    ours, sdk = Headers(), Headers()
    OURS.inject(ours, ctx, Setter())
    SDK.inject(sdk, ctx, Setter())
    assert ours == sdk and len(ours) == 2
    assert _view(OURS.extract(ours, getter=Getter())) == _view(SDK.extract(sdk, getter=Getter()))


def test_headers_carry_the_span_and_step_to_the_callee():
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("caller") as span:
        token = context.attach(baggage.set_baggage("user", "kept"))
        try:
            headers = inject_headers({"X-Auth-Token": "t"}, step=21)
            plain = inject_headers(step=None)
        finally:
            context.detach(token)
    assert headers["traceparent"].split("-")[2] == format(span.get_span_context().span_id, "016x")
    assert "user=kept" in headers["baggage"] and "openstack.boot.step=21" in headers["baggage"]
    assert plain["baggage"] == "user=kept"  # no step: the step is dropped, the rest kept
    token = context.attach(extract_context(headers))
    try:
        assert caller_step() == 21
    finally:
        context.detach(token)


def test_with_step_copies_only_when_it_changes_something():
    ctx = baggage.set_baggage(BAGGAGE_STEP, "5")
    assert with_step(5, ctx) is ctx
    assert baggage.get_baggage(BAGGAGE_STEP, with_step(6, ctx)) == "6"
    assert baggage.get_baggage(BAGGAGE_STEP, with_step(None, ctx)) is None
    empty = context.Context()
    assert with_step(None, empty) is empty
    for step, base in [(7, empty), (300, ctx), (True, ctx), (Step.SPAWN, ctx),
                       (4, context.set_value(_BAGGAGE_KEY, "not a dict"))]:
        before = dict(base)
        expected = baggage.set_baggage(BAGGAGE_STEP, str(int(step)), base)
        assert with_step(step, base) == expected and dict(base) == before  # base unchanged
    ambient = context.attach(baggage.set_baggage("user", "x"))
    try:
        assert with_step(3) == baggage.set_baggage(BAGGAGE_STEP, "3")
    finally:
        context.detach(ambient)


def test_inject_of_a_light_span_is_the_sdk_composite():
    """A service's light span (its context read directly), given and as the current context."""
    from harness.light_span import LightSpan
    from harness.telemetry import Telemetry

    tracer = Telemetry(run_dir=None, use_env_otlp=False).tracer("nova-compute")
    with tracer.start_as_current_span("parent") as span:
        assert type(span) is LightSpan
        ctx = with_step(20)
        token = context.attach(ctx)
        try:
            for given in (ctx, None):
                ours, sdk = {}, {}
                OURS.inject(ours, given)
                SDK.inject(sdk, given)
                assert ours == sdk
                assert ours["traceparent"].endswith(f"{span.context.span_id:016x}-{span.context.trace_flags:02x}")
        finally:
            context.detach(token)


@pytest.mark.parametrize("ambient", [
    {}, {"openstack.boot.step": "19"}, {"openstack.boot.step": "20"}, {"user": "x"},
    {"openstack.boot.step": "19", "user": "x"}, "not a dict"], ids=repr)
def test_inject_headers_is_the_sdk_composite_over_with_step(ambient):
    """inject_headers' one-pass path (no context made for the step) writes what the SDK's
    composite writes for ``with_step(step)``, whatever the current baggage and the step are;
    the current span a light one, an SDK one or none."""
    from harness.telemetry import Telemetry

    light = Telemetry(run_dir=None, use_env_otlp=False).tracer("nova-compute")
    sdk_tracer = TracerProvider().get_tracer("x")
    stated = NonRecordingSpan(SpanContext(0x1, 0x2, False, TraceFlags(1), TraceState([("v", "1")])))
    for make in (light.start_as_current_span, sdk_tracer.start_as_current_span, None):
        base = context.set_value(_BAGGAGE_KEY, ambient) if ambient != {} else context.get_current()
        token = context.attach(base)
        try:
            spans = [make("s")] if make is not None else []
            spans.append(trace.use_span(stated))
            for cm in spans:
                with cm:
                    for step in (None, 20, Step.SPAWN, 300, True, "7", 2.0):
                        expected: dict = {}
                        SDK.inject(expected, with_step(step))
                        assert inject_headers({}, step=step) == expected, (step, ambient)
        finally:
            context.detach(token)
