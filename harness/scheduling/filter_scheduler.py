"""Nova's filter scheduler: filters drop hosts, weighers order the rest.

Semantics follow Nova (``nova/scheduler/filter_scheduler.py``, ``nova/weights.py``):

* each filter keeps the hosts that pass it; the count left after each is recorded, as Nova logs it;
* each weigher's raw values are normalised to [0, 1] over the hosts (min-max; all equal -> 0), then
  multiplied by the weigher's multiplier and summed;
* the chosen host is drawn at random from the best ``host_subset_size`` (default 1);
  the rest of the ordered list are the alternates.

Defaults as in current Nova's ``[filter_scheduler]``: ``ram_weight_multiplier = 1.0`` (positive
spreads, negative packs), ``host_subset_size = 1``.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from harness.scheduling.base import Decision, HostState, RequestSpec, Scheduler, register

HostFilter = Callable[[HostState, RequestSpec], bool]


def compute_filter(h: HostState, spec: RequestSpec) -> bool:
    """ComputeFilter: the host's compute service is enabled."""
    return not h.disabled


def availability_zone_filter(h: HostState, spec: RequestSpec) -> bool:
    """AvailabilityZoneFilter: the host is in the requested zone (any zone when none asked)."""
    return spec.availability_zone is None or h.availability_zone == spec.availability_zone


def ram_filter(h: HostState, spec: RequestSpec) -> bool:
    """Placement's MEMORY_MB inventory: (total * ram_allocation_ratio) - used >= requested."""
    return spec.memory_mb <= h.free_ram_mb


def cpu_filter(h: HostState, spec: RequestSpec) -> bool:
    """Placement's VCPU inventory with cpu_allocation_ratio."""
    return spec.vcpus <= h.free_vcpus


def disk_filter(h: HostState, spec: RequestSpec) -> bool:
    """Placement's DISK_GB inventory with disk_allocation_ratio."""
    return spec.disk_gb <= h.free_disk_gb


def image_properties_filter(h: HostState, spec: RequestSpec) -> bool:
    """ImagePropertiesFilter on ``hw_architecture``: an image that names one needs that arch."""
    return spec.image_arch is None or h.arch == spec.image_arch


FILTERS: dict[str, HostFilter] = {
    "ComputeFilter": compute_filter,
    "AvailabilityZoneFilter": availability_zone_filter,
    "RamFilter": ram_filter,
    "CoreFilter": cpu_filter,
    "DiskFilter": disk_filter,
    "ImagePropertiesFilter": image_properties_filter,
}
DEFAULT_FILTERS = list(FILTERS)


def normalize(values: Sequence[float]) -> list[float]:
    """Nova's ``nova.weights.normalize``: min-max to [0, 1]; all equal -> all 0."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if lo == hi:
        return [0.0] * len(values)
    span = hi - lo
    return [(v - lo) / span for v in values]


WEIGHERS: dict[str, Callable[[HostState], float]] = {
    "RAMWeigher": lambda h: h.free_ram_mb,
}


@register
class FilterScheduler(Scheduler):
    name: ClassVar[str] = "filter_scheduler"
    summary: ClassVar[str] = "Nova's filters + weighers (spreads on free RAM by default)"
    options: ClassVar[dict[str, str]] = {
        "enabled_filters": f"filters in order (default {','.join(DEFAULT_FILTERS)})",
        "ram_weight_multiplier": "RAMWeigher multiplier (default 1.0: spread; negative: pack)",
        "host_subset_size": "choose at random among the best N hosts (default 1)",
    }

    def __init__(self, *, rng: Any, **options: Any) -> None:
        super().__init__(rng=rng, **options)
        names = options.get("enabled_filters", DEFAULT_FILTERS)
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        bad = [n for n in names if n not in FILTERS]
        if bad:
            raise ValueError(f"unknown filter(s) {', '.join(bad)}: known {', '.join(FILTERS)}")
        self.filters = [(n, FILTERS[n]) for n in names]
        self.multipliers = {"RAMWeigher": float(options.get("ram_weight_multiplier", 1.0))}
        self.host_subset_size = max(1, int(options.get("host_subset_size", 1)))

    def select(self, hosts: Sequence[HostState], spec: RequestSpec) -> Decision:
        remaining = [h for h in hosts if h.host not in spec.ignore_hosts]
        counts: list[tuple[str, int]] = []
        for name, keep in self.filters:
            remaining = [h for h in remaining if keep(h, spec)]
            counts.append((name, len(remaining)))
            if not remaining:
                break
        totals = [0.0] * len(remaining)
        for wname, raw in WEIGHERS.items():
            mult = self.multipliers.get(wname, 1.0)
            if mult == 0:
                continue
            for i, v in enumerate(normalize([raw(h) for h in remaining])):
                totals[i] += mult * v
        order = sorted(range(len(remaining)), key=lambda i: totals[i], reverse=True)
        ranked = [remaining[i] for i in order]
        if len(ranked) > 1 and self.host_subset_size > 1:
            k = min(self.host_subset_size, len(ranked))
            pick = self.rng.randrange(k)
            ranked.insert(0, ranked.pop(pick))
        weights = {remaining[i].host: totals[i] for i in order}
        return Decision(
            candidates=ranked[: 1 + spec.num_alternates],
            considered=len(hosts),
            weights=weights,
            filter_counts=counts,
        )
