"""The one place tracing is set up.

Each service gets its own ``TracerProvider`` (its own ``service.name``), never the global one, so
eight services can live in one process and still look like eight services in Jaeger. All providers
feed the same exporters (see :class:`Telemetry`):

* the run's ``spans.jsonl``, in the format of the OpenTelemetry Collector's file exporter: one
  ``ExportTraceServiceRequest`` per line in OTLP/JSON (hex ids, integer enums, lowerCamelCase
  fields), encoded by :mod:`harness.otlp_json` (checked in the tests against the SDK's protobuf
  encoder, so the file says what an OTLP receiver would get).
* an OTLP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
  is set (protocol from ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL``, default ``http/protobuf``).

Both run in a child process (:mod:`harness.span_export`): when a span ends, the cloud's process
only captures a record of it and ships records in batches down a pipe. Under gevent (Locust's
tracing) they stay in this process: :class:`OtlpJsonLinesExporter` (also a plain SpanExporter)
and the OTLP exporter behind the SDK's BatchSpanProcessor.

Counters of spans started, ended and exported per service make a drop visible: after a flush,
``ended - exported`` is what the SDK dropped, and :meth:`Telemetry.shutdown` reports it.
"""

from __future__ import annotations

import logging
import sys
import threading
import uuid
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, MutableMapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from harness.otlp_json import encode_request
from harness.propagation import BAGGAGE_STEP, HarnessPropagator, baggage_step, with_step  # noqa: F401 (BAGGAGE_STEP: for the services)
from harness.span_export import SpanExportProcess, otlp_exporter_from_env, otlp_protocol_from_env
from harness.span_file import LineFile
from harness.steps import ATTR_PHASE, ATTR_STEP, CATALOGUE, Step
from harness.tracer import HarnessTracer

log = logging.getLogger(__name__)
#: W3C traceparent + baggage (what the SDK's composite of the two propagators does, faster).
PROPAGATOR = HarnessPropagator()
SERVICE_NAMESPACE = "openstack"

# BatchSpanProcessor sizing: a boot makes ~70 spans and every service shares one queue; at a few
# hundred boots/s the default queue (2048) can overflow between exports, so the queue holds
# several seconds of spans.
MAX_QUEUE_SIZE = 131072
MAX_EXPORT_BATCH = 2048
SCHEDULE_DELAY_MS = 500


class OtlpJsonLinesExporter(SpanExporter):
    """Appends each batch as one OTLP/JSON line; shared by every provider of a run.

    Providers call ``shutdown`` on their exporters; the file is closed only by :meth:`close`, which
    the owner (:class:`Telemetry`) calls after every provider has flushed.

    Several processes (``harness up --processes``) append to the same file: it is opened with
    ``O_APPEND`` and each line is one unbuffered ``write``, so lines never interleave.
    """

    def __init__(self, path: Path) -> None:
        self._file = LineFile(path)
        self.path = self._file.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        ok = self._file.write_line(encode_request(spans) + b"\n")
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:  # the owner closes the file
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def close(self) -> None:
        self._file.close()


class FanOutExporter(SpanExporter):
    """Hands each batch to several exporters; what the first exported is counted, per service
    (unless ``counts`` is None: the spans file's writer counts them).

    One export thread then serves every exporter of a run: an exporter that raises is logged and
    the others still get the batch.
    """

    def __init__(self, exporters: Sequence[SpanExporter], counts: Counter | None,
                 lock: threading.Lock) -> None:
        if not exporters:
            raise ValueError("FanOutExporter needs at least one exporter")
        self.exporters = tuple(exporters)
        self._counts, self._lock = counts, lock

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        first = SpanExportResult.FAILURE
        for i, exporter in enumerate(self.exporters):
            try:
                result = exporter.export(spans)
            except Exception:  # one exporter's bug must not cost the others their spans
                log.exception("span exporter %s failed", type(exporter).__name__)
                result = SpanExportResult.FAILURE
            if i == 0:
                first = result
        if first is SpanExportResult.SUCCESS and self._counts is not None:
            self._count(spans)
        return first

    def _count(self, spans: Sequence[ReadableSpan]) -> None:
        # Spans of one service share one Resource object: count by identity, then name each once.
        per_resource: dict[int, list[Any]] = {}
        for s in spans:
            resource = s.resource
            entry = per_resource.get(id(resource))
            if entry is None:
                per_resource[id(resource)] = [resource, 1]
            else:
                entry[1] += 1
        with self._lock:
            for resource, n in per_resource.values():
                self._counts[resource.attributes.get("service.name", "?")] += n

    def shutdown(self) -> None:
        for exporter in self.exporters:
            exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all([e.force_flush(timeout_millis) for e in self.exporters])


class ServiceSpanProcessor(SpanProcessor):
    """The active span processor of a service's provider: counts the service's spans started and
    ended, hands ended ones to the run's span export process (``writer``: a
    :class:`~harness.span_export.SpanExportProcess`, which captures a record of each), to
    the run's shared batch processors (other exporters, which get ReadableSpans) and then to any
    processor added to the provider (``TracerProvider.add_span_processor`` adds to the active
    processor: :meth:`add_span_processor`).

    Shared, because a provider per service with its own BatchSpanProcessor per exporter meant
    ten export threads contending for the GIL with the event loop. The provider's active
    processor (``TracerProvider(active_span_processor=...)``) rather than one of a
    ``SynchronousMultiSpanProcessor``'s: that loop cost ~1 us a span (on start, ending and end).
    The shared processors outlive any one provider: :meth:`shutdown` leaves them alone and
    :class:`Telemetry` shuts them down once, after every provider.
    """

    #: :class:`harness.light_span.LightSpan` may do what :meth:`on_start`, :meth:`_on_ending`
    #: and :meth:`on_end` do itself while ``_added`` is empty: count in ``started``/``ended``
    #: under ``service``, call each of ``_light_hand_on`` (``_hand_on`` with the writer's
    #: :meth:`~harness.span_export.SpanExportProcess.submit_light`, its ``submit`` for light
    #: spans). Keep those fields and that meaning together.
    INLINE_HOOKS = True

    def __init__(self, service: str, started: MutableMapping[str, int],
                 ended: MutableMapping[str, int], batches: Sequence[SpanProcessor],
                 writer: SpanExportProcess | None = None) -> None:
        self.service, self.started, self.ended = service, started, ended
        started.setdefault(service, 0)  # plain dicts count too (see Telemetry.started)
        ended.setdefault(service, 0)
        self.batches, self.writer = tuple(batches), writer
        self._shared = ((writer.submit,) if writer is not None else ()) + tuple(
            b.on_end for b in self.batches)
        self._hand_on = self._shared
        self._light_hand_on = ((writer.submit_light,) if writer is not None else ()) + tuple(
            b.on_end for b in self.batches)
        self._added: tuple[SpanProcessor, ...] = ()  # by add_span_processor, in order
        self._lock = threading.Lock()

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Give ``processor`` this service's spans too (after the shared exporters)."""
        with self._lock:
            self._added += (processor,)
            self._hand_on = self._shared + tuple(p.on_end for p in self._added)

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self.started[self.service] += 1
        for processor in self._added:
            processor.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Span) -> None:  # the SDK calls it on its active processor
        for processor in self._added:
            processor._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended[self.service] += 1
        for hand_on in self._hand_on:
            hand_on(span)

    def shutdown(self) -> None:  # the shared ones are the owner's to shut down
        for processor in self._added:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flushed = [b.force_flush(timeout_millis) for b in self.batches]
        if self.writer is not None:
            flushed.append(self.writer.force_flush(timeout_millis))
        flushed += [p.force_flush(timeout_millis) for p in self._added]
        return all(flushed)


def _gevent_patched() -> bool:
    """True under gevent's monkey-patching (Locust), where a thread blocked in a pipe read would
    block every greenlet: exporters then stay in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


#: Processors every provider gets, whichever run made it (the latency model's step ledger,
#: :mod:`harness.step_clock`, which follows a step's descendants across services).
_SPAN_PROCESSORS: list[SpanProcessor] = []


def register_span_processor(processor: SpanProcessor) -> None:
    """Give ``processor`` to every provider made from now on (once, however often called)."""
    if processor not in _SPAN_PROCESSORS:
        _SPAN_PROCESSORS.append(processor)


class Telemetry:
    """Per-service tracer providers for one run, their exporters and their counters.

    Every provider has one :class:`ServiceSpanProcessor`; they all feed the span export process
    (the spans file and the OTLP exporter, see :mod:`harness.span_export`) and one
    BatchSpanProcessor for ``extra_exporters``. ``export_process=False`` (or gevent's patching)
    keeps the spans file and the OTLP exporter in this process, each behind a BatchSpanProcessor,
    so a slow or unreachable collector never holds up the file.
    """

    def __init__(
        self,
        *,
        run_dir: Path | None,
        enabled: bool = True,
        resource_attributes: Mapping[str, Any] | None = None,
        extra_exporters: Sequence[SpanExporter] = (),
        use_env_otlp: bool = True,
        export_process: bool | None = None,
    ) -> None:
        self.enabled = enabled
        self.resource_attributes = dict(resource_attributes or {})
        # Spans started and ended per service: plain dicts, each service's key set when its
        # processor is made, since a Counter's ``+= 1`` (no specialised subscript for a dict
        # subclass) cost ~90 ns more, twice a span.
        self.started: dict[str, int] = {}
        self.ended: dict[str, int] = {}
        self.exported: Counter = Counter()
        self.dropped: Counter = Counter()  # by the export process (a full queue, or it died)
        self._lock = threading.Lock()
        self._providers: dict[str, TracerProvider] = {}
        self.file_exporter: OtlpJsonLinesExporter | None = None  # in this process only
        self.otlp_exporter: SpanExporter | None = None  # in this process only
        self.writer: SpanExportProcess | None = None
        spans_path = Path(run_dir) / "spans.jsonl" if enabled and run_dir is not None else None
        self._spans_path = spans_path
        protocol = otlp_protocol_from_env() if (enabled and use_env_otlp) else None  # bad: raises here
        exporters: list[SpanExporter] = list(extra_exporters)
        if export_process is None:
            export_process = not _gevent_patched()
        if export_process and (spans_path is not None or protocol is not None):
            # What is counted as exported: the spans file, else the first in-process exporter,
            # else the OTLP one.
            count = "file" if spans_path is not None else ("none" if exporters else "otlp")
            self.writer = SpanExportProcess(
                spans_path=spans_path, otlp=protocol is not None, count=count,
                exported=self.exported, dropped=self.dropped, lock=self._lock,
                max_queue=MAX_QUEUE_SIZE, delay_ms=SCHEDULE_DELAY_MS)
        elif enabled:
            if spans_path is not None:
                self.file_exporter = OtlpJsonLinesExporter(spans_path)
                exporters.insert(0, self.file_exporter)
            if protocol is not None:
                self.otlp_exporter = otlp_exporter_from_env()
        self._exporters = exporters
        self._batches: list[BatchSpanProcessor] = []
        counts: Counter | None = None if self.writer is not None and self.writer.counts_spans \
            else self.exported
        if enabled and exporters:
            self._batches.append(self._batch(FanOutExporter(exporters, counts, self._lock)))
            counts = None
        if enabled and self.otlp_exporter is not None:
            otlp = self.otlp_exporter
            self._batches.append(self._batch(
                FanOutExporter([otlp], counts, self._lock) if counts is not None else otlp))

    @property
    def spans_path(self) -> Path | None:
        return self._spans_path

    def tracer(self, service: str, instance_id: str | None = None) -> trace.Tracer:
        """The tracer of ``service`` (one provider per service, made on first use)."""
        if not self.enabled:
            return trace.NoOpTracer()
        provider = self._providers.get(service)
        if provider is None:
            attrs = {
                "service.name": service,
                "service.namespace": SERVICE_NAMESPACE,
                "service.instance.id": instance_id or str(uuid.uuid4()),
                **self.resource_attributes,
            }
            processor = ServiceSpanProcessor(service, self.started, self.ended, self._batches,
                                             self.writer)
            provider = TracerProvider(resource=Resource.create(attrs),
                                      active_span_processor=processor)  # type: ignore[arg-type]
            for extra in _SPAN_PROCESSORS:  # none unless a latency model with delays runs here
                provider.add_span_processor(extra)
            self._providers[service] = provider
        return HarnessTracer(provider.get_tracer("harness", schema_url="https://opentelemetry.io/schemas/1.26.0"))

    @staticmethod
    def _batch(exporter: SpanExporter) -> BatchSpanProcessor:
        return BatchSpanProcessor(
            exporter,
            max_queue_size=MAX_QUEUE_SIZE,
            max_export_batch_size=MAX_EXPORT_BATCH,
            schedule_delay_millis=SCHEDULE_DELAY_MS,
        )

    def force_flush(self) -> None:
        if self.writer is not None:
            self.writer.force_flush()
        for batch in self._batches:
            batch.force_flush()
        for provider in self._providers.values():  # processors someone else added
            provider.force_flush()

    def counters(self) -> dict[str, dict[str, int]]:
        started, ended, exported = self.started, self.ended, self.exported
        services = sorted(s for s in set(started) | set(ended) | set(exported)
                          if started.get(s) or ended.get(s) or exported[s])
        return {
            s: {
                "started": started.get(s, 0),
                "ended": ended.get(s, 0),
                "exported": exported[s],
                "dropped": max(0, ended.get(s, 0) - exported[s]),
            }
            for s in services
        }

    def shutdown(self) -> dict[str, dict[str, int]]:
        """Flush and stop every provider; returns the counters (dropped spans reported loudly)."""
        self.force_flush()
        counts = self.counters()
        for provider in self._providers.values():
            provider.shutdown()
        for batch in self._batches:
            batch.shutdown()
        self._batches.clear()
        if self.writer is not None:
            self.writer.shutdown()
        if self.otlp_exporter is not None:
            self.otlp_exporter.shutdown()
        if self.file_exporter is not None:
            self.file_exporter.close()
        dropped = sum(c["dropped"] for c in counts.values())
        if dropped:
            log.error("%d spans were dropped by the SDK: %s", dropped, counts)
        self._providers.clear()
        return counts


# -- spans ----------------------------------------------------------------------------------------

#: Each step's two attributes, built once (a step's number and phase never change): callers that
#: merge them into a dict of their own read these; :func:`step_attributes` hands out a copy.
STEP_ATTRS: Mapping[Step, dict[str, Any]] = MappingProxyType(
    {step: {ATTR_STEP: int(step), ATTR_PHASE: info.phase.value} for step, info in CATALOGUE.items()})


#: Each step's span name (the catalogue's), by step.
STEP_NAMES: Mapping[Step, str] = MappingProxyType(
    {step: info.span_name for step, info in CATALOGUE.items()})


def step_attributes(step: Step) -> dict[str, Any]:
    """The step's span attributes (number and phase), a dict of the caller's own."""
    return STEP_ATTRS[step].copy()


def step_span(
    tracer: trace.Tracer,
    step: Step,
    *,
    name: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    context: otel_context.Context | None = None,
    start_time: int | None = None,
) -> AbstractContextManager[trace.Span]:
    """Open the span of one boot step (name from the catalogue), current for the block.

    Returns the tracer's own context manager (no generator around it: one fewer per span),
    called with the API's positional order (no keyword matching per span)."""
    attrs = {**STEP_ATTRS[step], **attributes} if attributes else STEP_ATTRS[step]
    return tracer.start_as_current_span(name or STEP_NAMES[step], context, kind, attrs, None,
                                        start_time)


def mark_error(span: trace.Span, message: str, *, event: str | None = None, **attrs: Any) -> None:
    """Set ERROR status with a message (and an event naming the failure, for faults)."""
    span.set_status(Status(StatusCode.ERROR, message))
    if event:
        span.add_event(event, {"message": message, **attrs})


def inject_headers(headers: dict[str, str] | None = None, *, step: int | None = None) -> dict[str, str]:
    """W3C ``traceparent`` of the current span for HTTP or message headers, and ``baggage`` with
    the boot step the request is made for (none: any step baggage is dropped)."""
    carrier = headers if headers is not None else {}
    if type(carrier) is dict:
        PROPAGATOR.inject_step(carrier, step)
    else:
        PROPAGATOR.inject(carrier, context=with_step(step))
    return carrier


def caller_step() -> int | None:
    """The boot step the current request was made for (from the caller's baggage), if any."""
    value = baggage_step()
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


#: ``extract_context(headers)``: the context a request's or message's headers carry (the
#: propagator's own method, not a function around it: one frame less per request).
extract_context = PROPAGATOR.extract
