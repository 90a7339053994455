"""The tracer's self-check: the same spans through the SDK and through a faster path, compared.

:class:`harness.tracer.HarnessTracer` runs it once per process and path at first use. If an SDK
release changes what its spans hold, the faster path turns itself off (with a warning naming the
fields that differ) and the SDK's path is used instead, so a trace never silently changes shape.
Each check builds a parent and a child with fixed ids and times on fresh providers, writes the
child the way the services do (late attributes, one set again, an event, an exception, statuses,
a new name) and compares what processors and exporters read: for the ``fast`` path every field
of the SDK span object, for the ``light`` path every ``ReadableSpan`` field, ``to_json()`` and the
span's OTLP/JSON entry.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger("harness.tracer")


class _Ids(RandomIdGenerator):
    """Fixed ids, so both ways make the same ones."""

    def generate_trace_id(self) -> int:
        return 0x0AF7651916CD43DD8448EB211C80319C

    def generate_span_id(self) -> int:
        return 0xB7AD6B7169203331


class Collector(SpanProcessor):
    """Keeps the spans it is handed at their end (and nothing else)."""

    _added: tuple[Any, ...] = ()  # as ServiceSpanProcessor's: no processor added to it

    def __init__(self) -> None:
        self.ended: list[Any] = []

    def on_end(self, span: Any) -> None:
        self.ended.append(span)


def _write(tracer: Any) -> None:
    start = tracer.start_span
    parent = start("parent", None, SpanKind.SERVER, {"http.request.method": "POST"}, None, 1)
    span = start("check", trace.set_span_in_context(parent), SpanKind.CLIENT,
                 {"k": "v", "n": 1, "f": 0.5, "b": True}, None, 2)
    span.set_attribute("late", 3)
    span.set_attribute("k", "again")  # set again: moves to the end
    span.set_attributes({"more": "x", "n": 2})
    span.add_event("step", {"a": 1}, timestamp=3)
    try:
        raise ValueError("checked")
    except ValueError as exc:
        span.record_exception(exc, timestamp=3)
    span.set_status(Status(StatusCode.ERROR, "failed"))
    span.set_status(StatusCode.OK)
    span.set_status(Status(StatusCode.ERROR, "ignored once OK"))
    span.update_name("renamed")
    span.end(4)
    parent.end(5)


def _sdk_fields(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"__class__": SdkSpan in type(span).__mro__}
    for key, value in vars(span).items():
        if key == "_lock":
            value = type(value)
        elif key == "_span_processor":
            value = None  # the same object either way; compared by the rest of the fields
        elif key == "_limits":
            value = vars(value)
        elif key == "_status":
            value = (value.status_code, value.description)
        elif key == "_record_end_metrics":  # the SDK's internal metrics are off: a no-op either way
            value = None if value is None or getattr(value, "__name__", "") == "noop" else value
        elif isinstance(value, BoundedAttributes):
            value = (dict(value), value.maxlen, value.max_value_len, value.dropped, value._immutable)
        elif isinstance(value, BoundedList):
            value = ([_event(v) for v in value], value._dq.maxlen, value.dropped)
        out[key] = value
    return out


def _event(item: Any) -> Any:
    """An event (or link) as comparable values; anything else as it is."""
    attrs = getattr(item, "attributes", None)
    if attrs is None:
        return item
    return (getattr(item, "name", None), getattr(item, "timestamp", None),
            getattr(item, "context", None), list(attrs.items()),
            getattr(item, "dropped_attributes", 0))


def readable_fields(span: Any) -> dict[str, Any]:
    """Everything a span processor or exporter reads of an ended span (attribute order too)."""
    from harness.otlp_json import encode_request

    return {
        "name": span.name, "context": tuple(span.context), "parent": span.parent,
        "kind": span.kind, "start_time": span.start_time, "end_time": span.end_time,
        "attributes": list(span.attributes.items()),
        "events": [(e.name, e.timestamp, list(e.attributes.items()), e.dropped_attributes)
                   for e in span.events],
        "links": [(link.context, list(link.attributes.items())) for link in span.links],
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource, "scope": span.instrumentation_scope,
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "json": span.to_json(), "otlp": encode_request([span]),
        "recording": getattr(span, "is_recording", lambda: False)(),
    }


_CLASS = {"fast": "_HarnessSpan", "light": "LightSpan"}

#: Samplers whose decisions the light path takes itself (:func:`harness.tracer.sampler_rule`):
#: the check's fixed trace id (low 64 bits ~0.52 of their range) is dropped at 0.25, kept at 0.75.
_SAMPLERS = (sampling.TraceIdRatioBased(0.25), sampling.TraceIdRatioBased(0.75),
             sampling.ParentBasedTraceIdRatio(0.25), sampling.ParentBasedTraceIdRatio(0.75),
             sampling.ALWAYS_ON, sampling.ALWAYS_OFF)


def _decisions(tracer: Any) -> list[tuple]:
    """Each span's class, recording flag and context for a root, its child, and children of a
    sampled and an unsampled remote parent."""
    start = tracer.start_span
    root = start("root", None, SpanKind.SERVER, {"k": "v"}, None, 1)
    child = start("child", trace.set_span_in_context(root), SpanKind.INTERNAL, None, None, 2)
    made = [root, child]
    for flags in (trace.TraceFlags(trace.TraceFlags.SAMPLED), trace.TraceFlags(0)):
        remote = trace.NonRecordingSpan(trace.SpanContext(
            0x0AF7651916CD43DD0000000000000001, 0x00F067AA0BA902B7, is_remote=True, trace_flags=flags))
        made.append(start("remote", trace.set_span_in_context(remote), SpanKind.SERVER, None, None, 3))
    view = [(s.is_recording() or type(s).__name__, tuple(s.get_span_context())) for s in made]
    for span in reversed(made):
        span.end(4)
    return view


def _sampling_differs() -> str | None:
    """Where the light path's sampling decisions differ from the SDK's samplers, if anywhere."""
    from harness.tracer import HarnessTracer

    for sampler in _SAMPLERS:
        views = []
        for force in ("sdk", "light"):
            provider = TracerProvider(sampler=sampler, id_generator=_Ids(), shutdown_on_exit=False,
                                      active_span_processor=Collector())  # type: ignore[arg-type]
            views.append(_decisions(HarnessTracer(provider.get_tracer("harness.self_check"),
                                                  check=False, force=force)))
        if views[0] != views[1]:
            return f"{sampler.get_description()}: {views[0]} != {views[1]}"
    return None


def self_check(mode: str) -> bool:
    """Whether ``mode`` ("fast" or "light") makes the SDK's spans (False, and a warning, if not)."""
    from harness.tracer import HarnessTracer

    views = []
    try:
        for force in ("sdk", mode):
            collector = Collector()
            provider = TracerProvider(sampler=sampling.DEFAULT_ON, id_generator=_Ids(),
                                      shutdown_on_exit=False, active_span_processor=collector)  # type: ignore[arg-type]
            sdk = provider.get_tracer("harness.self_check")
            tracer = HarnessTracer(sdk, check=False, force=force)
            made: list[Any] = []
            start = tracer.start_span
            tracer.start_span = lambda *a: made.append(start(*a)) or made[-1]  # type: ignore[method-assign]
            _write(tracer)
            if force != "sdk" and {type(s).__name__ for s in made} != {_CLASS[mode]}:
                raise AssertionError(f"the {mode} path made {[type(s) for s in made]}")
            if mode == "fast":  # the span objects themselves
                views.append([_sdk_fields(s) for s in made])
            else:  # what the processor was handed
                views.append([readable_fields(s) for s in collector.ended])
    except Exception:
        log.warning("%s span path disabled: its self-check failed", mode, exc_info=True)
        return False
    if views[0] != views[1]:
        differ = sorted({(i, k) for i, (a, b) in enumerate(zip(*views))
                         for k in a.keys() | b.keys() if a.get(k) != b.get(k)})
        log.warning("%s span path disabled: this SDK's spans differ from it in %s", mode, differ)
        return False
    if mode == "light":
        try:
            differs = _sampling_differs()
        except Exception:
            log.warning("light span path disabled: its sampling self-check failed", exc_info=True)
            return False
        if differs is not None:
            log.warning("light span path disabled: this SDK samples differently: %s", differs)
            return False
    return True
