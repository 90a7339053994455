"""Host filters in Nova's style: one small class per file, looked up by Nova's class name.

A filter answers, for every host at once, whether the host can take the request (a boolean mask;
``None`` when the filter has nothing to say about this request, as Nova's group filters pass every
host of a request without a group). :meth:`BaseHostFilter.host_passes` is the one-host form Nova's
own ``host_passes(host_state, spec_obj)`` has, for tests and for reading. Filters run in the
configured order and the hosts left after each are counted, as Nova logs "Filter X returned N
host(s)" (``nova/filters.py``, ``get_filtered_objects``), stopping at the first that leaves none.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from typing import ClassVar, Sequence

import numpy as np

from harness.scheduling.base import HostState, RequestSpec
from harness.scheduling.hosts import HostTable

FILTERS: dict[str, type["BaseHostFilter"]] = {}


class BaseHostFilter(abc.ABC):
    """Base of every filter; ``name`` is Nova's class name (what ``enabled_filters`` lists)."""

    name: ClassVar[str]

    @abc.abstractmethod
    def mask(self, hosts: HostTable, spec: RequestSpec) -> np.ndarray | None:
        """True for each host that passes; ``None`` means every host passes."""

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        m = self.mask(HostTable.from_states([host]), spec)
        return True if m is None else bool(m[0])


def register_filter(cls: type[BaseHostFilter]) -> type[BaseHostFilter]:
    FILTERS[cls.name] = cls
    return cls


def load_filters() -> dict[str, type]:
    """Import every module of this package, so each registers its class (adding one is a file)."""
    import harness.scheduling.filters as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
    return FILTERS


def known_filters() -> list[str]:
    return sorted(load_filters())


def make_filters(names: Sequence[str]) -> list[BaseHostFilter]:
    load_filters()
    return [FILTERS[n]() for n in names]


def run_filters(hosts: HostTable, spec: RequestSpec, keep: np.ndarray,
                filters: Sequence[BaseHostFilter]) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Apply ``filters`` in order to the hosts still in ``keep``; count the hosts left after each."""
    counts: list[tuple[str, int]] = []
    left = int(np.count_nonzero(keep))
    for f in filters:
        if left == 0:
            break
        m = f.mask(hosts, spec)
        if m is not None:
            keep = keep & m
            left = int(np.count_nonzero(keep))
        counts.append((f.name, left))
    return keep, counts
