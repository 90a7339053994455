"""The tracer each service gets: the SDK tracer's spans, recorded for a fraction of its cost.

A boot records ~60 spans; through the SDK's ``start_span`` and ``Span`` each cost ~25 us in the
running cloud (start, current, attributes, end, processors). :class:`HarnessTracer` has three
ways to start a span, chosen per tracer and re-chosen when its provider's processors change:

* ``light`` (:class:`harness.light_span.LightSpan`): a ``__slots__`` span that is its own
  ``ReadableSpan``. Used when the SDK's settings are ones it reproduces (below) and every
  processor that sees the span is the harness's own (:func:`light_processors`): the provider's
  active processor is :class:`harness.telemetry.ServiceSpanProcessor`, processors added to it are
  classes of the ``harness`` package (the latency model's step ledger), and its shared processors
  are the SDK's Batch/SimpleSpanProcessor (which only hand spans to exporters, and exporters read
  the ``ReadableSpan`` fields the light span has).
* ``fast`` (:class:`_HarnessSpan`): the SDK's own span class, filled without its per-attribute
  cleaning and sampler call. Used with the same settings when another processor is registered
  (a user's processor may read the SDK span's internals or keep it writable).
* ``sdk``: the SDK tracer's ``start_span`` itself, for any other settings.

The settings both faster paths reproduce: the default ``parentbased_always_on`` sampler (its
answer is "record and sample" unless the parent is not sampled; spans with links, odd attribute
values or keys, or more attributes than the limit are the SDK's), the default attribute length
limit (none), the tracer enabled, the SDK's internal metrics off. The light path also takes the
decisions of ``traceidratio``, ``parentbased_traceidratio``, ``always_on`` and ``always_off``
itself (:func:`sampler_rule`: they depend on the ids and the parent's flag only), making a
dropped span the SDK's ``NonRecordingSpan`` with the same ids and flags; before, every span of a sampled run went through the SDK and sampling one trace in
ten cost more than tracing all of them.

:class:`CurrentSpan` is ``start_as_current_span`` as one small class (the SDK's is two
generator-based context managers): start, make current through the context variable itself
(when the runtime context is the default contextvars one), and on the way out record an exception
that is an ``Exception`` (not a ``BaseException`` such as a cancellation, as ``use_span``
decides), set the ERROR status, detach, end. Also a decorator (a new span per call).

``HARNESS_TRACER_PATH=sdk`` (or ``fast``) caps the path for a process, to rule the harness's own
span types out when a trace looks wrong.

Figures (``python bench/span_record.py``, 2-core box shared with other work, best of 7 runs of
20,000 spans, a service's provider without the spans file): start + 7 attributes + 2 late ones +
end: SDK 21.1 us, fast 11.7 us, light 4.1 us; ``start_as_current_span`` with 8 attributes: SDK
25.0, fast 12.0, light 4.9 us. In the cloud (``bench/bench_capacity.py --boots 400 --concurrency
64``, three runs each, interleaved): 11.1 -> 9.8 ms of CPU a boot with the light spans and the
propagator's one-copy contexts. Later (session of 16:00 UTC): CurrentSpan without ``__init__``,
nine-field light spans, keys checked against those seen, plain-dict counters: light 3.8 -> 3.1
us, 4.6 -> 3.6 us, a child under a parent 4.0 -> 3.1 us.
At first use :func:`harness.tracer_check.self_check` builds the same spans each way and compares
every field a processor or exporter reads; a path that differs turns itself off with a warning.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import random
import threading
from time import time_ns
from typing import Any, Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.environment_variables import OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanLimits, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.util.types import Attributes

from harness.light_span import KEYS, PLAIN, UNSET, Extra, LightSpan, Settings, links_for, plain_keys

log = logging.getLogger(__name__)
_context_log = logging.getLogger("opentelemetry.context")  # where the API logs a failed detach

_runtime = otel_context._RUNTIME_CONTEXT
if type(_runtime) is ContextVarsRuntimeContext:  # the default: the context variable itself
    _cv_get, _cv_set, _cv_reset = (_runtime._current_context.get, _runtime._current_context.set,
                                   _runtime._current_context.reset)
else:  # another runtime context (OTEL_PYTHON_CONTEXT): through the API
    _cv_get, _cv_set, _cv_reset = (otel_context.get_current, otel_context.attach,
                                   otel_context.detach)


class CurrentSpan:
    """``with tracer.start_as_current_span(...) as span``: the span starts on entry (as the SDK's
    does), is current inside, ends on exit. Also a decorator, a new span per call.

    Made by :meth:`HarnessTracer.start_as_current_span` without an ``__init__`` frame (see
    :func:`_current_span`): the start's arguments kept as one tuple (two fields set, not ten)."""

    __slots__ = ("_start", "_args", "_end_on_exit", "_span", "_token")

    def __init__(self, start: Callable[..., trace.Span], name: str, context: Context | None,
                 kind: SpanKind, attributes: Attributes, links: Sequence[Link] | None,
                 start_time: int | None, record_exception: bool, set_status_on_exception: bool,
                 end_on_exit: bool) -> None:
        self._start, self._end_on_exit = start, end_on_exit
        self._args = (name, context, kind, attributes, links, start_time, record_exception,
                      set_status_on_exception)

    def __enter__(self) -> trace.Span:
        span = self._span = self._start(*self._args)
        # trace.use_span's attach(set_span_in_context(span)): the current context plus the span
        values = _cv_get().copy()
        values[_SPAN_KEY] = span
        self._token = _cv_set(Context(values))
        return span

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        span = self._span
        try:
            try:  # as the API's detach: a failure is logged, never raised
                _cv_reset(self._token)
            except Exception:
                _context_log.exception("Failed to detach context")
            if exc is not None and isinstance(exc, Exception) and span.is_recording():
                if self._args[6]:  # record_exception
                    span.record_exception(exc)
                if self._args[7]:  # set_status_on_exception
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            if self._end_on_exit:
                span.end()
        return False

    def _again(self) -> "CurrentSpan":
        return _current_span(self._start, self._args, self._end_on_exit)

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


def _current_span(start: Callable[..., trace.Span], args: tuple, end_on_exit: bool) -> CurrentSpan:
    """A :class:`CurrentSpan` of ``start(*args)``, made without its ``__init__``."""
    cm = _new(CurrentSpan)
    cm._start, cm._args, cm._end_on_exit = start, args, end_on_exit
    return cm


_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_SAMPLED_RANDOM = trace.TraceFlags(trace.TraceFlags.SAMPLED | trace.TraceFlags.RANDOM_TRACE_ID)
_RANDOM = trace.TraceFlags(trace.TraceFlags.RANDOM_TRACE_ID)
_DEFAULT_FLAGS = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_NO_STATE = trace.DEFAULT_TRACE_STATE
_TRACE_MAX, _SPAN_MAX = (1 << 128) - 1, (1 << 64) - 1
_new_context = tuple.__new__  # SpanContext is a tuple; its __new__ only checks what we check
_new = object.__new__
_getrandbits = random.getrandbits
_NonRecordingSpan = trace.NonRecordingSpan


class _HarnessSpan(SdkSpan):
    """The SDK span, filled directly with attributes already known to be clean."""

    def __init__(self, name: str, context: SpanContext, parent: SpanContext | None,
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
        self._resource, self._status = tracer.resource, UNSET
        self._sampler, self._trace_config = tracer.sampler, None
        self._record_exception, self._set_status_on_exception = record_exception, set_status_on_exception
        self._span_processor = tracer.span_processor
        self._lock = threading.Lock()
        self._record_end_metrics = None


#: :func:`sampler_rule`'s answer for the default ``parentbased_always_on``: every root sampled.
ALWAYS_ON_RULE = (True, None)


def sampler_rule(sampler: Any) -> tuple[bool, int | None] | None:
    """How the light path decides for the SDK's ``sampler``, or None when it cannot say.

    ``(parent_based, bound)``: with ``parent_based`` a span with a valid parent follows the
    parent's sampled flag (ParentBased's default delegates: ALWAYS_ON for a sampled parent, ALWAYS_OFF
    for another) and a root is decided by ``bound``; without it every span is. ``bound`` None
    samples every such span; an int samples it when the low 64 bits of its trace id are below it
    (``TraceIdRatioBased``: ``OTEL_TRACES_SAMPLER=[parentbased_]traceidratio``). Both decisions
    depend on ids only, as those samplers' do, so the light path can take them without the
    sampler's call and its result object (the self-check compares them with the SDK's)."""
    if sampler is sampling.DEFAULT_ON:
        return ALWAYS_ON_RULE
    if sampler is sampling.ALWAYS_ON:  # always_on: every span, whatever its parent says
        return False, None
    if sampler is sampling.ALWAYS_OFF:  # always_off: no span (bound 0 keeps none)
        return False, 0
    kind = type(sampler)
    if kind is sampling.TraceIdRatioBased:
        return False, sampler.bound
    if kind in (sampling.ParentBased, sampling.ParentBasedTraceIdRatio):
        delegates = (getattr(sampler, "_remote_parent_sampled", None),
                     getattr(sampler, "_remote_parent_not_sampled", None),
                     getattr(sampler, "_local_parent_sampled", None),
                     getattr(sampler, "_local_parent_not_sampled", None))
        if delegates != (sampling.ALWAYS_ON, sampling.ALWAYS_OFF, sampling.ALWAYS_ON, sampling.ALWAYS_OFF):
            return None
        root = getattr(sampler, "_root", None)
        if root is sampling.ALWAYS_ON:
            return ALWAYS_ON_RULE
        if type(root) is sampling.TraceIdRatioBased:
            return True, root.bound
    return None


def fast_path_applies(sdk_tracer: Any) -> bool:
    """Whether the SDK tracer's settings are ones the light path reproduces exactly (the fast
    path also needs :data:`ALWAYS_ON_RULE`: see :meth:`HarnessTracer._choose`)."""
    try:
        limits = sdk_tracer._span_limits
        default = SpanLimits()
        return (
            sampler_rule(sdk_tracer.sampler) is not None
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


_EXPORT_PROCESSORS = (BatchSpanProcessor, SimpleSpanProcessor)


def _harness_own(obj: Any) -> bool:
    return type(obj).__module__.split(".", 1)[0] == "harness"


def light_processors(processor: Any) -> tuple[Any, ...] | None:
    """The processors added to ``processor`` if light spans may go to it (see the module
    docstring), else None. The tuple is the processor's own: it is replaced when one is added,
    so the tracer watches its identity."""
    if type(processor).__name__ != "ServiceSpanProcessor" or not _harness_own(processor):
        return None
    added, batches = getattr(processor, "_added", None), getattr(processor, "batches", None)
    writer = getattr(processor, "writer", None)
    if type(added) is not tuple or type(batches) is not tuple:
        return None
    if not all(_harness_own(p) for p in added):
        return None
    if not all(type(b) in _EXPORT_PROCESSORS for b in batches):
        return None
    if writer is not None and not _harness_own(writer):
        return None
    return added


class HarnessTracer(trace.Tracer):
    """An OpenTelemetry API tracer over an SDK tracer (see the module docstring)."""

    def __init__(self, sdk_tracer: trace.Tracer, *, check: bool = True,
                 force: str | None = None) -> None:
        self.sdk_tracer = sdk_tracer
        self._sdk_start = sdk_tracer.start_span
        self._check = check
        limits = getattr(sdk_tracer, "_span_limits", None)
        self._max_attributes = getattr(limits, "max_span_attributes", 0) or 0
        self._fast = fast_path_applies(sdk_tracer) and (not check or _checked("fast"))
        rule = sampler_rule(getattr(sdk_tracer, "sampler", None)) if self._fast or force else None
        # the default sampler's spans may take the fast path too; a ratio's only the light one
        self._parent_based, self._bound = rule or ALWAYS_ON_RULE
        self._always_on = rule == ALWAYS_ON_RULE
        if self._fast or force is not None:
            ids = sdk_tracer.id_generator  # type: ignore[attr-defined]
            self._ids = ids
            self._random_ids = type(ids) is RandomIdGenerator
            self._settings = Settings(sdk_tracer)
            self._processor = sdk_tracer.span_processor  # type: ignore[attr-defined]
        self._watched: Any = None
        self._choose(force)

    def _choose(self, force: str | None = None) -> None:
        """Bind ``start_span`` to the path the provider's processors allow now."""
        mode = "sdk"
        if force is not None:  # the self-check's
            mode = force
            self._watched = getattr(self._processor, "_added", None)
        elif self._fast and _ceiling() != "sdk":
            self._watched = light_processors(self._processor)
            light = (self._watched is not None and _ceiling() == "light"
                     and (not self._check or _checked("light")))
            mode = "light" if light else "fast" if self._always_on else "sdk"
        self.mode = mode
        # bound once: no extra frame per span
        self.start_span = {  # type: ignore[method-assign]
            "light": self._light_start, "fast": self._fast_start, "sdk": self._sdk_start}[mode]

    @property
    def fast(self) -> bool:
        """Whether spans bypass the SDK's ``start_span`` (the light or the fast path)."""
        return self.mode != "sdk"

    def start_span(  # replaced per instance (``_choose``); kept for the API's abstract method
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self._sdk_start(name, context, kind, attributes, links, start_time,
                               record_exception, set_status_on_exception)

    def _parent(self, context: Context | None) -> tuple[bool, SpanContext | None]:
        """(whether the SDK must decide, the parent's context or None for a root)."""
        span = (_cv_get() if context is None else context).get(_SPAN_KEY)
        if span is None:
            return False, None
        if type(span) is LightSpan:
            parent = span.context
        elif isinstance(span, trace.Span):
            parent = span.get_span_context()
        else:
            return False, None  # not a span: the API's answer is INVALID_SPAN, a root
        if type(parent) is not SpanContext:
            return True, None  # the SDK raises or copes
        if not parent[5]:  # not valid: a root
            return False, None
        if not parent[3] & 1:  # not sampled: the SDK's non-recording span
            return True, None
        return False, parent

    def _light_start(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        settings = self._settings
        if self._processor._added is not self._watched:  # a processor was added: choose again
            self._choose()
            return self.start_span(name, context, kind, attributes, links, start_time,
                                   record_exception, set_status_on_exception)
        if attributes:
            if (type(attributes) is not dict or len(attributes) > settings.max_attributes
                    or not PLAIN.issuperset(map(type, attributes.values()))
                    or not (KEYS.issuperset(attributes) or plain_keys(attributes))):
                return self._sdk_start(name, context, kind, attributes, links, start_time,
                                       record_exception, set_status_on_exception)
            attrs = attributes.copy()
        else:
            attrs = {}
        # the parent, as self._parent finds it (inline: one call less per span)
        current = (_cv_get() if context is None else context).get(_SPAN_KEY)
        if current is None:
            parent = None
        elif type(current) is LightSpan and current.context[5] and current.context[3] & 1:
            parent = current.context  # valid and sampled: a light span's are, unless ids are odd
        elif (type(current) is _NonRecordingSpan and type(current._context) is SpanContext
              and current._context[5]):
            parent = current._context  # a remote parent (extract's) or an unsampled one, valid
        else:
            sdk_decides, parent = self._parent(context)
            if sdk_decides:
                return self._sdk_start(name, context, kind, attributes, links, start_time,
                                       record_exception, set_status_on_exception)
        if parent is None:  # the trace id first, then the span id: the SDK's draw order
            if self._random_ids:
                trace_id = _getrandbits(128) or self._ids.generate_trace_id()
                flags = _SAMPLED_RANDOM
            else:
                trace_id = self._ids.generate_trace_id()
                flags = _SAMPLED_RANDOM if self._ids.is_trace_id_random() else _SAMPLED
            state = _NO_STATE
            dropped = self._bound is not None and trace_id & _SPAN_MAX >= self._bound  # the ratio's
        else:
            trace_id, state = parent[0], parent[4]
            flags = _SAMPLED_RANDOM if parent[3] & 2 else _SAMPLED
            if self._parent_based:  # ParentBased: an unsampled parent's child is dropped
                dropped = not parent[3] & 1
            else:
                dropped = self._bound is not None and trace_id & _SPAN_MAX >= self._bound
        if self._random_ids:  # a dropped span gets its span id too, as the SDK's does
            span_id = _getrandbits(64) or self._ids.generate_span_id()
        else:
            span_id = self._ids.generate_span_id()
        valid = 0 < trace_id <= _TRACE_MAX and 0 < span_id <= _SPAN_MAX
        if dropped:
            # the SDK's answer: a NonRecordingSpan, no sampled flag, the parent's trace state;
            # no processor sees it, nothing is counted, and what starts under it is dropped too
            unsampled = _new(_NonRecordingSpan)
            unsampled._context = _new_context(SpanContext, (
                trace_id, span_id, False, _RANDOM if flags & 2 else _DEFAULT_FLAGS, state, valid))
            return unsampled
        span = _new(LightSpan)
        span.name = name
        span.context = _new_context(SpanContext, (trace_id, span_id, False, flags, state, valid))
        span.parent = parent
        span.kind = kind
        span.start_time = start_time if start_time is not None else time_ns()
        span.end_time = None
        span.attributes = attrs
        span._settings = settings
        if record_exception is True and set_status_on_exception is True and not links:
            span._more = None
        else:
            more = span._more = Extra(record_exception, set_status_on_exception)
            if links:
                more.links, more.dropped_links = links_for(links, settings)
        gate = settings.gate
        if gate is not None and not gate._added:  # its on_start, inline (light_span.Settings)
            settings.started[settings.service] += 1
        else:
            settings.on_start(span, parent_context=context)
        return span

    def _fast_start(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        if self._watched is not None and self._processor._added is not self._watched:
            self._choose()  # the processors changed (light spans may be allowed again)
        if links or (attributes and len(attributes) > self._max_attributes):
            return self._sdk_start(name, context, kind, attributes, links, start_time,
                                   record_exception, set_status_on_exception)
        clean: dict[str, Any] = {}
        if attributes:
            for key, value in attributes.items():
                if type(value) not in PLAIN or type(key) is not str or not key:
                    return self._sdk_start(name, context, kind, attributes, links, start_time,
                                           record_exception, set_status_on_exception)
                clean[key] = value
        sdk_decides, parent = self._parent(context)
        if sdk_decides:
            return self._sdk_start(name, context, kind, attributes, links, start_time,
                                   record_exception, set_status_on_exception)
        tracer = self.sdk_tracer
        ids = self._ids
        if parent is not None:
            trace_id, state = parent.trace_id, parent.trace_state
            random_id = parent.trace_flags.random_trace_id
        else:
            trace_id, state = ids.generate_trace_id(), None
            random_id = ids.is_trace_id_random()
        span_context = SpanContext(trace_id, ids.generate_span_id(), is_remote=False,
                                   trace_flags=_SAMPLED_RANDOM if random_id else _SAMPLED,
                                   trace_state=state)
        span = _HarnessSpan(name, span_context, parent, tracer, clean, kind, record_exception,
                            set_status_on_exception)
        span.start(start_time=start_time, parent_context=context)
        return span

    def start_as_current_span(  # type: ignore[override]  # a context manager, as the API's
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> CurrentSpan:
        cm = _new(CurrentSpan)  # _current_span, inline: no __init__ frame
        cm._start, cm._end_on_exit = self.start_span, end_on_exit
        cm._args = (name, context, kind, attributes, links, start_time, record_exception,
                    set_status_on_exception)
        return cm


#: Environment variable capping the path (``sdk``, ``fast`` or ``light``, the default): ``sdk``
#: makes every span through the SDK's own ``start_span`` (to rule the harness's paths out).
PATH_VARIABLE = "HARNESS_TRACER_PATH"
_MODES = ("sdk", "fast", "light")


def _ceiling() -> str:
    value = os.environ.get(PATH_VARIABLE, "").strip().lower() or "light"
    if value not in _MODES:
        log.warning("%s=%r is not one of %s: ignored", PATH_VARIABLE, value, ", ".join(_MODES))
        return "light"
    return value


@functools.cache
def _checked(mode: str) -> bool:
    """Whether ``mode``'s spans matched the SDK's at this process's first use (cached)."""
    from harness.tracer_check import self_check

    return self_check(mode)
