"""The experiment file: what cells to run and how each is loaded, as a typed model.

Example (every key optional; this is the default experiment)::

    name = "default"
    driver = "locust"          # Locust headless in a subprocess; or "builtin" (asyncio, in-process)
    duration_s = 15            # load time per cell
    hosts = 8
    profiles = ["fast"]
    schedulers = ["filter_scheduler", "pack", "spread"]   # or tables: {name = "...", options = {...}}
    loads = [{users = 4}, {users = 16}]                   # closed-loop users or {rate = 5.0} boots/s

    [boot]                     # what each user boots
    flavor = "1"
    poll_interval_s = 0.05

    [settings]                 # any harness setting, as in a settings file
    max_concurrent_builds = 10

    [sla]                      # see harness.experiment.sla
    max_failure_rate = 0.0
"""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from harness.experiment.sla import SlaSpec


class ExperimentError(ValueError):
    """An experiment file that cannot be run; the message names the bad value."""


class SchedulerChoice(BaseModel):
    model_config = {"extra": "forbid"}
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str = ""

    @property
    def tag(self) -> str:
        return self.label or self.name


class LoadLevel(BaseModel):
    """Closed-loop ``users`` (Locust's default model) or an open-loop arrival ``rate`` (boots/s)."""

    model_config = {"extra": "forbid"}
    users: int | None = Field(None, ge=1, le=10000)
    rate: float | None = Field(None, gt=0, le=10000)

    @model_validator(mode="after")
    def _one_of(self) -> "LoadLevel":
        if (self.users is None) == (self.rate is None):
            raise ValueError("a load level is either {users = N} or {rate = R}")
        return self

    @property
    def tag(self) -> str:
        return f"u{self.users}" if self.users is not None else f"r{self.rate:g}"

    @property
    def offered(self) -> float:
        return float(self.users if self.users is not None else self.rate)  # type: ignore[arg-type]


class BootSpec(BaseModel):
    model_config = {"extra": "forbid"}
    flavor: str = "1"
    image: str | None = None
    poll_interval_s: float = Field(0.05, gt=0)
    boot_timeout_s: float = Field(120.0, gt=0)


class Experiment(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = "default"
    driver: Literal["locust", "builtin"] = Field(
        "locust", description="locust: Locust headless in a subprocess; builtin: asyncio, in-process")
    duration_s: float = Field(15.0, gt=0, le=24 * 3600)
    hosts: int = Field(8, ge=1, le=10000)
    seed: int = 42
    profiles: list[str] = Field(default_factory=lambda: ["fast"])
    schedulers: list[SchedulerChoice] = Field(default_factory=lambda: [
        SchedulerChoice(name="filter_scheduler"), SchedulerChoice(name="pack"),
        SchedulerChoice(name="spread"),
    ])
    loads: list[LoadLevel] = Field(default_factory=lambda: [LoadLevel(users=4), LoadLevel(users=16)])
    boot: BootSpec = BootSpec()
    settings: dict[str, Any] = Field(default_factory=dict)
    sla: SlaSpec = Field(default_factory=lambda: SlaSpec(max_failure_rate_pct=5.0))
    auth_url: str | None = Field(None, description="run against this cloud instead of embedded ones")

    @field_validator("schedulers", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        return [{"name": x} if isinstance(x, str) else x for x in v]

    @field_validator("schedulers", "loads", "profiles")
    @classmethod
    def _non_empty(cls, v: list) -> list:
        if not v:
            raise ValueError("must not be empty")
        return v

    def cells(self) -> list["Cell"]:
        return [Cell(self, s, l, p) for p, s, l in itertools.product(self.profiles, self.schedulers, self.loads)]


class Cell:
    """One run of the matrix: a scheduler at a load level with a profile."""

    def __init__(self, exp: Experiment, scheduler: SchedulerChoice, load: LoadLevel, profile: str) -> None:
        self.exp, self.scheduler, self.load, self.profile = exp, scheduler, load, profile

    @property
    def name(self) -> str:
        profile = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(self.profile).stem)
        return f"{self.scheduler.tag}__{self.load.tag}__{profile}"

    def labels(self) -> dict[str, Any]:
        return {"cell": self.name, "scheduler": self.scheduler.tag, "load": self.load.tag,
                "users": self.load.users, "rate": self.load.rate, "offered": self.load.offered,
                "profile": self.profile}


def load_experiment(path: str | Path | None) -> Experiment:
    """The experiment in ``path`` (None: the default experiment)."""
    if path is None:
        return Experiment()
    p = Path(path)
    if not p.is_file():
        raise ExperimentError(f"experiment file not found: {p}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{p}: not valid TOML: {exc}") from None
    try:
        return Experiment(**data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise ExperimentError(f"{p}: {errors}") from None
