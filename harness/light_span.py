"""A span for the harness's services that costs a third of the SDK's to record.

The SDK's :class:`opentelemetry.sdk.trace.Span` takes a lock per call, wraps its attributes in a
``BoundedAttributes`` (a lock, a cleaning pass per value), its events and links in two
``BoundedList`` (a lock and a deque each), and on ``end`` copies itself into a new
``ReadableSpan`` for the span processors. A boot records ~60 spans, and in the running cloud that
was ~25 us a span all told. :class:`LightSpan` is one ``__slots__`` object that is both the API's
span (what the services call) and a ``ReadableSpan`` (what span processors and exporters read):
its ``name, context, parent, kind, start_time, end_time`` and ``attributes`` are plain fields,
``resource`` and ``instrumentation_scope`` its tracer's (:class:`Settings`), ``events, links,
status`` and ``dropped_attributes/events/links`` read from an :class:`Extra` made on the first
write (most spans never have one), and ``on_end`` gets the span itself (once ended nothing
changes it: every write after ``end`` is refused with the SDK's warning, as the SDK refuses it).

What it keeps of the SDK, observably: the same ids, flags, parents and sampling answer (the
tracer makes one only where the sampler records, for the samplers it reproduces; a dropped
span is the SDK's non-recording span, see :func:`harness.tracer.sampler_rule`); attributes as
the SDK's default limits apply them (a value of another type than str/int/float/bool, an odd key, or a write that would pass the
count limit goes through the SDK's own ``BoundedAttributes`` over this span's dict, so cleaning,
dropping the oldest and the warnings are the SDK's); events and links built as the SDK builds
them (``Event`` with immutable ``BoundedAttributes``), bounded by the limits' counts with the
oldest dropped; ``set_status`` with OK winning and UNSET ignored (``Status`` itself keeps a
description only with ERROR); ``record_exception`` with the SDK's four attributes; ``end`` once
(a second ``end`` warns "Calling end() on an ended span."), calls after ``end`` warn as the
SDK's do; as a context manager it records an exception and sets ERROR as the SDK's span does.
The processors see what the SDK's would: ``on_start(span, parent_context=...)`` when it starts,
``_on_ending(span)`` and ``on_end(span)`` when it ends (or, with the harness's own
processor and nothing added to it, what those do, inline: see :class:`Settings`).

What differs: ``attributes`` is the span's own dict (the SDK's ``ReadableSpan`` hands out a
read-only view; nothing is written to it after ``end``), ``events`` and ``links`` are tuples (as
the SDK's properties return), ``isinstance(span, opentelemetry.sdk.trace.Span)`` is false, and
writes from two threads at once are not serialised except ``end`` (the services write a span from
their event loop). So the tracer uses it only when every processor that sees a span is one the
harness knows reads nothing else (see :func:`harness.tracer.light_processors`); otherwise it makes
the SDK's span. ``harness.tracer._self_check`` builds the same spans both ways at first use.
"""

from __future__ import annotations

import logging
import threading
import traceback
from time import time_ns
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util import types

#: The SDK's warnings come from the SDK's logger, so filters set on it still apply.
_sdk_log = logging.getLogger("opentelemetry.sdk.trace")

PLAIN = frozenset({str, int, float, bool})  # values the SDK stores unchanged (no length limit)
STR = frozenset({str})
#: Attribute keys already found to be non-empty strs (the services use a few dozen), so that
#: ``KEYS.issuperset(attributes)`` checks a dict's keys in one C call: ~130 ns for 9 keys, against
#: ~400 ns for a type check of each. A key equal to one of them is a str or a str subclass, which
#: the SDK keeps as given too. Bounded: past :data:`KEYS_MAX`, new keys get the full check.
KEYS: set[str] = set()
KEYS_MAX = 4096
UNSET = Status(StatusCode.UNSET)
_OK, _UNSET_CODE = StatusCode.OK, StatusCode.UNSET
_END_LOCK = threading.Lock()  # end() is check-and-set: one shared lock, not one per span


class Settings:
    """What every span of one tracer shares: where it reports and the limits it obeys."""

    __slots__ = ("resource", "scope", "info", "on_start", "on_ending", "on_end", "limits",
                 "max_attributes", "max_events", "max_links", "gate", "started", "ended",
                 "service", "max_event_attributes", "plain_events")

    def __init__(self, tracer: Any) -> None:
        processor = tracer.span_processor
        self.resource, self.scope = tracer.resource, tracer._instrumentation_scope
        self.info = tracer.instrumentation_info
        self.on_start, self.on_ending, self.on_end = (
            processor.on_start, processor._on_ending, processor.on_end)
        # A processor that says its hooks may be inlined (harness.telemetry's
        # ServiceSpanProcessor): while nothing is added to it (its ``_added`` tuple, read per
        # span, so one added later is seen at once) a span counts itself in its ``started`` and
        # ``ended`` counters and hands itself to its ``_light_hand_on`` callables (its
        # ``_hand_on``, with the spans file's light-span entry), as its on_start, _on_ending
        # and on_end would: three Python calls a span less (two do nothing then).
        inline = getattr(type(processor), "INLINE_HOOKS", False) is True
        self.gate = processor if inline else None
        self.started = processor.started if inline else None
        self.ended = processor.ended if inline else None
        self.service = processor.service if inline else None
        limits: SpanLimits = tracer._span_limits
        self.limits = limits
        # None (no limit) as a number every length is below
        self.max_attributes = _bound(limits.max_span_attributes)
        self.max_events, self.max_links = _bound(limits.max_events), _bound(limits.max_links)
        # an event's clean attributes are kept as given unless values have a length limit
        self.max_event_attributes = _bound(limits.max_event_attributes)
        self.plain_events = limits.max_attribute_length is None


def plain_keys(attributes: dict[Any, Any]) -> bool:
    """Whether every key of ``attributes`` is a non-empty exact str (remembered in :data:`KEYS`);
    the check behind ``KEYS.issuperset(attributes)``, for keys not seen yet."""
    if not STR.issuperset(map(type, attributes)) or "" in attributes:
        return False
    if len(KEYS) < KEYS_MAX:
        KEYS.update(attributes)
    return True


def _plain_sequences(attributes: Any) -> dict[str, Any] | None:
    """``attributes`` as the SDK's cleaning keeps them when every value is plain or a list or
    tuple of plain values (the scheduler's filter counts and candidates): the same dict, lists
    made tuples (with no length limit on values, what ``_clean_attribute_value`` returns for
    them); None for anything else (the SDK's own cleaning then)."""
    if type(attributes) is not dict:
        return None
    cleaned = {}
    for key, value in attributes.items():
        kind = type(value)
        if kind is list or kind is tuple:
            if not PLAIN.issuperset(map(type, value)):
                return None
            value = tuple(value)
        elif kind not in PLAIN:
            return None
        cleaned[key] = value
    return cleaned


def _bound(limit: int | None) -> int:
    return (1 << 62) if limit is None else limit


class Extra:
    """What few light spans have (events, links, a status, drops, an exception flag off), kept
    apart so that a span is nine fields to fill, not eighteen (~0.2 us a span)."""

    __slots__ = ("events", "links", "status", "dropped_attributes", "dropped_events",
                 "dropped_links", "record_exception", "set_status_on_exception")

    def __init__(self, record_exception: bool = True, set_status_on_exception: bool = True) -> None:
        self.events: tuple[Event, ...] = ()
        self.links: tuple[Link, ...] = ()
        self.status = UNSET
        self.dropped_attributes = self.dropped_events = self.dropped_links = 0
        self.record_exception, self.set_status_on_exception = record_exception, set_status_on_exception


class LightSpan(trace.Span, ReadableSpan):
    """A recording span of the harness's services (see the module docstring)."""

    __slots__ = ("name", "context", "parent", "kind", "start_time", "end_time", "attributes",
                 "_settings", "_more")

    # Filled by harness.tracer (one frame less per span than an __init__); this is the
    # complete list of fields, in the order the tracer sets them.
    name: str
    context: SpanContext
    parent: SpanContext | None
    kind: SpanKind
    start_time: int
    end_time: int | None
    attributes: dict[str, Any]
    _settings: Settings
    _more: Extra | None  # None: no events, links, status or drops; exceptions recorded

    def _extra(self) -> Extra:
        more = self._more
        if more is None:
            more = self._more = Extra()
        return more

    # ReadableSpan's other fields: the settings' or the extra's (defaults without one)
    @property
    def resource(self) -> Any:  # type: ignore[override]
        return self._settings.resource

    @property
    def instrumentation_scope(self) -> Any:  # type: ignore[override]
        return self._settings.scope

    @property
    def events(self) -> tuple[Event, ...]:  # type: ignore[override]
        more = self._more
        return () if more is None else more.events

    @property
    def links(self) -> tuple[Link, ...]:  # type: ignore[override]
        more = self._more
        return () if more is None else more.links

    @property
    def status(self) -> Status:  # type: ignore[override]
        more = self._more
        return UNSET if more is None else more.status

    @property
    def dropped_attributes(self) -> int:  # type: ignore[override]
        more = self._more
        return 0 if more is None else more.dropped_attributes

    @property
    def dropped_events(self) -> int:  # type: ignore[override]
        more = self._more
        return 0 if more is None else more.dropped_events

    @property
    def dropped_links(self) -> int:  # type: ignore[override]
        more = self._more
        return 0 if more is None else more.dropped_links

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self.name}", context={self.context})'

    # -- the API's span ------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self.end_time is not None:
            _sdk_log.warning("Setting attribute on ended span.")
            return
        attrs = self.attributes
        if type(value) in PLAIN and type(key) is str and key:
            if key in attrs:  # the SDK's dict moves a key set again to the end
                del attrs[key]
                attrs[key] = value
                return
            if len(attrs) < self._settings.max_attributes:
                attrs[key] = value
                return
        self._bounded(lambda bounded: bounded.__setitem__(key, value))

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self.end_time is not None:
            _sdk_log.warning("Setting attribute on ended span.")
            return
        attrs = self.attributes
        if (type(attributes) is dict and PLAIN.issuperset(map(type, attributes.values()))
                and (KEYS.issuperset(attributes) or plain_keys(attributes))
                and len(attrs) + len(attributes) <= self._settings.max_attributes):
            items = attributes
        else:  # sequences of plain values, kept as the SDK's cleaning keeps them; else the SDK's way
            items = (_plain_sequences(attributes)
                     if self._settings.limits.max_span_attribute_length is None else None)
            if (items is None or not (KEYS.issuperset(items) or plain_keys(items))
                    or len(attrs) + len(items) > self._settings.max_attributes):
                self._bounded(lambda bounded: bounded._set_items(attributes))
                return
        for key, value in items.items():
            if key in attrs:
                del attrs[key]
            attrs[key] = value

    def _bounded(self, write: Callable[[BoundedAttributes], None]) -> None:
        """Apply ``write`` through the SDK's BoundedAttributes over this span's dict: cleaning,
        dropping and warnings exactly the SDK's."""
        limits = self._settings.limits
        bounded = BoundedAttributes(limits.max_span_attributes, None, immutable=False,
                                    max_value_len=limits.max_span_attribute_length)
        bounded._dict, bounded.dropped = self.attributes, self.dropped_attributes
        write(bounded)
        if bounded.dropped or self._more is not None:
            self._extra().dropped_attributes = bounded.dropped

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        settings = self._settings
        limits = settings.limits
        if (type(attributes) is dict and settings.plain_events
                and len(attributes) <= settings.max_event_attributes
                and PLAIN.issuperset(map(type, attributes.values()))
                and (KEYS.issuperset(attributes) or plain_keys(attributes))):
            # what the SDK's cleaning pass would keep of clean values: all of them, as given
            bounded = BoundedAttributes(limits.max_event_attributes, None, immutable=True)
            bounded._dict.update(attributes)
        else:
            bounded = BoundedAttributes(limits.max_event_attributes, attributes, immutable=True,
                                        max_value_len=limits.max_attribute_length)
        event = Event(name=name, timestamp=timestamp, attributes=bounded)
        if self.end_time is not None:
            _sdk_log.warning("Tried calling %s on an ended span.", "_add_event")
            return
        more = self._extra()
        more.events, dropped = _append(more.events, event, self._settings.max_events)
        more.dropped_events += dropped

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not _is_valid_link(context, attributes):
            return
        limits = self._settings.limits
        link = Link(context=context, attributes=BoundedAttributes(
            limits.max_link_attributes, attributes, max_value_len=limits.max_attribute_length,
            immutable=True))
        if self.end_time is not None:
            _sdk_log.warning("Tried calling %s on an ended span.", "_add_link")
            return
        more = self._extra()
        more.links, dropped = _append(more.links, link, self._settings.max_links)
        more.dropped_links += dropped

    def update_name(self, name: str) -> None:
        if self.end_time is not None:
            _sdk_log.warning("Tried calling %s on an ended span.", "update_name")
            return
        self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_time is not None:
            _sdk_log.warning("Tried calling %s on an ended span.", "set_status")
            return
        if isinstance(status, Status):  # OK wins; UNSET is never set
            if self.status.status_code is _OK or status.status_code is _UNSET_CODE:
                return
            if description is not None:
                _sdk_log.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description)
            self._extra().status = status
        elif isinstance(status, StatusCode):
            if self.status.status_code is _OK or status is _UNSET_CODE:
                return
            self._extra().status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        entries: dict[str, Any] = {
            EXCEPTION_TYPE: f"{module}.{qualname}" if module and module != "builtins" else qualname,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            entries.update(attributes)
        self.add_event(name="exception", attributes=entries, timestamp=timestamp)

    def end(self, end_time: int | None = None) -> None:
        _END_LOCK.acquire()  # not ``with``: ~0.1 us a span less; nothing in the try can raise
        try:
            ended = self.end_time is not None
            if not ended:
                self.end_time = end_time if end_time is not None else time_ns()
        finally:
            _END_LOCK.release()
        if ended:
            _sdk_log.warning("Calling end() on an ended span.")
            return
        settings = self._settings
        gate = settings.gate
        if gate is None or gate._added:
            settings.on_ending(self)
            settings.on_end(self)
        else:  # the processor's _on_ending (nothing to call) and on_end, inline (see Settings)
            settings.ended[settings.service] += 1
            for hand_on in gate._light_hand_on:
                hand_on(self)

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: Any) -> None:
        # as the SDK's span: any exception, recorded as escaped, then the API's end
        if exc_val is not None and self.end_time is None:
            more = self._more
            if more is None or more.record_exception:
                self.record_exception(exception=exc_val, escaped=True)
            if more is None or more.set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    # -- the ReadableSpan's rest -------------------------------------------------------------------

    @property
    def instrumentation_info(self) -> Any:  # deprecated in the SDK; kept for old exporters
        return self._settings.info

    def to_json(self, indent: int | None = 4) -> str:
        return self._readable().to_json(indent)

    def _readable(self) -> ReadableSpan:
        """The SDK's ReadableSpan of the same fields (read-only attributes)."""
        return ReadableSpan(
            name=self.name, context=self.context, parent=self.parent, resource=self.resource,
            attributes=MappingProxyType(self.attributes), events=self.events, links=self.links,
            kind=self.kind, instrumentation_info=self._settings.info, status=self.status,
            start_time=self.start_time, end_time=self.end_time,
            instrumentation_scope=self.instrumentation_scope)


def _append(items: tuple[Any, ...], item: Any, limit: int) -> tuple[tuple[Any, ...], int]:
    """``items`` with ``item`` appended, the oldest dropped past ``limit`` (BoundedList's rule);
    and how many were dropped."""
    if len(items) < limit:
        return items + (item,), 0
    if limit == 0:
        return items, 1
    return items[1:] + (item,), 1


def _is_valid_link(context: SpanContext, attributes: types.Attributes) -> bool:
    return bool(context and (context.is_valid or (attributes or context.trace_state)))


def links_for(links: Sequence[Link], settings: Settings) -> tuple[tuple[Link, ...], int]:
    """A new span's links as the SDK keeps them: valid ones, attributes bounded and immutable,
    the last ``max_links``; and how many were dropped."""
    limits = settings.limits
    valid = []
    for link in links:
        if link and _is_valid_link(link.context, link.attributes):
            link._attributes = BoundedAttributes(  # as the SDK does, on the caller's Link
                limits.max_link_attributes, link.attributes,
                max_value_len=limits.max_attribute_length, immutable=True)
            valid.append(link)
    dropped = max(0, len(valid) - settings.max_links)
    return tuple(valid[dropped:]), dropped
