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
    return _stripped(to_otlp_json(exporter.get_finished_spans()))


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


# -- the light span (a provider as harness.telemetry builds a service's) ---------------------------

def _service_pair(**provider_kw):
    """Both tracers over a ServiceSpanProcessor that hands ended spans to an in-memory exporter
    (as the run's shared batch processors hand them to exporters): the light path's setting."""
    from collections import Counter

    from harness.telemetry import ServiceSpanProcessor

    out = []
    for wrap in (False, True):
        exporter = InMemorySpanExporter()
        processor = ServiceSpanProcessor("x", Counter(), Counter(), [SimpleSpanProcessor(exporter)])
        provider = TracerProvider(resource=Resource.create({"service.name": "x"}), id_generator=_CountingIds(),
                                  shutdown_on_exit=False, active_span_processor=processor, **provider_kw)
        sdk = provider.get_tracer("harness", schema_url="https://opentelemetry.io/schemas/1.26.0")
        out.append((HarnessTracer(sdk) if wrap else sdk, exporter))
    return out


def test_light_spans_are_the_sdk_spans():
    from harness.light_span import LightSpan
    from harness.otlp_json import via_protobuf

    (sdk, sdk_exp), (ours, our_exp) = _service_pair()
    assert ours.mode == "light"
    assert _scenario(sdk) == _scenario(ours) == [True] * 4
    _odd_cases(sdk)
    _odd_cases(ours)
    assert _shape(our_exp) == _shape(sdk_exp)
    assert _encoded(our_exp) == _encoded(sdk_exp)
    ours_spans, sdk_spans = our_exp.get_finished_spans(), sdk_exp.get_finished_spans()
    assert any(type(s) is LightSpan for s in ours_spans)
    # what an OTLP exporter sends (the SDK's protobuf encoder reads the public fields)
    strip = _stripped
    assert strip(via_protobuf(ours_spans)) == strip(via_protobuf(sdk_spans))
    for a, b in zip(ours_spans, sdk_spans):
        assert (a.dropped_attributes, a.dropped_events, a.dropped_links) == \
            (b.dropped_attributes, b.dropped_events, b.dropped_links)
        assert a.instrumentation_scope == b.instrumentation_scope and a.resource is not None


def _stripped(data):
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


def _writes(tracer, caplog):
    """Every write the API allows, in and past the limits, then writes after the end."""
    import logging

    span = tracer.start_span("w", attributes={"first": 1}, start_time=10)
    for i in range(130):  # past the 128 limit: the oldest go, counted
        span.set_attribute(f"a{i}", i)
    span.set_attribute("a5", "again")  # kept, moved to the end
    span.set_attribute("none", None)
    span.set_attribute("list", ["x", "y"])
    span.set_attribute("", "empty key")
    span.set_attribute(3, "int key")
    span.set_attributes({"odd": object(), "t": (1, 2), "": 1})
    span.set_attributes({"b1": True, "b2": False})
    for i in range(130):
        span.add_event(f"e{i}", {"i": i}, timestamp=20 + i)
    span.add_link(trace.SpanContext(0x1, 0x2, is_remote=True), {"l": 1})
    span.add_link(trace.INVALID_SPAN_CONTEXT)  # invalid, no attributes: not kept
    span.set_status(Status(StatusCode.OK, "description only with ERROR"))
    span.set_status(StatusCode.ERROR, "OK wins")
    span.update_name("w2")
    try:
        raise KeyError("k")
    except KeyError as exc:
        span.record_exception(exc, {"extra": "x"}, timestamp=200, escaped=True)
    span.end(300)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        span.end(400)
        span.set_attribute("late", 1)
        span.set_attributes({"late": 1})
        span.add_event("late")
        span.add_link(trace.SpanContext(0x1, 0x3, is_remote=False))
        span.update_name("late")
        span.set_status(StatusCode.ERROR)
        span.record_exception(ValueError("late"))
    assert not span.is_recording()
    return [(r.name, r.getMessage()) for r in caplog.records]


def test_light_span_writes_limits_and_warnings_are_the_sdks(caplog):
    (sdk, sdk_exp), (ours, our_exp) = _service_pair()
    warned = [_writes(sdk, caplog), _writes(ours, caplog)]
    assert warned[0] == warned[1] and len(warned[0]) == 8, warned
    a, b = our_exp.get_finished_spans()[0], sdk_exp.get_finished_spans()[0]
    assert type(a).__name__ == "LightSpan"
    assert list(a.attributes.items()) == list(b.attributes.items())
    assert (a.dropped_attributes, a.dropped_events, a.dropped_links) == \
        (b.dropped_attributes, b.dropped_events, b.dropped_links) == (12, 3, 0)
    assert [(e.name, e.timestamp, dict(e.attributes)) for e in a.events][:-1] == \
        [(e.name, e.timestamp, dict(e.attributes)) for e in b.events][:-1]
    assert a.status.status_code is StatusCode.OK and a.status.description is None
    assert (a.name, a.end_time, a.to_json()) == (b.name, b.end_time, b.to_json().replace(
        b.events[-1].attributes["exception.stacktrace"].replace("\n", "\\n"),
        a.events[-1].attributes["exception.stacktrace"].replace("\n", "\\n")))
    assert _encoded(our_exp) == _encoded(sdk_exp)


def test_light_span_as_a_context_manager_records_any_exception():
    (sdk, sdk_exp), (ours, our_exp) = _service_pair()
    for tracer in (sdk, ours):
        with pytest.raises(asyncio.CancelledError):
            with tracer.start_span("cm") as span:
                raise asyncio.CancelledError()
        assert not span.is_recording()
    assert _encoded(our_exp) == _encoded(sdk_exp)
    assert our_exp.get_finished_spans()[0].events[0].attributes["exception.escaped"] == "True"


def test_unsampled_parent_gives_the_sdks_non_recording_span():
    (sdk, sdk_exp), (ours, our_exp) = _service_pair()
    unsampled = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True)))
    for tracer in (sdk, ours):
        span = tracer.start_span("child", context=unsampled)
        assert type(span) is trace.NonRecordingSpan and not span.is_recording()
        assert span.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        span.end()
    assert not our_exp.get_finished_spans() and not sdk_exp.get_finished_spans()


class _AlternatingIds(_CountingIds):
    """Trace ids whose low 64 bits alternate between ~6 % and ~94 % of their range, so a 0.5
    ratio keeps every other root; span ids count as _CountingIds' do."""

    traces = 0

    def generate_trace_id(self) -> int:
        self.n += 1
        self.traces += 1
        low = 0x1000000000000000 if self.traces % 2 else 0xF000000000000000
        return (0x0AF7651916CD43DD << 64) | (low + self.n)


def _sampled_scenario(tracer):
    """Roots with children and grandchildren, a child of a remote parent either way, and what
    each span was when it started (recording or not, and its context)."""
    seen = []
    for i in range(6):
        with tracer.start_as_current_span(f"root {i}", kind=SpanKind.SERVER, attributes={"i": i}) as root:
            with tracer.start_as_current_span("child") as child:
                with tracer.start_as_current_span("grandchild", attributes={"k": "v"}) as grand:
                    seen += [(s.is_recording(), tuple(s.get_span_context())) for s in (root, child, grand)]
                    carrier = {}
                    HarnessPropagator().inject(carrier)  # what a request from here would carry
                    seen.append(carrier["traceparent"])
    for flags in (1, 0):
        remote = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
            trace_flags=trace.TraceFlags(flags))))
        with tracer.start_as_current_span("served", context=remote, kind=SpanKind.SERVER) as span:
            seen.append((span.is_recording(), tuple(span.get_span_context())))
    return seen


@pytest.mark.parametrize("sampler,roots_kept", [
    (sampling.ParentBasedTraceIdRatio(0.5), 3), (sampling.TraceIdRatioBased(0.5), 3),
    (sampling.ParentBased(sampling.ALWAYS_ON), 6), (sampling.ALWAYS_ON, 6), (sampling.ALWAYS_OFF, 0)],
    ids=["parentbased_traceidratio", "traceidratio", "parentbased_always_on", "always_on", "always_off"])
def test_ratio_samplers_keep_the_light_path_and_decide_as_the_sdk(sampler, roots_kept):
    """OTEL_TRACES_SAMPLER=[parentbased_]traceidratio: the light path takes the samplers'
    decisions itself (sampled spans light, dropped ones the SDK's NonRecordingSpan with the same
    ids and flags); before, every span went through the SDK's start_span, so sampling 10 % of
    the boots cost more than tracing all of them (244 against 276 boots/s)."""
    from harness.light_span import LightSpan

    pairs = []
    for wrap in (False, True):
        from collections import Counter

        from harness.telemetry import ServiceSpanProcessor

        exporter = InMemorySpanExporter()
        processor = ServiceSpanProcessor("x", Counter(), Counter(), [SimpleSpanProcessor(exporter)])
        provider = TracerProvider(resource=Resource.create({"service.name": "x"}), id_generator=_AlternatingIds(),
                                  shutdown_on_exit=False, active_span_processor=processor, sampler=sampler)
        sdk = provider.get_tracer("harness", schema_url="https://opentelemetry.io/schemas/1.26.0")
        pairs.append((HarnessTracer(sdk) if wrap else sdk, exporter, processor))
    (sdk, sdk_exp, sdk_proc), (ours, our_exp, our_proc) = pairs
    assert ours.mode == "light"
    theirs, mine = _sampled_scenario(sdk), _sampled_scenario(ours)
    assert mine == theirs
    recording = [r for r, _ in (x for x in mine if type(x) is tuple)]
    assert sum(recording[0:18:3]) == roots_kept  # the six roots: every other one, all or none
    # under the unsampled remote parent: dropped by ParentBased, kept by always_on and the ratio
    # (its trace id's low bits are ~0.52 of the range: above 0.5, so the ratio drops it too)
    assert recording[-1] is (sampler is sampling.ALWAYS_ON)
    assert _encoded(our_exp) == _encoded(sdk_exp)
    assert all(type(s) is LightSpan for s in our_exp.get_finished_spans())
    assert len(our_exp.get_finished_spans()) == sum(recording) > 0 or sampler is sampling.ALWAYS_OFF
    assert our_proc.started == sdk_proc.started and our_proc.ended == sdk_proc.ended


def test_half_sampled_roots_are_half_the_traces():
    """parentbased_traceidratio 0.5 over random ids: about half the roots are kept, and every
    kept root's descendants are kept, every dropped root's dropped (no broken traces)."""
    import random
    from collections import Counter

    from harness.telemetry import ServiceSpanProcessor

    random.seed(7)
    exporter = InMemorySpanExporter()
    processor = ServiceSpanProcessor("x", Counter(), Counter(), [SimpleSpanProcessor(exporter)])
    provider = TracerProvider(resource=Resource.create({"service.name": "x"}), shutdown_on_exit=False,
                              active_span_processor=processor, sampler=sampling.ParentBasedTraceIdRatio(0.5))
    tracer = HarnessTracer(provider.get_tracer("harness"))
    assert tracer.mode == "light"
    for _ in range(400):
        with tracer.start_as_current_span("root"):
            with tracer.start_as_current_span("child"):
                pass
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    children = [s for s in spans if s.parent is not None]
    assert 160 < len(roots) < 240
    assert {s.parent.span_id for s in children} == {s.context.span_id for s in roots}
    assert len(children) == len(roots)


def test_a_foreign_processor_gets_the_sdk_span_and_the_harness_own_keep_light():
    from opentelemetry.sdk.trace import Span as SdkSpan
    from opentelemetry.sdk.trace import SpanProcessor

    from harness.step_clock import StepLedger

    (_, _), (ours, exporter) = _service_pair()
    provider_processor = ours.sdk_tracer.span_processor
    provider_processor.add_span_processor(StepLedger())  # the harness's own: still light
    ours.start_span("a").end()
    assert ours.mode == "light"

    class Foreign(SpanProcessor):
        def __init__(self):
            self.started = []

        def on_start(self, span, parent_context=None):
            self.started.append(span)

    foreign = Foreign()
    provider_processor.add_span_processor(foreign)
    ours.start_span("b").end()
    assert ours.mode == "fast" and isinstance(foreign.started[0], SdkSpan)
    assert [s.name for s in exporter.get_finished_spans()] == ["a", "b"]


@pytest.mark.parametrize("value,mode", [("sdk", "sdk"), ("fast", "fast"), ("light", "light"),
                                        ("", "light"), ("bogus", "light")])
def test_the_path_variable_caps_the_path(monkeypatch, caplog, value, mode):
    monkeypatch.setenv("HARNESS_TRACER_PATH", value)
    (_, _), (ours, exporter) = _service_pair()
    assert ours.mode == mode
    with ours.start_as_current_span("s", attributes={"k": "v"}):
        pass
    assert exporter.get_finished_spans()[0].attributes["k"] == "v"
    assert ("bogus" in caplog.text) == (value == "bogus")


def test_self_checks_pass_on_this_sdk():
    from harness.tracer_check import self_check

    assert self_check("fast") and self_check("light")


def test_self_check_notices_a_difference(monkeypatch, caplog):
    from harness import light_span
    from harness.tracer_check import self_check

    original = light_span.LightSpan.update_name
    monkeypatch.setattr(light_span.LightSpan, "update_name", lambda self, name: original(self, name + "!"))
    assert not self_check("light")
    assert "light span path disabled" in caplog.text and "'name'" in caplog.text


def test_current_span_detach_failure_is_logged_not_raised(caplog):
    """As the API's detach: a token from another context is logged, the span still ends."""
    import contextvars

    (_, _), (ours, exporter) = _service_pair()
    cm = ours.start_as_current_span("s")
    contextvars.copy_context().run(cm.__enter__)  # attached in another context
    cm.__exit__(None, None, None)
    assert "Failed to detach context" in caplog.text
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]


def test_a_failed_self_check_turns_its_path_off(monkeypatch):
    """The light path's check failing leaves the fast one; both failing, the SDK's own."""
    from harness import tracer as tracer_module

    monkeypatch.setattr(tracer_module, "_checked", lambda mode: mode != "light")
    (_, _), (ours, exporter) = _service_pair()
    assert ours.mode == "fast"
    monkeypatch.setattr(tracer_module, "_checked", lambda mode: False)
    (_, _), (ours, exporter) = _service_pair()
    assert ours.mode == "sdk"
    ours.start_span("s").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]


def test_light_spans_count_and_reach_a_processor_added_while_they_run():
    """With nothing added to the ServiceSpanProcessor a light span does its hooks' work inline
    (light_span.Settings): the counters still count, and a harness processor added while a span
    is open gets that span's _on_ending and on_end, as the processor's own hooks would call it."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Recorder(SpanProcessor):
        __module__ = "harness.recorder"  # passes for the harness's own: the path stays light

        def __init__(self):
            self.calls = []

        def on_start(self, span, parent_context=None):
            self.calls.append(("start", span.name))

        def _on_ending(self, span):
            self.calls.append(("ending", span.name))

        def on_end(self, span):
            self.calls.append(("end", span.name))

    (_, _), (ours, exporter) = _service_pair()
    processor = ours.sdk_tracer.span_processor
    ours.start_span("before").end()
    open_span = ours.start_span("open")
    assert (processor.started["x"], processor.ended["x"]) == (2, 1)
    recorder = Recorder()
    processor.add_span_processor(recorder)
    open_span.end()
    ours.start_span("after").end()
    assert ours.mode == "light"
    assert recorder.calls == [("ending", "open"), ("end", "open"), ("start", "after"),
                              ("ending", "after"), ("end", "after")]
    assert (processor.started["x"], processor.ended["x"]) == (3, 3)
    assert [s.name for s in exporter.get_finished_spans()] == ["before", "open", "after"]


def test_a_light_spans_record_is_the_generic_capture(caplog):
    """``capture_light`` (what the spans file takes from a light span when it ends) reads the same
    values as ``capture`` through the ReadableSpan fields: events, links, statuses, a remote
    parent, a parent with a trace state, dropped counts."""
    from harness.light_span import LightSpan
    from harness.otlp_json import SHORT_LEN, capture, capture_light, full_records

    (_, _), (ours, our_exp) = _service_pair()
    _scenario(ours)
    _odd_cases(ours)
    _writes(ours, caplog)
    stated = HarnessPropagator().extract({
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=x"})
    with ours.start_as_current_span("under a trace state", context=stated) as span:
        span.set_status(Status(StatusCode.ERROR, "why"))
    spans = [s for s in our_exp.get_finished_spans() if type(s) is LightSpan]
    assert len(spans) >= 12 and any(s.context.trace_state for s in spans)
    assert any(s.events for s in spans) and any(s.links for s in spans)
    assert any(s.parent is not None and s.parent.is_remote for s in spans)
    short = 0
    for i, s in enumerate(spans):
        record = capture_light(s, i)
        short += len(record) == SHORT_LEN
        assert full_records([record]) == [capture(s, i)]
    assert 0 < short < len(spans)


def test_light_span_sequence_attributes_are_the_sdks():
    """set_attributes with lists and tuples of plain values (the scheduler's filter counts and
    candidates) keeps what the SDK's cleaning keeps: tuples, in order, a key set again moved to
    the end; nested or odd sequences still go through the SDK's own cleaning."""
    (sdk, sdk_exp), (ours, our_exp) = _service_pair()
    for tracer in (sdk, ours):
        span = tracer.start_span("seq", attributes={"n": 1, "f": "old"})
        span.set_attributes({"f": ["a=1", "b=2"], "c": ("x",), "m": [1, "a", 2.5, True], "e": [],
                             "n": 3})
        span.set_attributes({"nested": [["x"]], "none": ["a", None], "b": [b"x"]})
        span.set_attributes({"after": ["z"]})
        span.end()
    a, b = our_exp.get_finished_spans()[0], sdk_exp.get_finished_spans()[0]
    assert type(a).__name__ == "LightSpan"
    assert list(a.attributes.items()) == list(b.attributes.items())
    assert type(a.attributes["f"]) is tuple and a.attributes["f"] == ("a=1", "b=2")
    assert a.dropped_attributes == b.dropped_attributes == 0
    assert _encoded(our_exp) == _encoded(sdk_exp)
