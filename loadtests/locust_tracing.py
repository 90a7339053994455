"""The ``locust`` tracer: where the Locust user's spans come from and where they go.

Built on Locust's own OpenTelemetry support rather than beside it:

* ``locust --otel`` makes Locust set up the global tracer provider itself (resource
  ``service.name=locust`` unless ``OTEL_SERVICE_NAME`` says otherwise, exporters from
  ``OTEL_TRACES_EXPORTER`` / ``OTEL_EXPORTER_OTLP_*``, and the ``requests`` auto-instrumentation if
  it is installed, which adds one client span per HTTP call under our boot span). We take that
  provider and add the spans file to it.
* without ``--otel``, Locust sets up nothing, so we make a provider of our own (not the global one)
  with the same resource convention, through :class:`harness.telemetry.Telemetry`: the spans file,
  plus OTLP export when ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT`` is set, exactly as the cloud does.

The spans file is OTLP JSON lines (one ``ExportTraceServiceRequest`` a line), by default the
cloud's own ``<run-dir>/spans.jsonl``: :class:`harness.telemetry.OtlpJsonLinesExporter` appends each
line with one ``O_APPEND`` write, so the cloud's processes, Locust's workers and a local Locust can
all append to it and lines never interleave. ``analysis.load.load_spans(run_dir)`` then reads whole
traces, from the Locust user down to the hypervisor, from one file.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from locust import __version__ as locust_version
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from harness.telemetry import OtlpJsonLinesExporter, Telemetry

log = logging.getLogger(__name__)
SERVICE_NAME = "locust"
SERVICE_NAMESPACE = "loadgen"
INSTRUMENTATION_SCOPE = "loadtests"


class LocustTracing:
    """The tracer the boot user opens its spans with, and the life cycle of its exporters."""

    def __init__(self, *, tracer: trace.Tracer, provider: Any, telemetry: Telemetry | None,
                 file_exporter: OtlpJsonLinesExporter | None, via_locust_otel: bool) -> None:
        self.tracer = tracer
        self._provider = provider
        self._telemetry = telemetry
        self.file_exporter = file_exporter
        self.via_locust_otel = via_locust_otel

    @property
    def spans_path(self) -> Path | None:
        return self.file_exporter.path if self.file_exporter else None

    @classmethod
    def setup(cls, *, spans_file: Path | None, locust_otel: bool, process_role: str) -> "LocustTracing":
        """Make the tracer: on top of Locust's ``--otel`` provider when there is one, else our own."""
        file_exporter = OtlpJsonLinesExporter(spans_file) if spans_file else None
        provider = trace.get_tracer_provider()
        if locust_otel and isinstance(provider, TracerProvider):
            if file_exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(file_exporter))
            return cls(tracer=provider.get_tracer(INSTRUMENTATION_SCOPE, locust_version), provider=provider,
                       telemetry=None, file_exporter=file_exporter, via_locust_otel=True)
        if locust_otel:
            log.warning("--otel given but Locust set up no OpenTelemetry SDK provider; "
                        "using the harness's own locust tracer")
        telemetry = Telemetry(
            run_dir=None,
            enabled=True,
            extra_exporters=[file_exporter] if file_exporter else [],
            resource_attributes={
                "service.namespace": SERVICE_NAMESPACE,
                "service.version": locust_version,
                "host.name": socket.gethostname(),
                "locust.process.role": process_role,
            },
        )
        if file_exporter is None and telemetry.otlp_exporter is None:
            log.info("Locust spans go nowhere (--locust-spans off and no OTEL_EXPORTER_OTLP_ENDPOINT)")
        tracer = telemetry.tracer(SERVICE_NAME, instance_id=f"{socket.gethostname()}/{os.getpid()}/"
                                                          f"{uuid.uuid4().hex[:8]}")
        return cls(tracer=tracer, provider=None, telemetry=telemetry, file_exporter=file_exporter,
                   via_locust_otel=False)

    def flush(self) -> None:
        """Write out every ended span (at the end of a test run, so the files are complete)."""
        if self._telemetry is not None:
            self._telemetry.force_flush()
        elif self._provider is not None:
            self._provider.force_flush()

    def counters(self) -> dict[str, dict[str, int]]:
        return self._telemetry.counters() if self._telemetry is not None else {}

    def shutdown(self) -> dict[str, dict[str, int]]:
        """Flush and close (when Locust quits); returns the span counters of our own provider."""
        counts: dict[str, dict[str, int]] = {}
        if self._telemetry is not None:
            counts = self._telemetry.shutdown()
        elif self._provider is not None:
            self._provider.force_flush()
        if self.file_exporter is not None:
            self.file_exporter.close()
        return counts
