"""Many host states as columns: the scheduler's view of the cloud, cheap to decide over.

Nova keeps one ``HostState`` object per host and calls every filter and weigher once per host. That
is a Python loop per host per plugin; over 1,000 hosts on the event loop it is milliseconds per
request. Here the same state is a :class:`HostTable` of numpy arrays (one per ``compute_nodes``
column), filters return boolean masks and weighers return arrays, so a decision is a few dozen
vectorised operations whatever the number of hosts. A :class:`HostState` is built only for the
few candidates a decision returns.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Collection, Iterable, Iterator, Mapping, Sequence, overload

import numpy as np

from harness.scheduling.base import HostState

INT_COLUMNS = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
               "running_vms", "failed_builds", "generation")
FLOAT_COLUMNS = ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio")
TEXT_COLUMNS = ("availability_zone", "arch")
_DEFAULTS = {f.name: f.default for f in HostState.__dataclass_fields__.values()}  # type: ignore[attr-defined]


class HostTable(Sequence[HostState]):
    """Every host's state as arrays; ``table[i]`` is host ``i`` as a :class:`HostState`.

    ``images`` maps an image id to the hosts whose cache holds it (only the images a request
    needs have to be there: the scheduler reads the requested image's row set per request).
    """

    names: list[str]
    vcpus: np.ndarray
    memory_mb: np.ndarray
    local_gb: np.ndarray
    vcpus_used: np.ndarray
    memory_mb_used: np.ndarray
    local_gb_used: np.ndarray
    running_vms: np.ndarray
    failed_builds: np.ndarray
    generation: np.ndarray
    cpu_allocation_ratio: np.ndarray
    ram_allocation_ratio: np.ndarray
    disk_allocation_ratio: np.ndarray
    availability_zone: np.ndarray
    arch: np.ndarray
    disabled: np.ndarray

    def __init__(self, names: Sequence[str], columns: Mapping[str, np.ndarray],
                 *, images: Mapping[str, Collection[str]] | None = None) -> None:
        self.names = list(names)
        n = len(self.names)
        for key in (*INT_COLUMNS, *FLOAT_COLUMNS, *TEXT_COLUMNS, "disabled"):
            col = columns[key]
            if len(col) != n:
                raise ValueError(f"column {key} has {len(col)} values for {n} hosts")
            setattr(self, key, col)
        self.images: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in (images or {}).items()}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]],
                  *, images: Mapping[str, Collection[str]] | None = None) -> "HostTable":
        """From ``compute_nodes`` rows (mappings), as the scheduler reads them."""
        n = len(rows)
        cols: dict[str, np.ndarray] = {}
        for key in INT_COLUMNS:
            cols[key] = np.fromiter((r[key] for r in rows), dtype=np.int64, count=n)
        for key in FLOAT_COLUMNS:
            cols[key] = np.fromiter((r[key] for r in rows), dtype=np.float64, count=n)
        for key in TEXT_COLUMNS:
            cols[key] = np.array([r[key] for r in rows], dtype=object)
        cols["disabled"] = np.fromiter((bool(r["disabled"]) for r in rows), dtype=bool, count=n)
        return cls([r["host"] for r in rows], cols, images=images)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[Any]],
                     *, images: Mapping[str, Collection[str]] | None = None) -> "HostTable":
        """From ``compute_nodes`` read as columns (the cheapest form; see
        :func:`harness.db.providers.node_columns`)."""
        cols: dict[str, np.ndarray] = {}
        for key in INT_COLUMNS:
            cols[key] = np.asarray(columns[key], dtype=np.int64)
        for key in FLOAT_COLUMNS:
            cols[key] = np.asarray(columns[key], dtype=np.float64)
        for key in TEXT_COLUMNS:
            cols[key] = np.array(columns[key], dtype=object)
        cols["disabled"] = np.asarray(columns["disabled"], dtype=bool)
        return cls(list(columns["host"]), cols, images=images)

    @classmethod
    def from_states(cls, states: Iterable[HostState]) -> "HostTable":
        """From :class:`HostState` objects (tests, and callers that have objects already)."""
        states = list(states)
        rows = [{k: getattr(s, k) for k in _DEFAULTS} for s in states]
        images: dict[str, set[str]] = {}
        for s in states:
            for img in s.cached_images:
                images.setdefault(img, set()).add(s.host)
        return cls.from_rows(rows, images=images)

    # -- Sequence[HostState] ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, i: int) -> HostState: ...
    @overload
    def __getitem__(self, i: slice) -> list[HostState]: ...

    def __getitem__(self, i: int | slice) -> HostState | list[HostState]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        name = self.names[i]
        return HostState(
            host=name,
            **{k: int(getattr(self, k)[i]) for k in INT_COLUMNS},
            **{k: float(getattr(self, k)[i]) for k in FLOAT_COLUMNS},
            **{k: str(getattr(self, k)[i]) for k in TEXT_COLUMNS},
            disabled=bool(self.disabled[i]),
            cached_images=frozenset(img for img, hosts in self.images.items() if name in hosts),
        )

    def __iter__(self) -> Iterator[HostState]:
        return (self[i] for i in range(len(self)))

    def states(self, idx: Iterable[int]) -> list[HostState]:
        return [self[int(i)] for i in idx]

    # -- derived columns (computed once per table) --------------------------------------------
    @cached_property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @cached_property
    def free_vcpus(self) -> np.ndarray:
        """Placement's free VCPU: total * cpu_allocation_ratio - used."""
        return self.vcpus * self.cpu_allocation_ratio - self.vcpus_used

    @cached_property
    def free_ram_mb(self) -> np.ndarray:
        """Placement's free MEMORY_MB: total * ram_allocation_ratio - used."""
        return self.memory_mb * self.ram_allocation_ratio - self.memory_mb_used

    @cached_property
    def free_disk_gb(self) -> np.ndarray:
        """Placement's free DISK_GB: total * disk_allocation_ratio - used."""
        return self.local_gb * self.disk_allocation_ratio - self.local_gb_used

    @cached_property
    def host_free_ram_mb(self) -> np.ndarray:
        """Nova ``HostState.free_ram_mb``: physical RAM minus used, no ratio (can be negative)."""
        return (self.memory_mb - self.memory_mb_used).astype(np.float64)

    @cached_property
    def host_free_disk_mb(self) -> np.ndarray:
        """Nova ``HostState.free_disk_mb``: (local_gb - local_gb_used) * 1024, no ratio."""
        return (self.local_gb - self.local_gb_used).astype(np.float64) * 1024

    def mask_of(self, hosts: Iterable[str]) -> np.ndarray:
        """A boolean mask that is True on the named hosts (names not in the table are ignored)."""
        mask = np.zeros(len(self), dtype=bool)
        idx = [i for i in (self.index.get(h) for h in hosts) if i is not None]
        if idx:
            mask[idx] = True
        return mask

    def has_image(self, image_id: str | None) -> np.ndarray:
        """True on the hosts whose image cache holds ``image_id``."""
        return self.mask_of(self.images.get(image_id, ()) if image_id else ())

    def counts_of(self, per_host: Mapping[str, int]) -> np.ndarray:
        """An integer column from a host -> count mapping (0 for hosts not named)."""
        out = np.zeros(len(self), dtype=np.int64)
        for host, n in per_host.items():
            i = self.index.get(host)
            if i is not None:
                out[i] = n
        return out
