"""Fault injection: errors, added latency, timeouts, lost messages, revoked tokens, services down.

A benchmark is only worth trusting if we know what the cloud does when parts of it fail, so faults
are first-class and visible in the trace. A fault is a :class:`FaultSpec`: *where* (a service,
and optionally boot steps), *what* (an error rate, added latency, a timeout rate, a lost-message
rate, a token-revocation rate, or the whole service down) and *when* (a window after the fault was
set). Specs come from the profile's ``[faults]`` table (:func:`plan_from_profile`) or, at run
time, from the admin API (``/v2.1/os-harness-faults``) and ``harness faults``.

Where they act (one :class:`FaultInjector` per cloud, seeded):

* **at a step** — every modeled step delay goes through :meth:`LatencyModel.delay`, which hands
  it to :meth:`FaultInjector.run_step`. Rules naming steps act there, inside the step's span, and
  raise a fault each layer turns into its natural failure: an HTTP handler answers the project's
  5xx body (:class:`InjectedFault` is an :class:`~harness.services.http.ApiError`), an RPC step
  raises an :class:`~harness.messaging.rpc.RpcError` (the remote error or timeout the caller
  handles), a build step fails the build (nova-compute reports ``build_failed``: reschedule or
  ERROR). A lost message (:class:`MessageLost`) is never published; its caller times out (call)
  or nobody hears of it (cast: the build-timeout periodic task catches the boot).
* **at a service's door** — rules without steps act on every request or message the service takes
  (the HTTP gate of :mod:`harness.services.fault_gate`, the RPC consumer in
  :mod:`harness.messaging.rpc`). ``down`` answers HTTP with 503 and holds RPC messages in their
  queue until the window ends (so calls time out and queue waits grow, as with a dead consumer).

Every injected fault adds an event named ``fault.<kind>`` (``harness.fault.id``,
``harness.fault.service``, the step) to the current span; errors also set ERROR status with the
fault's message. Fault latency is added to the span's ``openstack.boot.modeled_delay_ms`` (it is
simulated time, not the harness's work) and recorded apart as ``harness.fault.latency_ms``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.latency import MODELED_DELAY_ATTR, ProfileError, Sampler, make_sampler
from harness.messaging import rpc
from harness.services.http import ApiError
from harness.steps import CATALOGUE, Step, Transport
from harness.telemetry import mark_error

#: Services a fault can name (as their spans' ``service.name``); ``*`` is any of them.
SERVICES = ("keystone", "nova-api", "nova-scheduler", "nova-conductor", "nova-compute", "glance-api",
            "neutron-server", "neutron-agent", "cinder-api", "cinder-scheduler", "cinder-volume")
#: Steps that send a message: a lost one is never published.
SEND_STEPS = frozenset(s for s in (Step.SCHEDULE_CALL, Step.SCHEDULER_CAST_BUILD,
                                   Step.COMPUTE_CALL_CONDUCTOR, Step.CONDUCTOR_REPLY))
#: Steps in which a service asks Keystone to validate a token (a revoked token fails there).
VALIDATION_STEPS = frozenset((Step.API_VALIDATE_TOKEN, Step.GLANCE_VALIDATE_TOKEN,
                              Step.NEUTRON_VALIDATE_TOKEN, Step.CINDER_VALIDATE_TOKEN))
#: Steps whose transport is REST, plus the virt driver: "every REST step and the virt driver".
REST_STEPS = tuple(s for s, i in CATALOGUE.items() if i.transport is Transport.REST)
EVENT_PREFIX = "fault."
ATTR_FAULT_LATENCY = "harness.fault.latency_ms"


# -- the faults a layer sees ----------------------------------------------------------------------

class InjectedFault(ApiError):
    """An injected failure. Being an :class:`ApiError`, an HTTP service answers it with its own
    project's error body and the fault's status (500 unless the spec says otherwise)."""

    def __init__(self, message: str, *, status: int = 500, kind: str = "error", fault_id: str = "") -> None:
        ApiError.__init__(self, status, message)
        self.fault_kind, self.fault_id = kind, fault_id


class InjectedRpcFault(InjectedFault, rpc.RpcError):
    """An injected failure at a messaging step: callers handle it as a remote error."""


class InjectedTimeout(InjectedFault):
    """A step that hung for the spec's ``timeout_s`` and then gave up (HTTP: 504)."""


class InjectedRpcTimeout(InjectedTimeout, rpc.RpcTimeout):
    """A messaging step that hung: callers handle it as oslo.messaging's MessagingTimeout."""


class MessageLost(InjectedFault, rpc.MessageLost):
    """A message the broker lost: the sending step catches it and does not publish."""


# -- what a fault is ------------------------------------------------------------------------------

class FaultSpec(BaseModel):
    """One fault: where, what and when. Unknown keys and out-of-range values are refused with a
    message naming them (the API answers 400 with it, the CLI prints it)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:8], pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                    description="name of the fault (generated when not given)")
    service: str = Field("*", description="service it acts in (its span's service.name) or '*'")
    steps: list[int] = Field(default_factory=list,
                             description="boot steps it acts at; none: every request/message the "
                                         "service takes")
    error_rate: float = Field(0.0, ge=0, le=1, description="probability of an error")
    status: int = Field(500, ge=500, le=599, description="HTTP status an injected error answers")
    latency_ms: float | dict[str, Any] | None = Field(
        None, description="added latency: milliseconds, or a distribution table as in profiles")
    timeout_rate: float = Field(0.0, ge=0, le=1, description="probability the step hangs, then fails")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="how long a hung step hangs")
    lost_rate: float = Field(0.0, ge=0, le=1,
                             description="probability a message is lost (send steps 8, 12, 14, 18)")
    revoke_rate: float = Field(0.0, ge=0, le=1,
                               description="probability the token is revoked just before it is "
                                           "validated (steps 4, 21, 24, 27)")
    down: bool = Field(False, description="the service is down (HTTP 503; RPC messages wait)")
    start_s: float = Field(0.0, ge=0, le=86400, description="seconds after it is set that it starts")
    duration_s: float | None = Field(None, gt=0, le=86400, description="how long it lasts (none: until "
                                                                       "cleared)")
    message: str | None = Field(None, max_length=500, description="text of the injected error")

    @model_validator(mode="before")
    @classmethod
    def _one_step(cls, data: Any) -> Any:
        """``step = 22`` is accepted as ``steps = [22]``."""
        if isinstance(data, dict) and "step" in data:
            data = dict(data)
            step = data.pop("step")
            if "steps" in data:
                raise ValueError("give 'step' or 'steps', not both")
            data["steps"] = step if isinstance(step, list) else [step]
        return data

    @field_validator("service")
    @classmethod
    def _known_service(cls, v: str) -> str:
        if v != "*" and v not in SERVICES:
            raise ValueError(f"unknown service {v!r}: use one of {', '.join(SERVICES)} or '*'")
        return v

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if s not in CATALOGUE]
        if bad:
            raise ValueError(f"unknown step {bad[0]!r}: boot steps are 1..29")
        return sorted(set(v))

    @field_validator("latency_ms")
    @classmethod
    def _latency(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, bool) or (isinstance(v, (int, float)) and (v < 0 or not math.isfinite(v))):
            raise ValueError(f"latency_ms must be a non-negative number or a distribution, got {v!r}")
        try:
            make_sampler(v)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _coherent(self) -> "FaultSpec":
        if self.service != "*":
            wrong = [s for s in self.steps if CATALOGUE[Step(s)].service != self.service]
            if wrong:
                s = Step(wrong[0])
                raise ValueError(f"step {int(s)} runs in {CATALOGUE[s].service}, not {self.service}")
        if self.down and self.steps:
            raise ValueError("a 'down' fault takes the whole service down: give no steps")
        if self.down and self.service == "*":
            raise ValueError("a 'down' fault needs a service")
        if not self.steps and self.service == "*" and not self.down:
            raise ValueError("give a service or steps")
        if self.lost_rate and (not self.steps or any(s not in SEND_STEPS for s in self.steps)):
            raise ValueError("lost_rate applies to the send steps 8, 12, 14 and 18 only")
        if self.revoke_rate and (not self.steps or any(s not in VALIDATION_STEPS for s in self.steps)):
            raise ValueError("revoke_rate applies to the token validation steps 4, 21, 24 and 27 only")
        if not (self.error_rate or self.timeout_rate or self.lost_rate or self.revoke_rate
                or self.down or self.latency_ms is not None):
            raise ValueError("a fault needs an effect: error_rate, latency_ms, timeout_rate, "
                             "lost_rate, revoke_rate or down")
        return self

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_specs(items: Iterable[Mapping[str, Any]], *, where: str = "fault") -> list[FaultSpec]:
    """Specs from plain data; ``ValueError`` names the first bad one and what is wrong with it."""
    specs: list[FaultSpec] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} {i}: a fault is a table/object, got {item!r}")
        try:
            specs.append(FaultSpec(**item))
        except ValidationError as exc:
            raise ValueError(f"{where} {i}: {_explain(exc)}") from None
        except TypeError as exc:
            raise ValueError(f"{where} {i}: {exc}") from None
    ids = [s.id for s in specs]
    dup = next((x for x in ids if ids.count(x) > 1), None)
    if dup:
        raise ValueError(f"{where}: two faults are named {dup!r}")
    return specs


def _explain(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if loc and "input" in e and not isinstance(e["input"], (dict, list)):
            msg += f" (got {e['input']!r})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def plan_from_profile(table: Mapping[str, Any] | None) -> tuple[list[FaultSpec], int | None]:
    """The profile's ``[faults]`` table: ``seed``, ``presets = [...]`` and ``[[faults.rules]]``."""
    if not table:
        return [], None
    unknown = set(table) - {"seed", "rules", "presets"}
    if unknown:
        raise ValueError(f"[faults]: unknown keys {sorted(unknown)} (seed, presets, rules)")
    seed = table.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise ValueError(f"[faults] seed must be an integer, got {seed!r}")
    specs = [s for name in table.get("presets", []) for s in preset(name)]
    specs += parse_specs(table.get("rules", []), where="[[faults.rules]]")
    ids = [s.id for s in specs]
    dup = next((x for x in ids if ids.count(x) > 1), None)
    if dup:
        raise ValueError(f"[faults]: two faults are named {dup!r}")
    return specs, seed


#: Ready-made OpenStack faults (``harness faults preset NAME``): name -> (what it shows, specs).
PRESETS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "slow-glance": ("glance-api answers every request 300 ms (lognormal) slower",
                    [{"service": "glance-api", "latency_ms": {"dist": "lognormal", "median": 300, "sigma": 0.4}}]),
    "slow-neutron": ("port creation (step 25) takes 500 ms (lognormal) longer",
                     [{"steps": [25], "latency_ms": {"dist": "lognormal", "median": 500, "sigma": 0.4}}]),
    "slow-cinder": ("cinder-api answers every request 300 ms (lognormal) slower",
                    [{"service": "cinder-api", "latency_ms": {"dist": "lognormal", "median": 300, "sigma": 0.4}}]),
    "lost-build-cast": ("one build cast in ten (step 12) is lost: the build-timeout task sets ERROR",
                        [{"steps": [12], "lost_rate": 0.1}]),
    "delayed-build-cast": ("the build cast reaches nova-compute 1 s late (step 13)",
                           [{"steps": [13], "latency_ms": 1000}]),
    "token-revoked-mid-boot": ("one token in five is revoked while glance, neutron or cinder validate it",
                               [{"steps": [21, 24, 27], "revoke_rate": 0.2}]),
    "glance-outage": ("glance-api is down for 10 s", [{"service": "glance-api", "down": True, "duration_s": 10}]),
    "flaky-rest": ("5% errors at every REST step and in the virt driver",
                   [{"steps": sorted({int(s) for s in REST_STEPS} | {int(Step.SPAWN)}), "error_rate": 0.05}]),
}


def preset(name: str) -> list[FaultSpec]:
    """The specs of a preset, named after it (``<preset>-<n>`` when it has several); ValueError
    names the presets there are."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    items = PRESETS[name][1]
    return parse_specs([{**item, "id": name if len(items) == 1 else f"{name}-{i}"}
                        for i, item in enumerate(items, 1)], where=f"preset {name}")


# -- the injector ---------------------------------------------------------------------------------

@dataclass
class _Active:
    """A spec as the injector holds it: its sampler, its window and what it has done."""

    spec: FaultSpec
    set_at: float
    latency: Sampler | None
    counts: dict[str, int] = field(default_factory=dict)

    def live(self, now: float) -> bool:
        start = self.set_at + self.spec.start_s
        if now < start:
            return False
        return self.spec.duration_s is None or now < start + self.spec.duration_s

    def ends_at(self) -> float:
        if self.spec.duration_s is None:
            return math.inf
        return self.set_at + self.spec.start_s + self.spec.duration_s

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


class FaultInjector:
    """Holds the faults of one cloud and applies them; seeded, so a run can be repeated.

    It also realises the planted bottlenecks that act at steps (the DB pool of size one: a SQL
    step's modeled time is spent holding one of the service's ``db_pool_size`` connections); see
    :mod:`harness.bottlenecks`.
    """

    def __init__(self, specs: Iterable[FaultSpec] = (), *, seed: int = 0, db_pool: int | None = None,
                 clock: Any = time.monotonic) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self._active: dict[str, _Active] = {}
        self._by_step: dict[int, list[_Active]] = {}
        self._by_service: dict[str, list[_Active]] = {}
        self._changed = asyncio.Event()  # set (and replaced) whenever the faults change
        self.db_pool = db_pool
        self._pools: dict[str, asyncio.Semaphore] = {}
        for spec in specs:
            self.add(spec)

    # -- managing faults ---------------------------------------------------------------------
    def add(self, spec: FaultSpec) -> FaultSpec:
        """Set a fault (replacing one of the same id); its window starts now."""
        self._keep(spec)
        self._reindex()
        return spec

    def _keep(self, spec: FaultSpec) -> None:
        sampler = make_sampler(spec.latency_ms) if spec.latency_ms is not None else None
        self._active[spec.id] = _Active(spec, self._clock(), sampler)

    def remove(self, fault_id: str) -> bool:
        found = self._active.pop(fault_id, None) is not None
        self._reindex()
        return found

    def clear(self) -> int:
        n = len(self._active)
        self._active.clear()
        self._reindex()
        return n

    def replace(self, specs: Iterable[FaultSpec]) -> None:
        self._active.clear()
        for spec in specs:
            self._keep(spec)
        self._reindex()

    def _reindex(self) -> None:
        by_step: dict[int, list[_Active]] = {}
        by_service: dict[str, list[_Active]] = {}
        for a in self._active.values():
            if a.spec.steps:
                for s in a.spec.steps:
                    by_step.setdefault(s, []).append(a)
            else:
                by_service.setdefault(a.spec.service, []).append(a)
        self._by_step, self._by_service = by_step, by_service
        self._changed.set()
        self._changed = asyncio.Event()

    def snapshot(self) -> list[dict[str, Any]]:
        """Every fault with its state (``active`` now?) and what it has injected so far."""
        now = self._clock()
        return [{**a.spec.public(), "active": a.live(now), "injected": dict(a.counts),
                 "remaining_s": None if a.ends_at() == math.inf else max(0.0, round(a.ends_at() - now, 3))}
                for a in self._active.values()]

    @property
    def empty(self) -> bool:
        return not self._active

    # -- at a step ---------------------------------------------------------------------------
    async def run_step(self, step: Step, modeled_ms: float) -> float:
        """Sleep the step's modeled delay plus any fault latency, then inject what is due.

        Returns the delay slept in ms. Raises the step's fault, after the delay (a failing step
        still takes its time)."""
        rules = self._by_step.get(int(step))
        info = CATALOGUE[step]
        pool = self._pool(info.service) if (self.db_pool and info.transport is Transport.SQL) else None
        span = trace.get_current_span()
        extra, fault = 0.0, None
        if rules:
            now = self._clock()
            for a in rules:
                if not a.live(now):
                    continue
                extra += self._latency(a, span, step)
                fault = fault or self._draw(a, span, step)
        total = modeled_ms + extra
        if extra and span.is_recording():
            span.set_attribute(MODELED_DELAY_ATTR, total)
        if pool is not None:
            await self._hold(pool, total, span)
        elif total > 0:
            await asyncio.sleep(total / 1000.0)
        if fault is not None:
            if isinstance(fault, InjectedTimeout):
                await asyncio.sleep(self._active_timeout(fault))
            raise fault
        return total

    def _latency(self, a: _Active, span: trace.Span, step: Step | None) -> float:
        if a.latency is None:
            return 0.0
        ms = a.latency(self._rng)
        a.count("latency")
        if span.is_recording():
            span.set_attribute(ATTR_FAULT_LATENCY, ms)
            span.add_event(EVENT_PREFIX + "latency", {**self._attrs(a, step), "latency_ms": ms})
        return ms

    def _draw(self, a: _Active, span: trace.Span, step: Step | None, *, rpc: bool = False
              ) -> InjectedFault | None:
        """Roll the dice for each of the spec's failure kinds; the first that fires wins."""
        spec = a.spec
        if step is not None:  # at a step its transport decides; at a door the caller says
            rpc = CATALOGUE[step].transport is Transport.AMQP
        where = f"step {int(step)} ({CATALOGUE[step].span_name})" if step is not None else spec.service
        if spec.lost_rate and self._rng.random() < spec.lost_rate:
            a.count("lost")
            text = spec.message or f"Injected fault {spec.id}: message lost at {where}"
            mark_error(span, text, event=EVENT_PREFIX + "lost", **self._attrs(a, step))
            return MessageLost(text, kind="lost", fault_id=spec.id)
        if spec.timeout_rate and self._rng.random() < spec.timeout_rate:
            a.count("timeout")
            text = spec.message or f"Injected fault {spec.id}: {where} timed out after {spec.timeout_s:g} s"
            mark_error(span, text, event=EVENT_PREFIX + "timeout", **self._attrs(a, step))
            cls = InjectedRpcTimeout if rpc else InjectedTimeout
            return cls(text, status=504, kind="timeout", fault_id=spec.id)
        if spec.error_rate and self._rng.random() < spec.error_rate:
            a.count("error")
            text = spec.message or f"Injected fault {spec.id}: {where} failed"
            mark_error(span, text, event=EVENT_PREFIX + "error", **self._attrs(a, step))
            cls = InjectedRpcFault if rpc else InjectedFault
            return cls(text, status=spec.status, kind="error", fault_id=spec.id)
        return None

    def _active_timeout(self, fault: InjectedFault) -> float:
        a = self._active.get(fault.fault_id)
        return a.spec.timeout_s if a is not None else 0.0

    @staticmethod
    def _attrs(a: _Active, step: Step | None) -> dict[str, Any]:
        attrs: dict[str, Any] = {"harness.fault.id": a.spec.id, "harness.fault.service": a.spec.service}
        if step is not None:
            attrs["openstack.boot.step"] = int(step)
        return attrs

    # -- the DB pool bottleneck ---------------------------------------------------------------
    def _pool(self, service: str) -> asyncio.Semaphore:
        pool = self._pools.get(service)
        if pool is None:
            pool = self._pools[service] = asyncio.Semaphore(self.db_pool or 1)
        return pool

    async def _hold(self, pool: asyncio.Semaphore, ms: float, span: trace.Span) -> None:
        t0 = time.perf_counter()
        async with pool:
            waited = (time.perf_counter() - t0) * 1000
            if span.is_recording():
                span.set_attribute("harness.db_pool.wait_ms", waited)
                if waited >= 1.0:
                    span.add_event("db.pool.wait", {"wait_ms": waited, "pool_size": self.db_pool or 1})
            if ms > 0:
                await asyncio.sleep(ms / 1000.0)

    # -- at a service's door ---------------------------------------------------------------
    def quiet_at(self, step: Step) -> bool:
        """Does :meth:`run_step` do nothing for ``step`` but sleep its modeled delay (no fault set
        on it, no DB pool held)? The latency model's shortcut for steps without a delay asks."""
        return not self._by_step.get(int(step)) and not (
            self.db_pool and CATALOGUE[step].transport is Transport.SQL)

    def at_door_of(self, service: str) -> bool:
        """Is any step-less fault (down, latency, errors, timeouts) set on ``service``? When not,
        its door has nothing to do per request (the HTTP gate's fast path)."""
        return service in self._by_service

    def down(self, service: str) -> FaultSpec | None:
        """The 'down' fault in force for ``service`` now, if any."""
        now = self._clock()
        for a in self._by_service.get(service, ()):
            if a.spec.down and a.live(now):
                return a.spec
        return None

    def refuse(self, service: str, span: trace.Span) -> InjectedFault | None:
        """HTTP: the 503 a down service answers with (None when it is up)."""
        spec = self.down(service)
        if spec is None:
            return None
        a = self._active[spec.id]
        a.count("refused")
        text = spec.message or f"Injected fault {spec.id}: {service} is down"
        mark_error(span, text, event=EVENT_PREFIX + "service_down", **self._attrs(a, None))
        return InjectedFault(text, status=503, kind="down", fault_id=spec.id)

    async def wait_up(self, service: str) -> tuple[FaultSpec | None, float]:
        """RPC: hold a message while its consumer is down; (the fault, seconds waited)."""
        spec = self.down(service)
        if spec is None:
            return None, 0.0
        t0 = self._clock()
        first = spec
        while spec is not None:
            a = self._active.get(spec.id)
            if a is None:
                break
            a.count("held")
            changed = self._changed  # woken early when the faults change (cleared by the API)
            timeout = a.ends_at() - self._clock()
            try:
                await asyncio.wait_for(changed.wait(), None if timeout == math.inf else max(0.0, timeout))
            except asyncio.TimeoutError:
                pass
            spec = self.down(service)
        return first, self._clock() - t0

    async def at_door(self, service: str, span: trace.Span, *, rpc: bool) -> None:
        """Rules without steps: latency, errors and timeouts on each request or message."""
        rules = self._by_service.get(service)
        if not rules:
            return
        now = self._clock()
        extra, fault = 0.0, None
        for a in rules:
            if a.spec.down or not a.live(now):
                continue
            extra += self._latency(a, span, None)
            fault = fault or self._draw(a, span, None, rpc=rpc)
        if extra > 0:
            await asyncio.sleep(extra / 1000.0)
        if fault is not None:
            if isinstance(fault, InjectedTimeout):
                await asyncio.sleep(self._active_timeout(fault))
            raise fault

    # -- Keystone: revocation mid-boot --------------------------------------------------------
    def revoke_due(self, step: int | None, span: trace.Span) -> bool:
        """Should the token being validated for ``step`` be revoked first? (Keystone's gate asks.)"""
        if step is None:
            return False
        rules = self._by_step.get(int(step))
        if not rules:
            return False
        now = self._clock()
        for a in rules:
            if a.spec.revoke_rate and a.live(now) and self._rng.random() < a.spec.revoke_rate:
                a.count("revoked")
                span.add_event(EVENT_PREFIX + "token_revoked", self._attrs(a, Step(int(step))))
                return True
        return False

