"""The scheduler interface: host states + a request spec -> ordered candidate hosts, with reasons.

A scheduler is a small class registered by name (``@register``); every module under this package
(``strategies/``, ``filters/``, ``weighers/``) is imported by :func:`load_all`, so adding an
algorithm is adding a file. Schedulers are pure: they read host snapshots and never touch the DB;
the claim that makes a choice real is atomic in :meth:`harness.db.NovaDB.claim`, which is why a
scheduler returns *several* candidates (the alternates Nova tries after a lost race or a failed
build; Nova returns ``[scheduler] max_attempts - 1`` of them, ``nova/scheduler/manager.py``).

``select`` takes any sequence of :class:`HostState`; the service passes a
:class:`harness.scheduling.hosts.HostTable` (columns in numpy arrays) so that deciding over a
thousand hosts costs microseconds per filter rather than a Python loop per host.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from harness.scheduling.options import Option

if TYPE_CHECKING:
    from harness.scheduling.hosts import HostTable


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
    #: Images in the host's image cache (reported by nova-compute through nova-conductor).
    cached_images: frozenset[str] = frozenset()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "HostState":
        return cls(**{k: row[k] for k in cls.__slots__ if k in row})  # type: ignore[attr-defined]

    # Capacity as placement computes it: (total - reserved) * allocation_ratio - used.
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
        """Whether ``spec`` (anything with vcpus, memory_mb and disk_gb) fits, as placement decides.

        Placement's check per resource class: ``used + requested <= (total - reserved) *
        allocation_ratio`` and ``requested <= max_unit``, where nova-compute reports ``max_unit =
        total`` (one instance never gets more than the physical host even when overcommitted).
        A resource requested as 0 is not part of the request (a boot from volume asks no DISK_GB).
        """
        for need, free, total in ((spec.vcpus, self.free_vcpus, self.vcpus),
                                  (spec.memory_mb, self.free_ram_mb, self.memory_mb),
                                  (spec.disk_gb, self.free_disk_gb, self.local_gb)):
            if need > 0 and (need > free or need > total):
                return False
        return True


@dataclass(frozen=True, slots=True)
class ServerGroup:
    """The request's server group (Nova's ``RequestSpec.instance_group``), as the filters read it.

    ``member_hosts`` counts, per host, the group's other members on it: Nova's anti-affinity filter
    compares that count with ``max_server_per_host`` (rules, default 1); the affinity filter wants
    one of those hosts (``instance_group.hosts``) when there is any.
    """

    uuid: str
    policy: str  # affinity | anti-affinity | soft-affinity | soft-anti-affinity
    member_hosts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    max_server_per_host: int = 1

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(h for h, n in self.member_hosts.items() if n > 0)


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
    group: ServerGroup | None = None


@dataclass(slots=True)
class Decision:
    """Ordered candidates (first is chosen), their weights and how many hosts each stage left.

    ``weights`` holds the candidates' weights (only algorithms that weigh fill it);
    ``filter_counts`` lists (stage, hosts left after it) in order, as Nova logs
    "Filter X returned N host(s)".
    """

    candidates: list[HostState]
    considered: int
    weights: dict[str, float] = field(default_factory=dict)
    filter_counts: list[tuple[str, int]] = field(default_factory=list)

    @property
    def chosen(self) -> HostState | None:
        return self.candidates[0] if self.candidates else None

    @property
    def passed(self) -> int:
        """Hosts left after the last stage (every host that could take the request)."""
        return self.filter_counts[-1][1] if self.filter_counts else len(self.candidates)


class Scheduler(abc.ABC):
    """Base of every algorithm: a name, a summary and typed options (see :class:`Option`)."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    #: whether decisions read which hosts cache the image (the service skips that read otherwise)
    uses_image_cache: bool = False

    def __init__(self, *, rng: random.Random, **options: Any) -> None:
        unknown = set(options) - set(self.options)
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ValueError(
                f"scheduler {self.name!r} has no option(s) {', '.join(sorted(unknown))} (known: {known})"
            )
        self.rng = rng
        self.opts: dict[str, Any] = {
            key: opt.parse(key, options[key]) if key in options else opt.default
            for key, opt in self.options.items()
        }

    def select(self, hosts: Sequence[HostState], spec: RequestSpec) -> Decision:
        """Order the hosts that can take ``spec``; an empty candidate list means no valid host."""
        from harness.scheduling.hosts import HostTable

        table = hosts if isinstance(hosts, HostTable) else HostTable.from_states(hosts)
        return self.decide(table, spec)

    @abc.abstractmethod
    def decide(self, hosts: "HostTable", spec: RequestSpec) -> Decision:
        """The algorithm itself, over the columns of every host."""


REGISTRY: dict[str, type[Scheduler]] = {}


def register(cls: type[Scheduler]) -> type[Scheduler]:
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"two schedulers named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Scheduler]]:
    """Import every module under this package so each registers its schedulers/filters/weighers."""
    import harness.scheduling as pkg

    for mod in pkgutil.walk_packages(pkg.__path__, prefix="harness.scheduling."):
        importlib.import_module(mod.name)
    return REGISTRY


def make_scheduler(name: str, *, seed: int, options: Mapping[str, Any] | None = None) -> Scheduler:
    registry = load_all()
    if name not in registry:
        raise ValueError(f"unknown scheduler {name!r}: choose one of {', '.join(sorted(registry))}")
    return registry[name](rng=random.Random(seed), **dict(options or {}))
