"""Host weighers in Nova's style, and Nova's normalisation (``nova/weights.py``).

Each weigher gives a raw value per host (``_weigh_object`` in Nova); the framework, not the
weigher, clamps it to the weigher's ``minval``/``maxval``, normalises the values over the hosts to
[0, 1] (min-max, with ``minval``/``maxval`` standing in for the observed extremes when set; all
equal -> all 0), multiplies by the weigher's multiplier and adds the products. One host alone
weighs 0. The host with the highest total wins. Multipliers are options named as in Nova's
``[filter_scheduler]`` section, with Nova's defaults (``nova/conf/scheduler.py``).
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from typing import ClassVar, Sequence

import numpy as np

from harness.scheduling.base import RequestSpec
from harness.scheduling.hosts import HostTable

WEIGHERS: dict[str, type["BaseHostWeigher"]] = {}


class BaseHostWeigher(abc.ABC):
    """``raw`` gives the weigher's value for the hosts ``idx``; higher weights win."""

    name: ClassVar[str]
    option: ClassVar[str]
    default_multiplier: ClassVar[float]
    help: ClassVar[str] = ""
    minval: ClassVar[float | None] = None
    maxval: ClassVar[float | None] = None

    def multiplier(self, configured: float) -> float:
        """The multiplier applied, from the configured option (BuildFailureWeigher negates it)."""
        return configured

    @abc.abstractmethod
    def raw(self, hosts: HostTable, idx: np.ndarray, spec: RequestSpec) -> np.ndarray:
        """One raw value per host in ``idx``."""


def register_weigher(cls: type[BaseHostWeigher]) -> type[BaseHostWeigher]:
    WEIGHERS[cls.name] = cls
    return cls


def load_weighers() -> dict[str, type]:
    """Import every module of this package, so each registers its class (adding one is a file)."""
    import harness.scheduling.weighers as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
    return WEIGHERS


def known_weighers() -> list[str]:
    return sorted(load_weighers())


def normalize(values: np.ndarray, minval: float | None = None, maxval: float | None = None) -> np.ndarray:
    """``nova.weights.normalize``: to [0, 1] between ``minval`` and ``maxval`` (default: the
    values' own min and max); all equal (``minval == maxval``) -> all 0."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    hi = float(values.max()) if maxval is None else float(maxval)
    lo = float(values.min()) if minval is None else float(minval)
    if lo == hi:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def weigh(hosts: HostTable, idx: np.ndarray, spec: RequestSpec,
          weighers: Sequence[tuple[BaseHostWeigher, float]]) -> np.ndarray:
    """Total weight of each host in ``idx``: sum of multiplier * normalised raw value."""
    total = np.zeros(len(idx), dtype=np.float64)
    if len(idx) <= 1:
        return total
    for weigher, configured in weighers:
        mult = weigher.multiplier(configured)
        if mult == 0:
            continue
        raw = np.asarray(weigher.raw(hosts, idx, spec), dtype=np.float64)
        if weigher.minval is not None:
            raw = np.maximum(raw, weigher.minval)
        if weigher.maxval is not None:
            raw = np.minimum(raw, weigher.maxval)
        total += mult * normalize(raw, weigher.minval, weigher.maxval)
    return total
