"""The tracer each service gets: the SDK's, with a cheaper ``start_as_current_span``.

The SDK builds ``start_as_current_span`` from two generator-based context managers (its own,
decorated with ``_agnosticcontextmanager``, around ``trace.use_span``): on the 2-core test box
that is ~4.5 us on top of the ~15 us the span itself costs (start, end, attributes), and a boot
opens ~45 spans that way. :class:`CurrentSpan` does the same thing as one small class (~1.7 us):
start the span with the SDK tracer, make it current, and on the way out record an exception that
is an ``Exception`` (not a ``BaseException`` such as a cancellation, as ``use_span`` decides), set
the ERROR status, detach, end. Spans, their processors and exporters are the SDK's own;
``start_span`` is the SDK tracer's method itself. ``tests/unit/test_tracer.py`` compares both
tracers' spans, statuses, events and contexts.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

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


class HarnessTracer(trace.Tracer):
    """An OpenTelemetry API tracer over an SDK tracer (see the module docstring)."""

    def __init__(self, sdk_tracer: trace.Tracer) -> None:
        self.sdk_tracer = sdk_tracer
        self.start_span = sdk_tracer.start_span  # type: ignore[method-assign]  # the SDK's, no extra frame

    def start_span(  # replaced per instance by the SDK tracer's bound method (same signature)
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
        return self.sdk_tracer.start_span(name, context, kind, attributes, links, start_time,
                                          record_exception, set_status_on_exception)

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

