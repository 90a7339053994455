"""How full the hosts are: balance, fragmentation and utilisation over time, from the run's Nova DB.

The embedded cloud keeps Nova's DB as SQLite in the run directory (``nova.db``); it holds the state
at the end of the run: each host's capacity and use (``compute_nodes``), the flavors, and every
instance with its host and when it was launched or deleted. Spans carry no flavor, so balance and
fragmentation are read from there (read-only). A run against another database has no ``nova.db``;
the functions then return None and the report leaves those figures out.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DB_FILE = "nova.db"


@dataclass(frozen=True)
class Capacity:
    """The hosts at the end of a run and the instances placed on them."""

    hosts: pd.DataFrame  # host, vcpus, memory_mb, local_gb, *_used, allocation ratios
    flavors: pd.DataFrame  # id, name, vcpus, memory_mb, root_gb
    instances: pd.DataFrame  # uuid, host, vcpus, memory_mb, vm_state, launched_at, deleted, updated_at


def read_capacity(run_dir: str | Path) -> Capacity | None:
    """The run's hosts, flavors and instances, or None without a readable ``nova.db``."""
    path = Path(run_dir) / DB_FILE
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            hosts = pd.read_sql_query("SELECT * FROM compute_nodes", con)
            flavors = pd.read_sql_query("SELECT id, name, vcpus, memory_mb, root_gb FROM flavors", con)
            instances = pd.read_sql_query(
                "SELECT uuid, host, vcpus, memory_mb, root_gb, vm_state, launched_at, deleted, updated_at "
                "FROM instances",
                con,
            )
    except (sqlite3.Error, pd.errors.DatabaseError):
        return None
    return Capacity(hosts=hosts, flavors=flavors, instances=instances)


def _cv(values: pd.Series) -> float:
    """Coefficient of variation (0: perfectly balanced)."""
    mean = values.mean()
    return float(values.std(ddof=0) / mean) if mean else 0.0


def balance(cap: Capacity) -> dict[str, float]:
    """Host balance at the end of the run and fragmentation for the largest flavor.

    ``ram_cv``/``vcpu_cv``: coefficient of variation of used RAM / vCPUs across enabled hosts.
    ``largest_fit``: how many more instances of the largest flavor fit, host by host;
    ``largest_fit_pooled``: how many would fit if the free capacity were one host;
    ``fragmentation``: the share of that pooled room lost to fragmentation (0 when none is).
    """
    h = cap.hosts[~cap.hosts["disabled"].astype(bool)] if "disabled" in cap.hosts else cap.hosts
    free_vcpu = h["vcpus"] * h["cpu_allocation_ratio"] - h["vcpus_used"]
    free_ram = h["memory_mb"] * h["ram_allocation_ratio"] - h["memory_mb_used"]
    free_disk = h["local_gb"] * h["disk_allocation_ratio"] - h["local_gb_used"]
    big = cap.flavors.sort_values(["memory_mb", "vcpus"]).iloc[-1]
    limits = [free_vcpu.to_numpy() / max(big["vcpus"], 1), free_ram.to_numpy() / max(big["memory_mb"], 1)]
    if big["root_gb"]:
        limits.append(free_disk.to_numpy() / big["root_gb"])
    per_host = np.floor(np.clip(np.minimum.reduce(limits), 0, None))
    pooled = np.floor(
        min(
            free_vcpu.clip(lower=0).sum() / max(big["vcpus"], 1),
            free_ram.clip(lower=0).sum() / max(big["memory_mb"], 1),
            free_disk.clip(lower=0).sum() / max(big["root_gb"], 1) if big["root_gb"] else np.inf,
        )
    )
    fit = float(per_host.sum())
    return {
        "hosts": int(len(h)),
        "ram_cv": _cv(h["memory_mb_used"]),
        "vcpu_cv": _cv(h["vcpus_used"]),
        "ram_used_pct": float(
            100 * h["memory_mb_used"].sum() / (h["memory_mb"] * h["ram_allocation_ratio"]).sum()
        ),
        "largest_flavor": str(big["name"]),
        "largest_fit": fit,
        "largest_fit_pooled": float(pooled),
        "fragmentation": float(1 - fit / pooled) if pooled else 0.0,
    }


def usage_over_time(cap: Capacity, *, t0: float | None = None, buckets: int = 60) -> pd.DataFrame:
    """RAM and vCPUs in use per host over the run (instances counted from launch to deletion).

    Returns host, time_s (since ``t0``, default the first launch), ram_pct, vcpu_pct.
    """
    inst = cap.instances.dropna(subset=["host", "launched_at"])
    if inst.empty:
        return pd.DataFrame(columns=["host", "time_s", "ram_pct", "vcpu_pct"])
    t0 = float(inst["launched_at"].min()) if t0 is None else t0
    gone = np.where(inst["deleted"].astype(bool), inst["updated_at"], np.inf)
    t_end = float(max(inst["launched_at"].max(), np.nanmax(np.where(np.isfinite(gone), gone, -np.inf))))
    times = np.linspace(t0, max(t_end, t0 + 1e-3), buckets)
    hosts = cap.hosts.set_index("host")
    launched, host = inst["launched_at"].to_numpy(), inst["host"].to_numpy()
    live = (launched[None, :] <= times[:, None]) & (gone[None, :] > times[:, None])  # time x instance
    rows = []
    for name in hosts.index:
        on = host == name
        ram = live[:, on] @ inst["memory_mb"].to_numpy()[on]
        cpu = live[:, on] @ inst["vcpus"].to_numpy()[on]
        cap_ram = hosts.at[name, "memory_mb"] * hosts.at[name, "ram_allocation_ratio"]
        cap_cpu = hosts.at[name, "vcpus"] * hosts.at[name, "cpu_allocation_ratio"]
        rows.append(
            pd.DataFrame(
                {
                    "host": name,
                    "time_s": np.round(times - t0, 3),
                    "ram_pct": 100 * ram / cap_ram,
                    "vcpu_pct": 100 * cpu / cap_cpu,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)
