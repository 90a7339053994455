"""A step's own time, measured while the step runs, so its modeled delay can include it.

The latency model's delay for a step is the step's whole *own* time on a real cloud: what the
step's span lasts less the time its descendants (callee spans, DB spans, nested steps) cover, which
is what ``bench/bench_harness.py`` measures and what a trace viewer calls a span's self time. The
harness's own work in the step (parsing, SQLite, aiohttp, span bookkeeping: 0.1-1.5 ms) is part of
that time, so it must not be slept on top of the model.

:class:`StepLedger` is a span processor (every tracer provider has it, see
``harness.telemetry.span_processors``) that hands each open :class:`StepClock` the intervals of
its step span's descendants: a span started under a watched span is watched too, so descendants
that outlive their parent (a consumer's method after its receive span) still count; the consumer
of a cast is not followed (the sender does not wait for it, so it is no step's descendant time). A clock then
knows the step's own time at any moment: elapsed since the anchor minus the union of those
intervals, as the bench computes it from the finished trace.

The cost: two dictionary look-ups per span while a step is open, nothing when none is (the
``zero`` profile never opens one).
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor


CAST_ATTR, CAST = "messaging.operation.name", "cast"


def is_call(span: ReadableSpan) -> bool:
    attrs = span.attributes
    return attrs is not None and attrs.get(CAST_ATTR) == "call"


def is_cast(span: ReadableSpan) -> bool:
    """A fire-and-forget send (``rpc.cast``): its consumer's work is not part of any step that
    led to it, since nobody waits for it (bench/bench_harness.py applies the same rule)."""
    attrs = span.attributes
    return attrs is not None and attrs.get(CAST_ATTR) == CAST


class StepClock:
    """One running step: its anchor, its modeled budget and its descendants' intervals.

    ``hull``: the step is an ``rpc.call``, whose own time is its send: from its first descendant's
    start (the receive span starts when the message was sent) to its end it waits, whether on the
    callee's work, between the callee's own spans, or on the reply's way back. ``send``: the step
    is a send whose timed block ends with the publish (``LatencyModel.step(finish=False)``): its
    own time ends with the block, as the analysis counts it once the message's receive span (which
    starts at the publish) is in the trace; that span is often made only after the send's span has
    ended (a cast's or a reply's consumer), too late for the ledger to see. ``on_end``: called
    with the clock and the span's end time when the span ends (the model learns from the step's
    whole own time and the tail after its block, see ``harness.latency``).
    """

    __slots__ = ("span_id", "anchor_ns", "budget_ns", "hull", "send", "on_end", "done", "exited_ns",
                 "aimed_ns", "_open", "_closed", "_members")

    def __init__(self, span_id: int, anchor_ns: int, budget_ns: int, *, hull: bool = False,
                 send: bool = False, on_end: "Callable[[StepClock, int], None] | None" = None) -> None:
        self.span_id = span_id
        self.anchor_ns = anchor_ns  # time.time_ns() at which the step's own time starts
        self.budget_ns = budget_ns  # modeled own time (delay + fault latency + costs)
        self.hull, self.send, self.on_end = hull, send, on_end
        self.done = False  # the step's span has ended: nothing more to record
        self.exited_ns: int | None = None  # when the timed block ended
        self.aimed_ns = 0  # how much earlier the latency model made the step end than its own clock said
        self._open: dict[int, int] = {}  # descendant span id -> start (still running)
        self._closed: list[tuple[int, int]] = []
        self._members: list[int] = []  # span ids whose children this clock follows

    @property
    def has_open_descendants(self) -> bool:
        return bool(self._open)

    def covered_ns(self, since_ns: int, now_ns: int) -> int:
        """Time in [since_ns, now_ns] covered by at least one descendant span."""
        spans = [(max(s, since_ns), min(e, now_ns)) for s, e in self._closed]
        spans += [(max(s, since_ns), now_ns) for s in self._open.values()]
        spans = [iv for iv in spans if iv[1] > iv[0]]
        if self.hull:  # a call: from its message's first sign of life on, it waits
            return now_ns - min(s for s, _ in spans) if spans else 0
        spans.sort()
        covered, cur_s, cur_e = 0, 0, -1
        for s, e in spans:
            if s > cur_e:
                covered += max(0, cur_e - cur_s)
                cur_s, cur_e = s, e
            elif e > cur_e:
                cur_e = e
        return covered + max(0, cur_e - cur_s)

    def own_ns(self, now_ns: int, since_ns: int | None = None) -> int:
        """The step's own time from ``since_ns`` (default: the anchor) to ``now_ns``."""
        start = self.anchor_ns if since_ns is None else since_ns
        if self.send and self.exited_ns is not None and now_ns > self.exited_ns:
            now_ns = max(start, self.exited_ns)  # a send's own time ends with its publish
        if not self._closed and not self._open:  # a leaf step (most are): no descendants
            return now_ns - start
        return now_ns - start - self.covered_ns(start, now_ns)


class StepLedger(SpanProcessor):
    """Feeds open step clocks with their descendants' intervals (see the module docstring)."""

    def __init__(self) -> None:
        self._watch: dict[int, tuple[StepClock, ...]] = {}  # spans whose children are followed
        self._leaf: dict[int, tuple[StepClock, ...]] = {}  # casts: counted, children not followed

    def open(self, clock: StepClock) -> None:
        self._watch[clock.span_id] = self._watch.get(clock.span_id, ()) + (clock,)
        clock._members.append(clock.span_id)

    def close(self, clock: StepClock, now_ns: int) -> None:
        """The step's timed block ended; the clock keeps counting until its span ends (the tail)."""
        clock.exited_ns = now_ns

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self._watch or span.parent is None:
            return
        clocks = self._watch.get(span.parent.span_id)
        if clocks is None:
            return
        clocks = tuple(c for c in clocks if not c.done)
        if clocks:
            sid = span.context.span_id
            follow = not is_cast(span)  # a cast counts, but what its message starts runs on its own
            (self._watch if follow else self._leaf)[sid] = clocks
            for c in clocks:
                c._open[sid] = span.start_time or 0
                if follow:
                    c._members.append(sid)

    def on_end(self, span: ReadableSpan) -> None:
        if not self._watch and not self._leaf:
            return
        sid = span.context.span_id
        # an ended span stays watched: children it starts later (a consumer's method, after its
        # receive span) are still the step's descendants; the entry goes when its clocks stop
        clocks = self._watch.get(sid, ()) + (self._leaf.pop(sid, ()) if self._leaf else ())
        for c in clocks:
            if c.span_id == sid:  # the step's own span: its clock stops here
                self._stop(c, span.end_time)
                continue
            start = c._open.pop(sid, None)
            if start is not None and not c.done:
                c._closed.append((start, span.end_time or start))

    def _stop(self, clock: StepClock, end_ns: int | None) -> None:
        clock.done = True
        if clock.on_end is not None and end_ns:
            clock.on_end(clock, end_ns)
        watch = self._watch
        for sid in clock._members:
            clocks = watch.get(sid)
            if clocks is not None:
                rest = tuple(c for c in clocks if not c.done)
                if rest:
                    watch[sid] = rest
                else:
                    del watch[sid]

    def shutdown(self) -> None:  # shared by every provider: one run's shutdown leaves it to others
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


#: The one ledger: span ids are unique across providers, and a boot crosses several services.
LEDGER = StepLedger()


class Quantile:
    """A running quantile over the last ``size`` samples (the harness's own work after a step's
    sleep, to sleep that much less next time). Recomputed every ``every`` samples."""

    __slots__ = ("q", "every", "_samples", "_n", "value")

    def __init__(self, q: float, size: int = 64, every: int = 8) -> None:
        self.q, self.every = q, every
        self._samples: deque[int] = deque(maxlen=size)
        self._n = 0
        self.value = 0

    def add(self, x: int) -> None:
        self._samples.append(x)
        self._n += 1
        if self._n <= self.every or self._n % self.every == 0:
            self.value = _quantile(sorted(self._samples), self.q)


def _quantile(xs: Sequence[int], q: float) -> int:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0
