"""filter_scheduler: Nova's scheduler (``nova/scheduler/manager.py``, ``_get_sorted_hosts``).

1. Placement returns the hosts with room for the flavor (allocation ratios, ``max_unit``), in the
   requested availability zone, enabled, at most ``max_placement_results`` (default 1000).
2. The ``enabled_filters`` run in order; the hosts left after each are counted.
3. Every weigher in ``weighers`` weighs the hosts left (see :mod:`harness.scheduling.weighers`:
   min-max normalisation, multiplier, sum); they are sorted by weight, highest first (ties keep
   host order, as Python's stable sort does in Nova).
4. With ``shuffle_best_same_weighed_hosts`` the hosts tied for the best weight are shuffled.
5. The chosen host is drawn at random from the best ``host_subset_size``; the rest, in order, are
   the alternates (``[scheduler] max_attempts - 1`` of them, set by the caller).

Defaults as in current Nova (``nova/conf/scheduler.py``): ``enabled_filters`` = ComputeFilter,
ImagePropertiesFilter, ServerGroupAntiAffinityFilter, ServerGroupAffinityFilter (Nova's default
minus ComputeCapabilitiesFilter, which needs flavor extra specs the harness does not model;
AvailabilityZoneFilter, RamFilter, CoreFilter and DiskFilter can be added, they repeat what
placement did), ``weight_classes`` = all weighers, ``host_subset_size = 1``,
``shuffle_best_same_weighed_hosts = False``, and each weigher's multiplier as documented on it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.scheduling.base import Decision, RequestSpec, register
from harness.scheduling.base import Scheduler
from harness.scheduling.filters import known_filters, make_filters, run_filters
from harness.scheduling.hosts import HostTable
from harness.scheduling.options import Option, as_bool, as_float, as_int, as_names
from harness.scheduling.placement import STAGE, allocation_candidates
from harness.scheduling.strategies import HARD_FILTERS, make_decision
from harness.scheduling.weighers import WEIGHERS, known_weighers, load_weighers, weigh

load_weighers()


def _options() -> dict[str, Option]:
    opts = {
        "enabled_filters": Option(list(HARD_FILTERS), "filters, in order (comma-separated)",
                                  as_names(known_filters)),
        "weighers": Option(sorted(WEIGHERS), "weighers to apply (comma-separated; Nova's "
                           "weight_classes, default all)", as_names(known_weighers)),
        "host_subset_size": Option(1, "choose at random among the best N hosts", as_int(minimum=1)),
        "shuffle_best_same_weighed_hosts": Option(False, "shuffle the hosts tied for the best "
                                                  "weight", as_bool),
        "max_placement_results": Option(1000, "most hosts placement returns ([scheduler] "
                                        "max_placement_results)", as_int(minimum=1)),
    }
    for cls in sorted(WEIGHERS.values(), key=lambda c: c.option):
        opts[cls.option] = Option(cls.default_multiplier, f"{cls.name}: {cls.help}", as_float)
    return opts


@register
class FilterScheduler(Scheduler):
    name = "filter_scheduler"
    summary = "Nova's filter scheduler: placement, filters, weighers, host_subset_size"
    options: ClassVar[dict[str, Option]] = _options()

    def __init__(self, *, rng: Any, **options: Any) -> None:
        super().__init__(rng=rng, **options)
        self.filters = make_filters(self.opts["enabled_filters"])
        self.weighers = [(WEIGHERS[n](), float(self.opts[WEIGHERS[n].option]))
                         for n in self.opts["weighers"]]
        self.uses_image_cache = any(w.name == "ImageCacheWeigher" and w.multiplier(m) != 0
                                    for w, m in self.weighers)

    def decide(self, hosts: HostTable, spec: RequestSpec) -> Decision:
        keep = allocation_candidates(hosts, spec, limit=self.opts["max_placement_results"])
        counts = [(STAGE, int(np.count_nonzero(keep)))]
        keep, more = run_filters(hosts, spec, keep, self.filters)
        counts += more
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            return Decision(candidates=[], considered=len(hosts), filter_counts=counts)
        weights = weigh(hosts, idx, spec, self.weighers)
        by = np.argsort(-weights, kind="stable")
        order, weights = idx[by], weights[by]
        if self.opts["shuffle_best_same_weighed_hosts"]:
            best = int(np.count_nonzero(weights == weights[0]))
            if best > 1:
                perm = list(range(best))
                self.rng.shuffle(perm)
                order[:best] = order[:best][perm]
        subset = min(self.opts["host_subset_size"], len(order))
        if subset > 1:
            pick = self.rng.randrange(subset)
            if pick:
                rest = np.delete(np.arange(len(order)), pick)
                by = np.concatenate([[pick], rest])
                order, weights = order[by], weights[by]
        return make_decision(hosts, spec, order, counts, weights)
