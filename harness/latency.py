"""The latency model: how long each step takes, the harness's own work included.

A profile (TOML, shipped in ``harness/profiles/``) gives each step a distribution: the step's own
time on a real cloud (its span's duration less what its descendants cover, queue waits apart). One
seeded generator per cloud keeps runs repeatable. The sampled value is recorded on the step's span
as ``openstack.boot.modeled_delay_ms``.

The harness's own work in a step counts toward that time: :meth:`LatencyModel.step` measures the
step's own time while it runs (:mod:`harness.step_clock`) and sleeps only what is left, to a
deadline met to within tens of microseconds (:mod:`harness.deadline`). Most of the sleep comes
before the step's work (where the old model slept it all: a send's cost before its publish, a DB
statement's before its result), less a running estimate of the work that follows; a short precise
top-up at the step's end meets the deadline. When the harness's own work alone exceeds the modeled
time (a loaded box, a slow SQLite write) the step takes its own time and its span gets
``harness.latency.overrun_ms``: how far beyond the model it ran.

What a step's clock cannot see coming still makes its spans late: a wake-up waits for the callback
running when its timer fires (another service's request, a garbage collection: up to a few ms on
a busy loop or box), and a step's work after its last sleep varies. Those delays are one-sided,
so they shift the median of a step's times, which is what the model promises (the fidelity
benchmark's figure): at one boot in flight, wake-ups ~15 us late in the median but 5-10 % of them
0.3-3 ms late made 2 ms steps 2-15 % long. So each step *aims* earlier by what its recent spans
overshot the model in the median (:class:`_Learned`; ``harness.latency.compensation_ms`` on the
span says by how much). The aim only shortens sleeps: a step never ends before its own work.

Distributions (all in milliseconds)::

    {dist = "fixed", value = 5}
    {dist = "uniform", low = 1, high = 3}
    {dist = "normal", mean = 10, stddev = 2}          # clipped at 0
    {dist = "lognormal", median = 40, sigma = 0.5}    # median = exp(mu)
    {dist = "exponential", mean = 8}

State-dependent costs (image download by size, per-host scan cost of the scheduler) are keyed in
the ``[costs]`` table and read with :meth:`LatencyModel.cost`.
"""

from __future__ import annotations

import math
import random
from collections import deque
import time
import tomllib
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from opentelemetry import trace
from opentelemetry.trace.propagation import _SPAN_KEY

from harness import deadline
from harness.step_clock import LEDGER, Quantile, StepClock, is_call
from harness.steps import CATALOGUE, Step, Transport
from harness.telemetry import register_span_processor, step_span
from harness.tracer import _cv_get

if TYPE_CHECKING:
    from harness.faults import FaultInjector

MODELED_DELAY_ATTR = "openstack.boot.modeled_delay_ms"
#: Set on a step's span when the harness's own work alone (the step's own time less what the model
#: slept; its expected tail after the timed block included) took longer than the modeled time: ms
#: beyond it. The step could not be as fast as the model asked; its span says by how much.
OVERRUN_ATTR = "harness.latency.overrun_ms"
#: An overrun is recorded past 2 % of the modeled time (the fidelity target) and 50 us.
OVERRUN_REL, OVERRUN_MIN_NS = 0.02, 50_000
#: Quantile of a step's own work after its first sleep that the first sleep leaves room for.
REST_QUANTILE = 0.9
#: Set on a step's span when the model aimed its end earlier (ms > 0) or later (< 0) than its
#: modeled time, by what the step's recent spans overshot it in the median (see :class:`_Learned`).
COMPENSATION_ATTR = "harness.latency.compensation_ms"
#: Recent spans of a step the aim is learnt from, and how many it needs before it aims at all
#: (a step's first spans run before ``rest`` and ``tail`` are learnt: their overshoot is not one
#: the aim should correct).
AIM_WINDOW, AIM_MIN_SPANS = 64, 8
#: The aim moves a step's end by at most this share of its modeled time, either way.
AIM_MAX_REL = 0.5

Sampler = Callable[[random.Random], float]


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the bad value."""


def _need(spec: dict[str, Any], *keys: str) -> list[float]:
    out = []
    for key in keys:
        if key not in spec:
            raise ProfileError(f"distribution {spec!r} needs '{key}'")
        value = spec[key]
        if not isinstance(value, (int, float)) or value < 0:
            raise ProfileError(f"'{key}' must be a non-negative number, got {value!r}")
        out.append(float(value))
    return out


def make_sampler(spec: dict[str, Any] | float | int) -> Sampler:
    """Build a sampler (rng -> milliseconds) from a distribution spec."""
    if isinstance(spec, (int, float)):
        spec = {"dist": "fixed", "value": spec}
    if not isinstance(spec, dict):
        raise ProfileError(f"a distribution is a table or a number, got {spec!r}")
    kind = spec.get("dist", "fixed")
    if kind == "fixed":
        (v,) = _need(spec, "value")
        return lambda rng: v
    if kind == "uniform":
        lo, hi = _need(spec, "low", "high")
        if hi < lo:
            raise ProfileError(f"uniform needs low <= high, got {lo} > {hi}")
        return lambda rng: rng.uniform(lo, hi)
    if kind == "normal":
        mu, sd = _need(spec, "mean", "stddev")
        return lambda rng: max(0.0, rng.gauss(mu, sd))
    if kind == "lognormal":
        median, sigma = _need(spec, "median", "sigma")
        if median <= 0:
            raise ProfileError("lognormal needs median > 0")
        mu = math.log(median)
        return lambda rng: rng.lognormvariate(mu, sigma)
    if kind == "exponential":
        (mean,) = _need(spec, "mean")
        if mean <= 0:
            return lambda rng: 0.0
        return lambda rng: rng.expovariate(1.0 / mean)
    raise ProfileError(
        f"unknown distribution {kind!r} (fixed, uniform, normal, lognormal, exponential)"
    )


def median_of(spec: dict[str, Any] | float | int) -> float:
    """The distribution's median in ms (what timing-fidelity checks compare against)."""
    if isinstance(spec, (int, float)):
        return float(spec)
    kind = spec.get("dist", "fixed")
    if kind == "fixed":
        return float(spec["value"])
    if kind == "uniform":
        return (spec["low"] + spec["high"]) / 2
    if kind == "normal":
        return float(spec["mean"])
    if kind == "lognormal":
        return float(spec["median"])
    if kind == "exponential":
        return float(spec["mean"]) * math.log(2)
    raise ProfileError(f"unknown distribution {kind!r}")


@dataclass(frozen=True)
class Profile:
    name: str
    steps: dict[Step, dict[str, Any]]
    costs: dict[str, float]
    source: str
    #: the profile's ``[faults]`` table, read by :func:`harness.faults.plan_from_profile`
    faults: dict[str, Any] = field(default_factory=dict)

    def median_ms(self, step: Step) -> float:
        spec = self.steps.get(step)
        return 0.0 if spec is None else median_of(spec)


def _profile_text(name_or_path: str) -> tuple[str, str, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return path.stem, path.read_text(), str(path)
    pkg = resources.files("harness.profiles")
    candidate = pkg / f"{name_or_path}.toml"
    if candidate.is_file():
        return name_or_path, candidate.read_text(), f"harness/profiles/{name_or_path}.toml"
    raise ProfileError(
        f"unknown latency profile {name_or_path!r}: use one of {', '.join(available_profiles())} "
        "or a path to a .toml file"
    )


def available_profiles() -> list[str]:
    pkg = resources.files("harness.profiles")
    return sorted(p.name[:-5] for p in pkg.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str) -> Profile:
    name, text, source = _profile_text(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {source}: {exc}") from None
    default = data.get("default", 0)
    steps_table = data.get("steps", {})
    steps: dict[Step, dict[str, Any]] = {}
    for step in CATALOGUE:
        spec = steps_table.get(str(int(step)), default)
        make_sampler(spec)  # validate now, not mid-run
        steps[step] = spec if isinstance(spec, dict) else {"dist": "fixed", "value": spec}
    unknown = set(steps_table) - {str(int(s)) for s in CATALOGUE}
    if unknown:
        raise ProfileError(f"profile {source}: unknown steps {sorted(unknown)} (1..29)")
    costs = {k: float(v) for k, v in data.get("costs", {}).items()}
    return Profile(name=name, steps=steps, costs=costs, source=source, faults=data.get("faults", {}))


class LatencyModel:
    """Samples each step's modeled delay and makes the step last that long; one seeded RNG per cloud.

    With a :class:`~harness.faults.FaultInjector` (``faults``), every step is handed to it: this is
    the one place where each step passes, so faults set on a step act here, inside its span.
    """

    def __init__(self, profile: Profile, *, seed: int, faults: "FaultInjector | None" = None) -> None:
        self.profile = profile
        self.faults = faults
        self._rng = random.Random(seed)
        self._samplers = {step: make_sampler(spec) for step, spec in profile.steps.items()}
        # per step, the harness's own work after the step's first sleep (to the end of the timed
        # block) and after the block (to the end of the span): what the first sleep leaves room
        # for. The block's work varies (an HTTP round trip, a SQLite write): leaving room for its
        # 90th percentile, 9 steps in 10 end on the precise top-up rather than late; a send has
        # no top-up (its message has left) and little work after its sleep, so its median.
        self._learned: dict[tuple[Step, bool], _Learned] = {}
        # steps with a fixed delay of 0 (every step of the zero profile): nothing to time, so one
        # shared timing that only records the delay on the span (see step())
        self._no_delay = {step: _NoDelay(self._samplers[step](self._rng))  # fixed: no draw
                          for step, spec in profile.steps.items()
                          if spec.get("dist", "fixed") == "fixed" and spec["value"] <= 0}
        if any(median_of(spec) > 0 for spec in profile.steps.values()):
            register_ledger()

    def sample_ms(self, step: Step) -> float:
        return self._samplers[step](self._rng)

    def step(self, step: Step, *, since_ns: int | None = None, finish: bool = True) -> "_StepTiming":
        """``async with model.step(step):`` around a step's work, inside its span.

        The step lasts its sampled delay in own time, counted from the span's start (or from
        ``since_ns``, a ``time.time_ns()``: a receive step starts once its queue wait is over),
        the work in the block included. ``finish=False`` for a send: no sleep after the block
        (the message has left), so the block should end with the publish."""
        no_delay = self._no_delay.get(step)
        if no_delay is not None and (self.faults is None or self.faults.quiet_at(step)):
            # what _StepTiming does for a delay of 0 and no fault, without a timing per step
            return no_delay  # type: ignore[return-value]
        return _StepTiming(self, step, since_ns, finish)

    @asynccontextmanager
    async def span(self, tracer: trace.Tracer, step: Step, **kw: Any) -> AsyncIterator[trace.Span]:
        """The step's span (:func:`harness.telemetry.step_span`) timed by :meth:`step`."""
        with step_span(tracer, step, **kw) as sp:
            async with self.step(step):
                yield sp

    async def delay(self, step: Step, *, since_ns: int | None = None) -> float:
        """The step's delay where nothing follows it in the span: sleep until the step's own time
        (from the span's start or ``since_ns``) reaches it. Returns the modeled ms."""
        async with self.step(step, since_ns=since_ns) as timing:
            pass
        return timing.modeled_ms

    async def sleep_ms(self, ms: float) -> None:
        """Await a state-dependent cost (image copy, host scan) computed by the caller.

        Inside a timed step, and not in one of its child spans, the cost is part of the step's
        modeled time (its deadline moves by ``ms``); in a child span it is that span's time."""
        if ms <= 0:
            return
        timing = _CURRENT.get()
        if timing is not None and timing.clock is not None and not timing.clock.done:
            if trace.get_current_span().get_span_context().span_id == timing.clock.span_id:
                timing.clock.budget_ns += int(ms * 1e6)
        await deadline.sleep_until(time.monotonic_ns() + int(ms * 1e6))

    def cost(self, name: str, default: float = 0.0) -> float:
        return self.profile.costs.get(name, default)

    def _learned_of(self, step: Step, finish: bool) -> "_Learned":
        """What the model learnt of ``step`` (as a send when not ``finish``): see ``__init__``."""
        got = self._learned.get((step, finish))
        if got is None:
            got = self._learned[(step, finish)] = _Learned(finish)
        return got


class _Learned:
    """One step's running estimates: the harness's work after its first sleep (``rest``) and after
    its timed block (``tail``), and its aim: how much earlier than its modeled time the step is
    made to end (``aim_ns``; negative: later).

    The aim is what the fidelity benchmark measures, on the step's last :data:`AIM_WINDOW` spans:
    the median of their own times, as they would have been without the aim, less the median of
    their modeled times. It corrects what the step's clock cannot see coming, the same for every
    span of the step: a wake-up delayed by the callback running when its timer fires (the loop's
    other work, a garbage collection), the hop from the timer to the step's task, the step's
    work after its last sleep beyond what ``rest`` and ``tail`` left room for. A median, not a
    mean: a few very late spans (a loaded box) move it by no more than they move the step's
    median. It is learnt from spans that ended normally; a step never ends before its own work
    is done (the aim only shortens its sleeps).
    """

    __slots__ = ("rest", "tail", "aim_ns", "_window", "_n")

    def __init__(self, finish: bool) -> None:
        self.rest, self.tail = Quantile(REST_QUANTILE if finish else 0.5), Quantile(0.5)
        self.aim_ns = 0
        self._window: deque[tuple[int, int]] = deque(maxlen=AIM_WINDOW)  # (modeled, unaimed own)
        self._n = 0

    def applied(self, budget_ns: int) -> int:
        """The aim for a span of ``budget_ns``: at most :data:`AIM_MAX_REL` of it either way."""
        cap = int(AIM_MAX_REL * budget_ns)
        return max(-cap, min(cap, self.aim_ns))

    def ended(self, clock: StepClock, end_ns: int) -> None:
        """The step's span ended (:class:`StepClock`'s ``on_end``): learn its tail and its time."""
        if clock.exited_ns is not None:
            self.tail.add(clock.own_ns(end_ns, clock.exited_ns))
        self._window.append((clock.budget_ns, clock.own_ns(end_ns) + clock.aimed_ns))
        self._n += 1
        if AIM_MIN_SPANS <= self._n <= 2 * AIM_MIN_SPANS or self._n % 8 == 0:  # sorts 64 pairs every 8th span
            modeled = sorted(m for m, _ in self._window)
            own = sorted(o for _, o in self._window)
            mid = len(own) // 2
            aim = own[mid] - modeled[mid]
            cap = int(AIM_MAX_REL * modeled[mid])
            self.aim_ns = max(-cap, min(cap, aim))


def _aimed(target_ns: int, aim_ns: int) -> int:
    """How much earlier a sleep aimed ``aim_ns`` early, at ``target_ns`` from now, ends than it
    would have: all of the aim when it slept either way, part or none of it when the step's work
    ran past the aimed time (it would have slept less, or not at all). A step's first sleep takes
    what it can; the top-up after the block then takes the rest: without the aim, the step's own
    time would have been longer by the sum."""
    return max(0, target_ns + aim_ns) - max(0, target_ns)


def register_ledger() -> None:
    """Let every tracer provider feed the step clocks (a model with delays needs them)."""
    register_span_processor(LEDGER)


def _holds_pool(faults: "FaultInjector", step: Step) -> bool:
    """A DB step under the db-pool bottleneck: the injector holds a connection for its time."""
    return bool(faults.db_pool) and CATALOGUE[step].transport is Transport.SQL


_CURRENT: ContextVar["_StepTiming | None"] = ContextVar("harness_step_timing", default=None)


def _sleep_until_wall(wall_ns: int) -> Awaitable[None]:
    return deadline.sleep_until(time.monotonic_ns() + (wall_ns - time.time_ns()))


class _NoDelay:
    """A step's timing when its delay is a fixed 0 and no fault is set on it (the zero profile):
    what :class:`_StepTiming` does then (the span gets ``openstack.boot.modeled_delay_ms``, nothing
    sleeps, no clock), as one instance per step shared by every call: it keeps no state per call.
    ~0.6 % of the cloud's CPU on the zero profile was a _StepTiming made and entered per step."""

    __slots__ = ("modeled_ms", "_value")
    clock = None  # as a _StepTiming that had nothing to time

    def __init__(self, value: float) -> None:
        self._value = self.modeled_ms = value  # the fixed sampler's value (a float)

    async def __aenter__(self) -> "_NoDelay":
        # trace.get_current_span(), read from the context variable itself (~0.3 us less a step)
        span = _cv_get().get(_SPAN_KEY)
        if span is None or not isinstance(span, trace.Span):
            span = trace.INVALID_SPAN
        span.set_attribute(MODELED_DELAY_ATTR, self._value)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        return None

    def sent(self, at_ns: int) -> None:
        """Nothing to time (see :meth:`_StepTiming.sent`)."""


class _StepTiming:
    """What :meth:`LatencyModel.step` returns (see there)."""

    __slots__ = ("model", "step_no", "since_ns", "finish", "modeled_ms", "clock", "span",
                 "_slept_until", "_slept", "_aim", "_sent_ns", "_token")

    def __init__(self, model: LatencyModel, step: Step, since_ns: int | None, finish: bool) -> None:
        self.model, self.step_no, self.since_ns, self.finish = model, step, since_ns, finish
        self.modeled_ms = 0.0
        self.clock: StepClock | None = None
        self.span: trace.Span = trace.INVALID_SPAN
        self._slept_until = 0
        self._slept = 0  # ns slept by the model in this step (not the harness's work)
        self._aim = 0  # ns the step is made to end before its modeled time (_Learned.aim_ns)
        self._sent_ns = 0  # a send's instant, when its block says it (see sent)
        self._token: Token | None = None

    async def __aenter__(self) -> "_StepTiming":
        model, step = self.model, self.step_no
        ms = self.modeled_ms = model.sample_ms(step)
        span = self.span = trace.get_current_span()
        span.set_attribute(MODELED_DELAY_ATTR, ms)
        faults = model.faults
        if ms <= 0 or (faults is not None and _holds_pool(faults, step)):
            # nothing to time (the zero profile), or a DB step holding a pool connection for its
            # modeled time (the db-pool bottleneck): the fault injector sleeps it, as it always did
            if faults is not None:
                self.modeled_ms = await faults.run_step(step, ms)
            return self
        anchor = self.since_ns or getattr(span, "start_time", None) or time.time_ns()
        budget = int(ms * 1e6)
        if faults is not None:
            try:
                extra_ms = await faults.run_step(step, 0.0)  # fault latency slept; faults raised
            except Exception:
                await _sleep_until_wall(anchor + budget)  # a failing step still takes its time
                raise
            if extra_ms:
                budget += int(extra_ms * 1e6)
                self.modeled_ms = ms + extra_ms
                span.set_attribute(MODELED_DELAY_ATTR, self.modeled_ms)
        sid = span.get_span_context().span_id
        if not span.is_recording() or not getattr(span, "start_time", None):
            # no trace to tell descendants from own work: sleep the delay less the work so far
            await _sleep_until_wall(anchor + budget)
            return self
        learned = model._learned_of(step, self.finish)
        aim = self._aim = learned.applied(budget)
        if aim:
            span.set_attribute(COMPENSATION_ATTR, aim / 1e6)
        clock = self.clock = StepClock(sid, anchor, budget, hull=is_call(span), send=not self.finish,
                                       on_end=learned.ended)
        LEDGER.open(clock)
        self._token = _CURRENT.set(self)
        now = time.time_ns()
        first = budget - aim - clock.own_ns(now) - learned.rest.value - learned.tail.value
        clock.aimed_ns = _aimed(first, aim)  # a send's first sleep is its last
        if first > 0:
            await _sleep_until_wall(now + first)
        self._slept_until = time.time_ns()
        self._slept = self._slept_until - now
        return self

    def sent(self, at_ns: int) -> None:
        """A send's block says when its message left (``Message.sent_at_ns``, just before the
        publish): the send's own time ends there, where the analysis ends it (the receive span
        starts at that instant), not when the block exits after the publish (~10 us later on the
        memory transport; a network round trip on AMQP). Without it the step's clock counted the
        publish as the send's own time and its aim made 0.3 ms sends ~10 % short."""
        self._sent_ns = at_ns

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        clock = self.clock
        if clock is None:
            return
        now = time.time_ns()
        if not self.finish and self._sent_ns and exc_type is None:
            now = min(now, self._sent_ns)
        try:
            learned = self.model._learned_of(self.step_no, self.finish)
            tail = learned.tail
            learned.rest.add(clock.own_ns(now, self._slept_until))
            own = clock.own_ns(now)
            left = clock.budget_ns - self._aim - own - tail.value
            if exc_type is not None:  # a failed step's time says nothing of the timing's error
                clock.on_end = None
            cancelled = exc_type is not None and not issubclass(exc_type, Exception)
            if self.finish and not cancelled and not clock.has_open_descendants:
                # what the first sleep's aim did not shorten, the top-up's may (see _aimed)
                clock.aimed_ns += _aimed(left, self._aim - clock.aimed_ns)
                if left > 0:
                    await _sleep_until_wall(now + left)  # returns at once if a wake-up takes longer
            # the harness's own work alone (own time less the model's sleeps) beyond the model:
            # not a late wake-up, a step the harness could not make as fast as the model asked
            over = own - self._slept + tail.value - clock.budget_ns
            if over > max(OVERRUN_MIN_NS, clock.budget_ns * OVERRUN_REL):
                self.span.set_attribute(OVERRUN_ATTR, over / 1e6)
        finally:
            # a send's own time ends with its message's sending (see sent), else with its block
            LEDGER.close(clock, now if not self.finish else time.time_ns())
            if self._token is not None:
                _CURRENT.reset(self._token)
