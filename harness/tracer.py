"""The tracer each service gets: the SDK's, with a cheaper ``start_as_current_span`` and ``start_span``.

The SDK builds ``start_as_current_span`` from two generator-based context managers (its own,
decorated with ``_agnosticcontextmanager``, around ``trace.use_span``): on the 2-core test box
that is ~4.5 us on top of the ~15 us the span itself costs (start, end, attributes), and a boot
opens ~45 spans that way. :class:`CurrentSpan` does the same thing as one small class (~1.7 us):
start the span with the SDK tracer, make it current, and on the way out record an exception that
is an ``Exception`` (not a ``BaseException`` such as a cancellation, as ``use_span`` decides), set
the ERROR status, detach, end.

``start_span`` makes the SDK's own span class (:class:`opentelemetry.sdk.trace.Span`, so every
method, processor and exporter is the SDK's), but fills it without the SDK's per-attribute
cleaning and sampler call when neither can change anything: attribute keys are non-empty str and
values exact str/int/float/bool (what the harness sets), the span limits are the defaults and the
attributes fit in them, the sampler is the default ``parentbased_always_on`` (its answer is
"record and sample" unless the parent is not sampled), no links, the SDK's internal metrics off.
Anything else goes through the SDK tracer's ``start_span``. Figures (2-core test box, 7
attributes, start + end, min of 7 runs of 20,000): the SDK's ``start_span`` 17.5 us, this one
8.5 us; with ``start_as_current_span`` 22.3 us and 10.4 us. Recording spans were the largest part
of the tracing overhead of a boot (~60 spans; with an ``always_off`` sampler a traced cloud cost
~4 ms of CPU less per boot).
At first use :func:`_self_check` builds one span both ways and compares every field; if an SDK
release makes them differ, the fast path turns itself off (with a warning) and the SDK's is used.
``tests/unit/test_tracer.py`` compares both tracers' spans, statuses, events and contexts.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from typing import Any, Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.environment_variables import OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, sampling
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)

_attach, _detach = otel_context.attach, otel_context.detach
_in_context = trace.set_span_in_context


class CurrentSpan:
    """``with tracer.start_as_current_span(...) as span``: the span starts on entry (as the SDK's
    does), is current inside, ends on exit. Also a decorator, a new span per call."""

    __slots__ = ("_start", "_name", "_context", "_kind", "_attributes", "_links", "_start_time",
                 "_record_exception", "_set_status_on_exception", "_end_on_exit", "_span", "_token")

    def __init__(self, start: Callable[..., trace.Span], name: str, context: otel_context.Context | None,
                 kind: SpanKind, attributes: Attributes, links: Sequence[Link] | None,
                 start_time: int | None, record_exception: bool, set_status_on_exception: bool,
                 end_on_exit: bool) -> None:
        self._start, self._name, self._context, self._kind = start, name, context, kind
        self._attributes, self._links, self._start_time = attributes, links, start_time
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._end_on_exit = end_on_exit

    def __enter__(self) -> trace.Span:
        span = self._span = self._start(
            self._name, self._context, self._kind, self._attributes, self._links, self._start_time,
            self._record_exception, self._set_status_on_exception)
        self._token = _attach(_in_context(span))
        return span

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        span = self._span
        try:
            _detach(self._token)
            if isinstance(exc, Exception) and span.is_recording():
                if self._record_exception:
                    span.record_exception(exc)
                if self._set_status_on_exception:
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            if self._end_on_exit:
                span.end()
        return False

    def _again(self) -> "CurrentSpan":
        return CurrentSpan(self._start, self._name, self._context, self._kind, self._attributes,
                           self._links, self._start_time, self._record_exception,
                           self._set_status_on_exception, self._end_on_exit)

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._again():
                    return await func(*args, **kwargs)
            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._again():
                return func(*args, **kwargs)
        return wrapper


_PLAIN = frozenset({str, int, float, bool})
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_SAMPLED_RANDOM = trace.TraceFlags(trace.TraceFlags.SAMPLED | trace.TraceFlags.RANDOM_TRACE_ID)
_UNSET = Status(StatusCode.UNSET)
_get_current_span = trace.get_current_span


class _HarnessSpan(SdkSpan):
    """The SDK span, filled directly with attributes already known to be clean."""

    def __init__(self, name: str, context: trace.SpanContext, parent: trace.SpanContext | None,
                 tracer: Any, attributes: dict[str, Any], kind: SpanKind, record_exception: bool,
                 set_status_on_exception: bool) -> None:
        # ReadableSpan's fields, then Span's, as their constructors set them
        self._name, self._context, self._kind, self._parent = name, context, kind, parent
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._start_time = self._end_time = None
        limits = self._limits = tracer._span_limits
        bounded = BoundedAttributes(limits.max_span_attributes, None, immutable=False,
                                    max_value_len=limits.max_span_attribute_length)
        if attributes:
            bounded._dict.update(attributes)
        self._attributes = bounded
        self._events = BoundedList(limits.max_events)
        self._links = BoundedList(limits.max_links)
        self._resource, self._status = tracer.resource, _UNSET
        self._sampler, self._trace_config = tracer.sampler, None
        self._record_exception, self._set_status_on_exception = record_exception, set_status_on_exception
        self._span_processor = tracer.span_processor
        self._lock = threading.Lock()
        self._record_end_metrics = None


def _fast_path_applies(sdk_tracer: Any) -> bool:
    """Whether the SDK tracer's settings are ones the fast path reproduces exactly."""
    try:
        limits = sdk_tracer._span_limits
        default = SpanLimits()
        return (
            sdk_tracer.sampler is sampling.DEFAULT_ON
            and sdk_tracer._is_enabled()
            and limits.max_span_attribute_length is None
            and limits.max_span_attributes == default.max_span_attributes
            and not os.environ.get(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, "").strip().lower() == "true"
            # the SDK's own, or harness.telemetry's (a provider's active processor there)
            and type(sdk_tracer.span_processor).__name__ in (
                "SynchronousMultiSpanProcessor", "ServiceSpanProcessor")
        )
    except Exception:  # an SDK without these attributes: use its own path
        return False


class HarnessTracer(trace.Tracer):
    """An OpenTelemetry API tracer over an SDK tracer (see the module docstring)."""

    def __init__(self, sdk_tracer: trace.Tracer, *, check: bool = True) -> None:
        self.sdk_tracer = sdk_tracer
        self._sdk_start = sdk_tracer.start_span
        limits = getattr(sdk_tracer, "_span_limits", None)
        self._max_attributes = getattr(limits, "max_span_attributes", 0) or 0
        fast = _fast_path_applies(sdk_tracer) and (not check or _self_check())
        # the SDK tracer's own method, or the fast one: bound once, no extra frame per span
        self.start_span = self._fast_start if fast else sdk_tracer.start_span  # type: ignore[method-assign]

    @property
    def fast(self) -> bool:
        """Whether spans take the fast path (see the module docstring)."""
        return self.start_span == self._fast_start

    def start_span(  # replaced per instance (``__init__``); kept for the API's abstract method
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self._sdk_start(name, context, kind, attributes, links, start_time,
                               record_exception, set_status_on_exception)

    def _fast_start(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        if links or (attributes and len(attributes) > self._max_attributes):
            return self._sdk_start(name, context, kind, attributes, links, start_time,
                                   record_exception, set_status_on_exception)
        clean: dict[str, Any] = {}
        if attributes:
            for key, value in attributes.items():
                if type(value) not in _PLAIN or type(key) is not str or not key:
                    return self._sdk_start(name, context, kind, attributes, links, start_time,
                                           record_exception, set_status_on_exception)
                clean[key] = value
        parent = _get_current_span(context).get_span_context()
        tracer = self.sdk_tracer
        ids = tracer.id_generator
        if parent is not None and parent.is_valid:
            flags = parent.trace_flags
            if not flags.sampled:  # the SDK's answer is a non-recording span
                return self._sdk_start(name, context, kind, attributes, links, start_time,
                                       record_exception, set_status_on_exception)
            trace_id, state = parent.trace_id, parent.trace_state
            random_id = flags.random_trace_id
        else:
            parent, trace_id, state = None, ids.generate_trace_id(), None
            random_id = ids.is_trace_id_random()
        span_context = trace.SpanContext(trace_id, ids.generate_span_id(), is_remote=False,
                                         trace_flags=_SAMPLED_RANDOM if random_id else _SAMPLED,
                                         trace_state=state)
        span = _HarnessSpan(name, span_context, parent, tracer, clean, kind, record_exception,
                            set_status_on_exception)
        span.start(start_time=start_time, parent_context=context)
        return span

    def start_as_current_span(  # type: ignore[override]  # a context manager, as the API's
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> CurrentSpan:
        return CurrentSpan(self.start_span, name, context, kind, attributes, links, start_time,
                           record_exception, set_status_on_exception, end_on_exit)



@functools.cache
def _self_check() -> bool:
    """Build one span with the SDK and one with the fast path (fresh providers, the same ids and
    inputs) and compare every field; False (and a warning) if an SDK release made them differ."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _Ids(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            return 0x0AF7651916CD43DD8448EB211C80319C

        def generate_span_id(self) -> int:
            return 0xB7AD6B7169203331

    views = []
    try:
        for fast in (False, True):
            provider = TracerProvider(sampler=sampling.DEFAULT_ON, id_generator=_Ids(), shutdown_on_exit=False)
            provider.add_span_processor(_Silent())
            sdk = provider.get_tracer("harness.self_check")
            tracer = HarnessTracer(sdk, check=False)
            start = tracer._fast_start if fast else sdk.start_span
            parent = start("parent", None, SpanKind.SERVER, None, None, 1)
            span = start("check", trace.set_span_in_context(parent), SpanKind.CLIENT,
                         {"k": "v", "n": 1, "f": 0.5, "b": True}, None, 2)
            span.set_attribute("late", 3)
            span.end(4)
            views.append((_fields(parent), _fields(span)))
    except Exception:
        log.warning("fast span path disabled: its self-check failed", exc_info=True)
        return False
    if views[0] != views[1]:
        differ = [(i, k) for i in (0, 1) for k in views[0][i].keys() | views[1][i].keys()
                  if views[0][i].get(k) != views[1][i].get(k)]
        log.warning("fast span path disabled: this SDK's spans differ from it in %s", differ)
        return False
    return True


class _Silent(SpanProcessor):
    """A span processor that does nothing (the self-check's spans are never seen)."""


def _fields(span: Any) -> dict[str, Any]:
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
            value = (list(value), value._dq.maxlen, value.dropped)
        out[key] = value
    return out
