"""Span export in a child process: the cloud's process only captures ended spans.

The cloud saturates one core of the two-core box, and encoding every span to OTLP/JSON cost ~16 us
of its event loop's thread (~1 ms of a boot's ~11 ms), plus the SDK's BatchSpanProcessor and
OTLP exporter when a collector is configured, all under the cloud's GIL. Here:

* when a span ends, :meth:`SpanExportProcess.submit` (on the span's thread, the event loop's)
  takes a record of plain values (:func:`harness.otlp_json.capture`: ids as ints, the attributes
  dict, events, links, status, a small int for the span's (resource, scope) group) and queues it;
* every :data:`SEND_BATCH` records, ``submit`` marshals the batch (on the event loop's thread,
  while the records are still in its CPU's caches: a sender thread doing it cost ~3.3 us a span
  of CPU in the running cloud, /proc per thread; here it is ~1.5 % of the cloud's py-spy samples,
  ~2.5 us a span, and there is no thread to wake per batch) and leaves the bytes to a sender
  thread, which writes them, length-prefixed, to the stdin pipe of ``python -m
  harness.span_export`` (this module's :func:`main`), and sends what is left every ``delay_ms``
  and at a flush. ``marshal`` rather than ``pickle``: the records are plain values only, and
  marshal is as cheap (0.77 against 0.70 us a span in a micro-benchmark) without pickle's
  generality (the child could be made to import anything);
* the child encodes each batch as one line of the run's ``spans.jsonl`` (:mod:`harness.span_file`,
  the same encoder as before, so the file says byte for byte what it said) and, when
  ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT`` is set, rebuilds the SDK's ``ReadableSpan`` and hands
  them to a BatchSpanProcessor over the real OTLP exporter;
* the child answers each flush once everything sent before it is written (and exported over
  OTLP), with the spans it exported since its last answer, per group (a reader thread adds them
  to the per-service ``exported`` counters: ``ended - exported`` still says what was lost); it
  also reports them unasked at most once a second, so the counters stay current without a
  wake-up of the cloud's process per batch.

Life cycle: the child is started with ``subprocess`` (fork + exec at once: nothing of the
parent's threads or locks is inherited), ignores SIGINT and SIGTERM (a Ctrl-C in a terminal
reaches the whole process group, and the parent still has spans to flush), and exits when its
stdin pipe reaches EOF: when the parent closes it (:meth:`SpanExportProcess.shutdown`) or dies,
even of SIGKILL (the kernel closes the pipe), so it never outlives the cloud, and what the parent
had sent before dying is still written. If the child dies first, the parent logs it once and counts
every span sent but not answered, queued or submitted later as dropped.

Locust's tracing runs under gevent, whose patched threads could not block in a pipe read without
blocking the process: there :class:`harness.telemetry.Telemetry` keeps its in-process exporters.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import logging
import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from harness.otlp_json import (_KIND_BY_ID, _LIGHT, RecordGroups, capture, capture_light,
                               describe_group, full_records)

log = logging.getLogger(__name__)

#: Records per message to the child (one line of the spans file each). Small enough that the
#: records waiting in the parent (tuples and dicts the garbage collector scans) stay few.
SEND_BATCH = 256
#: How often the sender looks for packed batches. It polls rather than being woken by
#: ``submit``: an ``Event.set`` per batch on the event loop's thread cost more than 20 looks a
#: second (a flush wakes it at once).
POLL_S = 0.05
_HEADER = struct.Struct("<I")
#: The export process's young-generation threshold (CPython's default is 700).
GC_GEN0_THRESHOLD = 10_000
#: Seconds between the child's unasked reports of what it exported.
REPORT_INTERVAL_S = 1.0
# parent -> child: (SPANS, [(gid, group description), ...], [record, ...]) | (FLUSH, token)
# child -> parent: (EXPORTED, None, {gid: spans exported}) | (FLUSHED, token, {gid: n})
SPANS, FLUSH = 1, 2
EXPORTED, FLUSHED = 1, 2


def write_message(out: IO[bytes], message: Any) -> None:
    """Write one length-prefixed marshalled message and flush it."""
    data = marshal.dumps(message)
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def read_message(inp: IO[bytes]) -> Any:
    """The next message, or None at EOF (a message cut short is EOF too: its writer died)."""
    header = inp.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = inp.read(size)
    if len(data) < size:
        return None
    return marshal.loads(data)


def otlp_protocol_from_env() -> str | None:
    """The OTLP protocol the ``OTEL_*`` variables ask for, or None when no endpoint is set.

    Raises ValueError for a protocol the harness cannot export with."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return None
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported (grpc, http/protobuf)")
    return protocol


def otlp_exporter_from_env() -> Any:
    """The SDK's OTLP span exporter the ``OTEL_*`` variables configure (endpoint, headers,
    timeout, protocol), or None when no endpoint is set."""
    protocol = otlp_protocol_from_env()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    else:
        return None
    return OTLPSpanExporter()


def _plain(value: Any) -> Any:
    """``value`` with anything marshal cannot carry made a str (as the encoder would show it)."""
    if value is None or type(value) in (str, int, float, bool, bytes):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class SpanExportProcess:
    """The cloud's side of the export process: capture, queue, send, count (see the module).

    ``submit`` is the span processor's ``on_end`` hand-on; ``force_flush`` returns once every span
    submitted before it is in the file (and exported over OTLP); ``shutdown`` flushes and lets the
    child exit. ``exported`` and ``dropped`` are per-service counters shared with the owner
    (updated under ``lock``).
    """

    def __init__(self, *, spans_path: Path | None, otlp: bool, count: str, exported: Counter,
                 dropped: Counter, lock: threading.Lock, max_queue: int, delay_ms: int,
                 send_batch: int = SEND_BATCH) -> None:
        if spans_path is None and not otlp:
            raise ValueError("the span export process needs a spans file or an OTLP endpoint")
        self.spans_path = Path(spans_path) if spans_path is not None else None
        self.counts_spans = count != "none"  # the child's answers are what ``exported`` counts
        self._exported, self._dropped, self._counts_lock = exported, dropped, lock
        self.max_queue, self.send_batch, self._delay = max_queue, send_batch, delay_ms / 1000
        self._queue: deque[tuple] = deque()
        self._gids: dict[tuple[int, int], int] = {}  # (id(resource), id(scope)) -> group
        self._by_settings: dict[Any, int] = {}  # a light span tracer's settings -> its group
        self._services: list[str] = []  # by group
        self._descriptions: list[tuple] = []  # by group; sent before the first record of each
        self._keep: list[tuple[Any, Any]] = []  # the (resource, scope) of each group: ids stay theirs
        self._described = 0  # groups described in packed batches so far
        self._register_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pack_lock = threading.Lock()
        self._outbox: deque[bytes] = deque()  # packed batches, for the sender to write
        # at most max_queue records packed and waiting for the pipe (a slow child): beyond, they
        # stay queued, and the queue's bound drops them
        self._max_outbox = max(1, max_queue // send_batch)
        self._flush_lock = threading.Lock()
        self._flush_requests: list[int] = []
        self._flush_waiters: dict[int, threading.Event] = {}
        self._tokens = itertools.count(1)
        self._sent: Counter = Counter()  # spans sent to the child, per group
        self._answered: Counter = Counter()  # spans it said it exported, per group
        self._wake = threading.Event()
        self._open = True  # submit() accepts spans
        self._stopping = False  # the sender's last round
        self._closing = False  # the child's EOF is ours
        self._lost: str | None = None  # why the child is gone, once it is
        self._reckoned = False  # the spans in flight when it went are counted dropped
        cmd = [sys.executable, "-m", "harness.span_export", "--count", count]
        if self.spans_path is not None:
            cmd += ["--spans", str(self.spans_path)]
        if otlp:
            cmd.append("--otlp")
        # fork + exec at once (no Python runs in the forked child before exec); the pipes are not
        # inherited by any other process the cloud starts (close_fds, O_CLOEXEC), so EOF on the
        # child's stdin means this process closed it or died.
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      close_fds=True, bufsize=0)
        self._to_child: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        self._from_child: IO[bytes] = self._proc.stdout  # type: ignore[assignment]
        _grow_pipe(self._to_child.fileno())
        self._sender = threading.Thread(target=self._send_loop, name="harness-span-send", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="harness-span-replies", daemon=True)
        self._sender.start()
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    # -- the span's thread (the event loop's) -----------------------------------------------

    def submit(self, span: Any) -> None:
        """Queue the record of the ended ``span`` (or count it dropped: queue full, or closed)."""
        resource, scope = span.resource, span.instrumentation_scope
        gid = self._gids.get((id(resource), id(scope)))
        if gid is None:
            gid = self._register(resource, scope)
        if len(self._queue) < self.max_queue and self._open:
            self._queue.append(capture(span, gid))
            self._pack_full()
        else:
            self._dropped[self._services[gid]] += 1

    def submit_light(self, span: Any) -> None:
        """:meth:`submit` for a :class:`harness.light_span.LightSpan` (its hand-on when nothing
        else sees it): its group found by its tracer's settings, its record by
        :func:`harness.otlp_json.capture_light`."""
        gid = self._by_settings.get(span._settings)
        if gid is None:
            gid = self._by_settings[span._settings] = self._register(
                span.resource, span.instrumentation_scope)
        queue = self._queue
        if len(queue) >= self.max_queue or not self._open:
            self._dropped[self._services[gid]] += 1
            return
        # capture_light's short record, inline (most spans; two Python calls a span less)
        ctx, parent = span.context, span.parent
        kind = _KIND_BY_ID.get(id(span.kind))
        if span._more is None and kind is not None and _LIGHT and ctx[4] is _LIGHT[0]:
            queue.append((gid, ctx[0], ctx[1], None if parent is None else parent[1],
                          parent is not None and parent[2], span.name, kind, span.start_time,
                          span.end_time, span.attributes))
        else:
            queue.append(capture_light(span, gid))
        if len(queue) >= self.send_batch:
            self._pack_full()

    def _pack_full(self) -> None:
        """Pack a batch if one is queued (on the span's thread: see the module docstring)."""
        if (len(self._queue) >= self.send_batch and len(self._outbox) < self._max_outbox
                and self._pack_lock.acquire(False)):  # not while the sender packs
            try:
                self._pack(self.send_batch)
            finally:
                self._pack_lock.release()

    def _pack(self, n: int) -> None:
        """Marshal the next ``n`` queued records, in batches, into the outbox (``_pack_lock``
        held: the groups the child knows and the batches' order are shared)."""
        popleft = self._queue.popleft
        while n > 0:
            batch = [popleft() for _ in range(min(n, self.send_batch))]
            n -= len(batch)
            counts = Counter(map(itemgetter(0), batch))
            with self._counts_lock:  # with _child_lost's reckoning: each record counted once
                lost = self._lost is not None
                if lost:
                    for gid, k in counts.items():
                        self._dropped[self._services[gid]] += k
                else:
                    self._sent.update(counts)
            if lost:
                continue
            known, self._described = self._described, len(self._descriptions)
            groups = [(g, self._descriptions[g]) for g in range(known, self._described)]
            try:
                message = marshal.dumps((SPANS, groups, batch))
            except ValueError:  # a value of a type marshal cannot carry (not from our spans)
                message = marshal.dumps((SPANS, groups, _plain(batch)))
            self._outbox.append(message)

    def _register(self, resource: Any, scope: Any) -> int:
        with self._register_lock:
            gid = self._gids.get((id(resource), id(scope)))
            if gid is None:
                attrs = resource.attributes if resource is not None else {}
                self._services.append(str(attrs.get("service.name", "?")))
                self._descriptions.append(describe_group(resource, scope))
                self._keep.append((resource, scope))
                gid = len(self._services) - 1
                self._gids[(id(resource), id(scope))] = gid  # last: the group is complete
            return gid

    # -- the sender thread ------------------------------------------------------------------

    def _send_loop(self) -> None:
        last = time.monotonic()
        while True:
            asked = self._wake.wait(POLL_S)  # set by force_flush and shutdown only
            if asked:
                self._wake.clear()
            stopping = self._stopping  # read once: a last round must follow what it saw
            now = time.monotonic()
            due = now - last >= self._delay
            if asked or due or stopping or self._outbox:
                self._send(everything=asked or due or stopping)
                last = now
            if stopping:
                return

    def _send(self, everything: bool = True) -> None:
        """Write the packed batches (``everything``: and pack and write the records still
        queued), then the flushes asked for before: every span submitted before a flush was
        asked is then packed and written before the flush."""
        with self._send_lock:
            with self._flush_lock:
                flushes, self._flush_requests = self._flush_requests, []
            if everything or flushes:
                with self._pack_lock:
                    self._pack(len(self._queue))
            while self._outbox:
                self._write(self._outbox.popleft())
            for token in flushes:
                self._write(marshal.dumps((FLUSH, token)))

    def _write(self, message: bytes) -> None:
        if self._lost is not None:
            return
        try:
            self._to_child.write(_HEADER.pack(len(message)) + message)
        except (OSError, ValueError) as exc:  # EPIPE: the child is gone (ValueError: closed)
            self._child_lost(f"writing to it failed: {exc}")

    # -- the reader thread ------------------------------------------------------------------

    def _read_loop(self) -> None:
        while True:
            try:
                message = read_message(self._from_child)
            except Exception as exc:  # a garbled reply: the child is not what we started
                log.error("span export process: bad reply: %s", exc)
                message = None
            if message is None:
                break
            op, key, counts = message
            if op == EXPORTED:
                self._count_exported(counts)
            elif op == FLUSHED:
                self._count_exported(counts)
                with self._flush_lock:
                    done = self._flush_waiters.pop(key, None)
                if done is not None:
                    done.set()
        if not self._closing:
            self._child_lost(f"it exited (code {self._proc.poll()})")

    def _count_exported(self, counts: dict[int, int]) -> None:
        if counts:
            with self._counts_lock:
                self._answered.update(counts)
                for gid, n in counts.items():
                    self._exported[self._services[gid]] += n
                    if self._reckoned:  # a late answer (a write failed first): not lost after all
                        self._dropped[self._services[gid]] -= n

    def _count_dropped(self, counts: Counter) -> None:
        with self._counts_lock:
            for gid, n in counts.items():
                self._dropped[self._services[gid]] += n

    def _child_lost(self, why: str) -> None:
        with self._flush_lock:
            if self._lost is not None:
                return
            self._lost = why
            waiters, self._flush_waiters = self._flush_waiters, {}
        with self._counts_lock:  # sent and never said to be exported: lost with the child
            lost = self._sent - self._answered if self.counts_spans else Counter()
            for gid, n in lost.items():
                self._dropped[self._services[gid]] += n
            self._reckoned = bool(lost)
        log.error("the span export process (pid %d) is gone: %s; %d spans sent to it were not "
                  "written, and every span from now on is counted as dropped",
                  self._proc.pid, why, sum(lost.values()))
        for done in waiters.values():
            done.set()

    # -- the owner --------------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return once every span submitted before the call is written and exported (False on
        timeout, or when the child is gone)."""
        if self._lost is not None:
            return False
        if not self._open:
            return True  # shut down: everything was flushed then
        done = threading.Event()
        with self._flush_lock:
            if self._lost is not None:
                return False
            token = next(self._tokens)
            self._flush_waiters[token] = done
            self._flush_requests.append(token)
        self._wake.set()
        return done.wait(timeout_millis / 1000) and self._lost is None

    def shutdown(self, timeout_s: float = 30) -> None:
        """Flush, stop taking spans (later ones are counted dropped) and let the child exit."""
        if not self._open:
            return
        self.force_flush(int(timeout_s * 1000))
        self._open = False
        self._stopping = True
        self._wake.set()
        self._sender.join(timeout_s)  # its last round sends what came after the flush
        if not self._sender.is_alive():
            self._send()  # nothing left, unless the sender died: then this sends or counts it
        self._closing = True
        try:
            self._to_child.close()  # EOF: the child writes and exports the rest, answers, exits
        except OSError:
            pass
        self._reader.join(timeout_s)
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("the span export process (pid %d) did not exit; killing it", self._proc.pid)
            self._proc.kill()
            self._proc.wait()
        self._from_child.close()


def _grow_pipe(fd: int) -> None:
    """A 1 MiB pipe (Linux; 64 KiB by default): a batch goes in one write, without a wake-up of
    the child per 64 KiB."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError):
        pass


# -- the child --------------------------------------------------------------------------------

class _OtlpSink:
    """The child's OTLP export: records rebuilt as the SDK's ReadableSpans, a BatchSpanProcessor
    over the SDK's OTLP exporter (so a slow collector never holds up the file); counts what the
    collector took, per group, when the OTLP export is what is counted."""

    def __init__(self, groups: RecordGroups, counted: bool) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from harness import telemetry  # sizing shared with the in-process exporters

        exporter = otlp_exporter_from_env()
        if exporter is None:
            raise SystemExit("--otlp given but no OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT is set")
        self.groups = groups
        self._resources: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self.exported: Counter = Counter()
        sink = self

        class Counting(SpanExporter):
            def export(self, spans: Any) -> Any:
                result = exporter.export(spans)
                if counted and result is SpanExportResult.SUCCESS:
                    with sink._lock:
                        sink.exported.update(s.group for s in spans)
                return result

            def shutdown(self) -> None:
                exporter.shutdown()

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return exporter.force_flush(timeout_millis)

        self.processor = BatchSpanProcessor(
            Counting(), max_queue_size=telemetry.MAX_QUEUE_SIZE,
            max_export_batch_size=telemetry.MAX_EXPORT_BATCH,
            schedule_delay_millis=telemetry.SCHEDULE_DELAY_MS)

    def add(self, records: list[tuple]) -> None:
        on_end = self.processor.on_end
        for r in records:
            on_end(self._rebuild(r))

    def _rebuild(self, r: tuple) -> Any:
        gid = r[0]
        pair = self._resources.get(gid)
        if pair is None:
            pair = self._resources[gid] = _sdk_pair(self.groups.descriptions[gid])
        return _rebuild(r, *pair)

    def take_counts(self) -> dict[int, int]:
        with self._lock:
            counts, self.exported = dict(self.exported), Counter()
        return counts

    def flush(self) -> None:
        self.processor.force_flush()

    def shutdown(self) -> None:
        self.processor.shutdown()


def _sdk_pair(description: tuple) -> tuple[Any, Any]:
    """The SDK's Resource and InstrumentationScope of a :func:`describe_group` description."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    r_attrs, r_url, scope = description
    resource = Resource(r_attrs or {}, r_url or None)
    if scope is None:
        return resource, None
    name, version, s_url, s_attrs = scope
    return resource, InstrumentationScope(name, version, s_url, s_attrs)


_REBUILT: Any = None


def _rebuild(r: tuple, resource: Any, scope: Any) -> Any:
    """The SDK's ReadableSpan of a record (for the OTLP exporter's encoder), knowing its group."""
    global _REBUILT
    if _REBUILT is None:
        _REBUILT = _rebuilt_class()
    return _REBUILT(r, resource, scope)


def _rebuilt_class() -> Any:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.span import TraceState

    kinds = {1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT, 4: SpanKind.PRODUCER,
             5: SpanKind.CONSUMER}
    codes = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}
    sampled = TraceFlags(TraceFlags.SAMPLED)  # only sampled spans are ever exported

    class Rebuilt(ReadableSpan):
        """A ReadableSpan with the record's dropped counts and its group (for the counters)."""

        def __init__(self, r: tuple, resource: Any, scope: Any) -> None:
            trace_id = r[1]
            state = TraceState.from_header([r[3]]) if r[3] else None
            super().__init__(
                name=r[6],
                context=SpanContext(trace_id, r[2], is_remote=False, trace_flags=sampled,
                                    trace_state=state),
                parent=(SpanContext(trace_id, r[4], is_remote=r[5], trace_flags=sampled)
                        if r[4] is not None else None),
                resource=resource, attributes=r[10] or {},
                events=[Event(name, attrs or None, timestamp) for name, timestamp, attrs, _ in r[12]],
                links=[Link(SpanContext(t, s, is_remote=remote, trace_flags=sampled), attrs or None)
                       for t, s, remote, attrs, _ in r[14]],
                kind=kinds.get(r[7], SpanKind.INTERNAL),
                status=Status(codes.get(r[16], StatusCode.UNSET), r[17]),
                start_time=r[8], end_time=r[9], instrumentation_scope=scope)
            self.group = r[0]
            self._dropped = (r[11], r[13], r[15])

        @property
        def dropped_attributes(self) -> int:
            return self._dropped[0]

        @property
        def dropped_events(self) -> int:
            return self._dropped[1]

        @property
        def dropped_links(self) -> int:
            return self._dropped[2]

    return Rebuilt


def main(argv: list[str] | None = None) -> int:
    """The export process: batches from stdin -> the spans file and OTLP; answers on stdout."""
    ap = argparse.ArgumentParser(prog="python -m harness.span_export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=Path, help="the run's spans.jsonl (appended to)")
    ap.add_argument("--otlp", action="store_true", help="export over OTLP as OTEL_* configures")
    ap.add_argument("--count", choices=("file", "otlp", "none"), default="file",
                    help="which export the per-service 'exported' counters count")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides: EOF on stdin ends us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format=f"span-export[{os.getpid()}] %(levelname)s %(name)s: %(message)s")
    inp = os.fdopen(os.dup(0), "rb", buffering=1 << 20)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the replies

    from harness.span_file import SpanFile

    groups = RecordGroups()
    spans_file = SpanFile(args.spans, groups) if args.spans else None
    otlp = _OtlpSink(groups, counted=args.count == "otlp") if args.otlp else None
    # This process only decodes and encodes batches from now on (acyclic tuples, dicts and
    # strings freed by reference counting): the collector's young generation every 700
    # allocations ran ~400 times a 1,000-boot run. Start-up's objects frozen, collections rarer
    # (as harness.aio.settle_gc does for the cloud).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    count_file = args.count == "file" and spans_file is not None

    written: Counter = Counter()  # by the file, since the last report

    def counts() -> dict[int, int]:
        nonlocal written
        if count_file:
            report, written = dict(written), Counter()
            return report
        return otlp.take_counts() if otlp is not None and args.count == "otlp" else {}

    reported = time.monotonic()
    while True:
        message = read_message(inp)
        if message is None:
            break
        if message[0] == SPANS:
            _, new_groups, records = message
            records = full_records(records)
            for gid, description in new_groups:
                groups.add(gid, description)
            if spans_file is not None:
                written.update(spans_file.write(records))
            if otlp is not None:
                try:
                    otlp.add(records)
                except Exception:
                    log.exception("rebuilding %d spans for OTLP failed", len(records))
            if time.monotonic() - reported >= REPORT_INTERVAL_S:
                reported = time.monotonic()
                report = counts()
                if report:
                    write_message(out, (EXPORTED, None, report))
        elif message[0] == FLUSH:
            if otlp is not None:
                otlp.flush()
            write_message(out, (FLUSHED, message[1], counts()))
            reported = time.monotonic()
    if otlp is not None:
        otlp.shutdown()
    write_message(out, (EXPORTED, None, counts()))
    if spans_file is not None:
        spans_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
