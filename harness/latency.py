"""The latency model: how long each step takes beyond the harness's own work.

A profile (TOML, shipped in ``harness/profiles/``) gives each step a distribution. The delay is
awaited *inside* the step's span, so a span's duration is the modeled delay plus the real work of
the harness. One seeded generator per cloud keeps runs repeatable.

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

import asyncio
import math
import random
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from opentelemetry import trace

from harness.steps import CATALOGUE, Step

if TYPE_CHECKING:
    from harness.faults import FaultInjector

MODELED_DELAY_ATTR = "openstack.boot.modeled_delay_ms"

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
    """Samples and awaits each step's modeled delay; one seeded RNG per cloud.

    With a :class:`~harness.faults.FaultInjector` (``faults``), every step's delay is handed to it:
    this is the one place where each step passes, so faults set on a step act here, inside its span.
    """

    def __init__(self, profile: Profile, *, seed: int, faults: "FaultInjector | None" = None) -> None:
        self.profile = profile
        self.faults = faults
        self._rng = random.Random(seed)
        self._samplers = {step: make_sampler(spec) for step, spec in profile.steps.items()}

    def sample_ms(self, step: Step) -> float:
        return self._samplers[step](self._rng)

    async def delay(self, step: Step) -> float:
        """Sleep for the step's modeled delay, recorded on the current (the step's) span as
        ``openstack.boot.modeled_delay_ms``, so real work = duration - modeled delay."""
        ms = self._samplers[step](self._rng)
        trace.get_current_span().set_attribute(MODELED_DELAY_ATTR, ms)
        if self.faults is not None:  # may add latency, hold a pool slot, or raise the step's fault
            return await self.faults.run_step(step, ms)
        if ms > 0:
            await asyncio.sleep(ms / 1000.0)
        return ms

    @staticmethod
    async def sleep_ms(ms: float) -> None:
        """Await a state-dependent cost (image copy, host scan) computed by the caller."""
        if ms > 0:
            await asyncio.sleep(ms / 1000.0)

    def cost(self, name: str, default: float = 0.0) -> float:
        return self.profile.costs.get(name, default)
