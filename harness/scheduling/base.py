"""The scheduler interface: host states + a request spec -> ordered candidate hosts, with reasons.

A scheduler is a small class registered by name (``@register``); every module in this package is
imported by :func:`load_all`, so adding an algorithm is adding a file. Schedulers are pure: they
read :class:`HostState` snapshots and never touch the DB; the claim that makes a choice real is
atomic in :meth:`harness.db.NovaDB.claim`, which is why a scheduler returns *several* candidates
(the alternates Nova tries after a lost race or a failed build).
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence


@dataclass(frozen=True, slots=True)
class HostState:
    """What a scheduler knows of one compute node (a row of ``compute_nodes``)."""

    host: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int = 0
    memory_mb_used: int = 0
    local_gb_used: int = 0
    running_vms: int = 0
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    availability_zone: str = "nova"
    arch: str = "x86_64"
    disabled: bool = False
    failed_builds: int = 0
    generation: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "HostState":
        return cls(**{k: row[k] for k in cls.__slots__ if k in row})  # type: ignore[attr-defined]

    # Capacity as placement computes it: (total - reserved) * ratio - used.
    @property
    def free_ram_mb(self) -> float:
        return self.memory_mb * self.ram_allocation_ratio - self.memory_mb_used

    @property
    def free_vcpus(self) -> float:
        return self.vcpus * self.cpu_allocation_ratio - self.vcpus_used

    @property
    def free_disk_gb(self) -> float:
        return self.local_gb * self.disk_allocation_ratio - self.local_gb_used

    def fits(self, spec: Any) -> bool:
        """Whether ``spec`` (anything with vcpus, memory_mb and disk_gb) fits what is free."""
        return (
            spec.memory_mb <= self.free_ram_mb
            and spec.vcpus <= self.free_vcpus
            and spec.disk_gb <= self.free_disk_gb
        )


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What one boot asks for (Nova's RequestSpec, the fields the algorithms read)."""

    instance_uuid: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    availability_zone: str | None = None
    image_id: str | None = None
    image_arch: str | None = None
    ignore_hosts: frozenset[str] = frozenset()
    num_alternates: int = 2


@dataclass(slots=True)
class Decision:
    """Ordered candidates (first is chosen), their weights and why the others were dropped."""

    candidates: list[HostState]
    considered: int
    weights: dict[str, float] = field(default_factory=dict)
    filter_counts: list[tuple[str, int]] = field(default_factory=list)  # hosts left after each

    @property
    def chosen(self) -> HostState | None:
        return self.candidates[0] if self.candidates else None


class Scheduler(abc.ABC):
    """Base of every algorithm. ``options`` documents the keyword options the class accepts."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, *, rng: random.Random, **options: Any) -> None:
        unknown = set(options) - set(self.options)
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ValueError(
                f"scheduler {self.name!r} has no option(s) {', '.join(sorted(unknown))} (known: {known})"
            )
        self.rng = rng

    @abc.abstractmethod
    def select(self, hosts: Sequence[HostState], spec: RequestSpec) -> Decision:
        """Order the hosts that can take ``spec``; an empty list means no valid host."""


REGISTRY: dict[str, type[Scheduler]] = {}


def register(cls: type[Scheduler]) -> type[Scheduler]:
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"two schedulers named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Scheduler]]:
    """Import every module of this package so each registers its schedulers."""
    import harness.scheduling as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "base":
            importlib.import_module(f"harness.scheduling.{mod.name}")
    return REGISTRY


def make_scheduler(name: str, *, seed: int, options: Mapping[str, Any] | None = None) -> Scheduler:
    registry = load_all()
    if name not in registry:
        raise ValueError(f"unknown scheduler {name!r}: choose one of {', '.join(sorted(registry))}")
    return registry[name](rng=random.Random(seed), **dict(options or {}))
