"""The run's spans file, fed with spans encoded when they end.

A BatchSpanProcessor keeps every ended span (the SDK's ReadableSpan and the dicts, lists and
contexts it holds) in its queue until the export thread encodes a batch of 2,048 a few hundred
milliseconds later. Those live objects are what made the collector run: in a 300-boot run of
``bench/bench_capacity.py`` (64 in flight) the cloud ran 27 young and 2 middle collections
costing ~120 ms, against 3 young ones costing ~10 ms when spans are encoded as they end (the
span's objects are then freed at once). Here a span is encoded into its OTLP/JSON entry
(:func:`harness.otlp_json.encode_span`) by :meth:`SpanFileWriter.submit`, called from the span
processor's ``on_end``; the queue holds only ``(group, bytes)`` pairs (which the GC stops
tracking), and the writer thread only groups the entries by resource and scope
(:func:`harness.otlp_json.frame_request`) and appends one ``ExportTraceServiceRequest`` line per
batch through :class:`OtlpJsonLinesExporter`: the file says byte for byte what a
BatchSpanProcessor over that exporter would write for the same batches.

Encoding costs the same wherever it runs: ~16 us a span of the cloud's event-loop thread (thread
CPU time, same run), as it did in the export thread; a micro-benchmark of the same spans says ~7
us (the cloud's other work leaves nothing of the encoder in the CPU's caches, whichever thread).

Counting as before: ``exported`` per service when a line is written, ``dropped`` when the queue is
full (a span that is dropped is never exported, so ``ended - exported`` still says what was lost).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan

from harness.otlp_json import Frame, encode_span, frame_request

if TYPE_CHECKING:
    from harness.telemetry import OtlpJsonLinesExporter

log = logging.getLogger(__name__)


class _Group:
    """One (resource, scope) pair's frame, the service it counts for, and where it sorts in a
    request (resources and scopes that are equal share a request entry, as the SDK groups)."""

    __slots__ = ("frame", "service", "resource_key", "scope_key", "_keep")

    def __init__(self, resource: Any, scope: Any, resource_key: int, scope_key: int) -> None:
        self.frame = Frame(resource, scope)
        attrs = resource.attributes if resource is not None else {}
        self.service = str(attrs.get("service.name", "?"))
        self.resource_key, self.scope_key = resource_key, scope_key
        self._keep = (resource, scope)  # their ids are the group's key: keep them alive


class SpanFileWriter:
    """Encodes ended spans at once and writes them, batched, from one thread (see the module)."""

    def __init__(self, exporter: "OtlpJsonLinesExporter", *, exported: Counter, dropped: Counter,
                 lock: threading.Lock, max_queue: int, max_batch: int, delay_ms: int) -> None:
        self.exporter = exporter
        self._exported, self._dropped, self._counts_lock = exported, dropped, lock
        self.max_queue, self.max_batch, self._delay = max_queue, max_batch, delay_ms / 1000
        self._queue: deque[tuple[int, bytes]] = deque()
        self._groups: dict[tuple[int, int], int] = {}  # (id(resource), id(scope)) -> group index
        self._group_list: list[_Group] = []
        self._resources: dict[Any, int] = {}  # equal resources / scopes share a key
        self._scopes: dict[Any, int] = {}
        self._register_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one drain at a time (thread or a flush after stop)
        self._wake = threading.Event()
        self._flushes: list[threading.Event] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="harness-span-file", daemon=True)
        self._thread.start()

    # -- the span's thread -----------------------------------------------------------------

    def submit(self, span: ReadableSpan) -> None:
        """Encode ``span`` and queue it (or count it dropped when the queue is full)."""
        if type(span) is ReadableSpan:  # the SDK's: its fields, not the properties' frames
            resource, scope = span._resource, span._instrumentation_scope
        else:
            resource, scope = span.resource, span.instrumentation_scope
        gid = self._groups.get((id(resource), id(scope)))
        if gid is None:
            gid = self._register(resource, scope)
        queue = self._queue
        if len(queue) >= self.max_queue or self._stopped:
            self._dropped[self._group_list[gid].service] += 1
            return
        queue.append((gid, encode_span(span)))
        if len(queue) == self.max_batch:  # a full batch waits for nobody
            self._wake.set()

    def _register(self, resource: Any, scope: Any) -> int:
        with self._register_lock:
            gid = self._groups.get((id(resource), id(scope)))
            if gid is None:
                rkey = self._resources.setdefault(resource, len(self._resources))
                skey = self._scopes.setdefault(scope, len(self._scopes))
                gid = len(self._group_list)
                self._group_list.append(_Group(resource, scope, rkey, skey))
                self._groups[(id(resource), id(scope))] = gid
            return gid

    # -- the writer's thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        """Write everything queued so far, then release the flushes that asked before."""
        with self._write_lock:
            flushes, self._flushes = self._flushes, []
            queue, popleft = self._queue, self._queue.popleft
            while queue:
                batch = [popleft() for _ in range(min(len(queue), self.max_batch))]
                try:
                    self._write(batch)
                except Exception:  # a full disk must not kill the thread: the spans are lost, counted
                    log.exception("writing %d spans to %s failed", len(batch), self.exporter.path)
            for done in flushes:
                done.set()

    def _write(self, batch: list[tuple[int, bytes]]) -> None:
        by_group: dict[int, list[bytes]] = {}
        for gid, data in batch:
            members = by_group.get(gid)
            if members is None:
                by_group[gid] = [data]
            else:
                members.append(data)
        groups = self._group_list
        # resource -> scope -> spans, in first-seen order, as the SDK's encoder groups them
        request: dict[int, dict[int, tuple[Frame, list[bytes]]]] = {}
        for gid, members in by_group.items():
            g = groups[gid]
            scopes = request.setdefault(g.resource_key, {})
            entry = scopes.get(g.scope_key)
            if entry is None:
                scopes[g.scope_key] = (g.frame, members)
            else:
                entry[1].extend(members)
        line = frame_request([list(scopes.values()) for scopes in request.values()], b"\n")
        if not self.exporter.write_line(line, terminated=True):
            return
        with self._counts_lock:
            for gid, members in by_group.items():
                self._exported[groups[gid].service] += len(members)

    # -- the owner -------------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return once every span submitted before the call is written (False on timeout)."""
        if self._stopped or not self._thread.is_alive():
            self._drain()
            return True
        done = threading.Event()
        with self._write_lock:
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Write what is queued and stop the thread (spans submitted later are dropped)."""
        if self._stopped:
            return
        self.force_flush()
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=30)
        self._drain()
