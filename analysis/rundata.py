"""A run directory as the report reads it: spans, boots, settings, labels and host state.

A run directory is what the embedded cloud or ``harness bench`` leaves: ``spans.jsonl``,
``settings.json`` (the run's full settings), optionally ``summary.json`` (a ``harness bench`` cell:
its scheduler and load labels) and ``nova.db`` (the hosts' state, :mod:`analysis.capacity`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from analysis.boots import BootAnalysis, analyse_boots
from analysis.capacity import Capacity, read_capacity
from analysis.load import load_spans, spans_path

#: Labels a ``harness bench`` cell summary carries that the comparison groups by.
CELL_LABELS = ("cell", "scheduler", "load", "users", "rate", "offered", "profile")


@dataclass
class Run:
    """One run, loaded and analysed."""

    path: Path
    name: str
    settings: dict[str, Any]
    spans: pd.DataFrame
    analysis: BootAnalysis
    capacity: Capacity | None = None
    cell: dict[str, Any] = field(default_factory=dict)

    @property
    def boots(self) -> pd.DataFrame:
        """The boot table with a ``run`` column (and the run's scheduler where spans lack it)."""
        table = self.analysis.table.copy()
        table.insert(0, "run", self.name)
        if table["scheduler"].isna().all() and self.labels().get("scheduler"):
            table["scheduler"] = self.labels()["scheduler"]
        return table

    def labels(self) -> dict[str, Any]:
        """What identifies the run in a comparison: scheduler, load, profile, hosts, seed."""
        s = self.settings.get("settings", {})
        out: dict[str, Any] = {
            "scheduler": s.get("scheduler"),
            "profile": s.get("profile"),
            "seed": s.get("seed"),
            "hosts": s.get("hosts") or sum(g.get("count", 0) for g in s.get("host_groups", [])) or None,
            "run_id": self.settings.get("run_id"),
        }
        out.update({k: self.cell[k] for k in CELL_LABELS if k in self.cell and self.cell[k] is not None})
        return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_run(path: str | Path, *, name: str | None = None, cache: bool = True) -> Run:
    """Load a run directory (or a spans file; its directory holds the rest)."""
    spans_file = spans_path(path)
    run_dir = spans_file.parent
    spans = load_spans(spans_file, cache=cache)
    cell = _read_json(run_dir / "summary.json")
    return Run(
        path=run_dir,
        name=name or cell.get("cell") or run_dir.name,
        settings=_read_json(run_dir / "settings.json"),
        spans=spans,
        analysis=analyse_boots(spans),
        capacity=read_capacity(run_dir),
        cell={k: v for k, v in cell.items() if k in CELL_LABELS},
    )


def load_runs(paths: Sequence[str | Path], *, cache: bool = True) -> list[Run]:
    """Several runs, each with a unique name (the directory, prefixed by its parent if needed)."""
    dirs = [spans_path(p).parent for p in paths]
    names = [d.name for d in dirs]
    if len(set(names)) < len(names):
        names = [f"{d.parent.name}/{d.name}" for d in dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in dirs]
    return [load_run(d, name=n, cache=cache) for d, n in zip(dirs, names)]
