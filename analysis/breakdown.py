"""Where the time goes, as tables: per phase (Rally style), per step, and in the tail.

Percentiles are exact, computed from every boot's or span's own duration (NumPy's linear
interpolation between order statistics), not from a load generator's rounded histogram buckets.
Latency statistics describe successful boots (as Rally's do); ``success_pct`` says how many boots
got through the phase without failing in it, and ``share_pct`` is the phase's part of the summed
boot time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.boots import PHASES, BootAnalysis
from harness.steps import CATALOGUE

QUANTILES = {"median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
STAT_COLUMNS = ["min", "median", "p90", "p95", "p99", "max", "mean", "count", "success_pct", "share_pct"]


def latency_stats(values: pd.DataFrame) -> pd.DataFrame:
    """min, median, p90, p95, p99, max, mean and count of every column (a row per column)."""
    if len(values) == 0:
        return pd.DataFrame(np.nan, index=values.columns, columns=STAT_COLUMNS[:8])
    q = values.quantile(list(QUANTILES.values())).T
    q.columns = list(QUANTILES)
    out = pd.concat(
        [
            values.min().rename("min"),
            q,
            values.max().rename("max"),
            values.mean().rename("mean"),
            values.count().rename("count"),
        ],
        axis=1,
    )
    return out[STAT_COLUMNS[:8]]


def phase_table(boots: pd.DataFrame, *, include_errors: bool = False) -> pd.DataFrame:
    """Rally-style table, a row per phase plus ``queue_wait`` and ``total``.

    Columns: min, median, p90, p95, p99, max, mean (ms), count (boots measured), success_pct (boots
    that did not fail in that phase; for ``total``, boots that reached ACTIVE), share_pct (the
    phase's share of the summed ``total_ms``; ``auth`` lies outside the boot window, see
    :mod:`analysis.boots`). ``include_errors`` also measures boots that ended in ERROR.
    """
    measured = boots if include_errors else boots[boots["outcome"] == "ACTIVE"]
    names = PHASES + ["other", "queue_wait", "total"]
    columns = [f"{p}_ms" for p in names]
    stats = latency_stats(measured[columns].astype(float))
    stats.index = names
    n = len(boots)
    failed = boots["failed_phase"].value_counts() if "failed_phase" in boots else pd.Series(dtype=int)
    success = pd.Series({p: 100.0 * (n - int(failed.get(p, 0))) / n if n else np.nan for p in names})
    success["total"] = 100.0 * (boots["outcome"] == "ACTIVE").mean() if n else np.nan
    total = measured["total_ms"].sum()
    share = pd.Series({p: 100.0 * measured[f"{p}_ms"].sum() / total if total else np.nan for p in names})
    stats["success_pct"], stats["share_pct"] = success, share
    stats["count"] = stats["count"].astype(int)
    stats.index.name = "phase"
    return stats


def step_table(spans: pd.DataFrame, exclusive_ms: np.ndarray | None = None) -> pd.DataFrame:
    """A row per boot step: span duration percentiles, the mean exclusive time, error count.

    ``exclusive_ms`` (per span, aligned with ``spans``) comes from :meth:`Tree.exclusive_ms`;
    without it the column is left out.
    """
    numbered = spans["step"].notna().to_numpy()
    frame = pd.DataFrame(
        {
            "step": spans["step"].to_numpy()[numbered].astype(np.int64),
            "duration_ms": spans["duration_ms"].to_numpy()[numbered],
            "error": (spans["status_code"].astype(object) == "ERROR").to_numpy()[numbered],
        }
    )
    if exclusive_ms is not None:
        frame["exclusive_ms"] = np.asarray(exclusive_ms)[numbered]
    groups = frame.groupby("step")
    dur = groups["duration_ms"]
    out = pd.DataFrame(
        {
            "count": dur.count(),
            "min": dur.min(),
            **{name: dur.quantile(q) for name, q in QUANTILES.items()},
            "max": dur.max(),
            "mean": dur.mean(),
        }
    )
    if exclusive_ms is not None:
        out["exclusive_mean"] = groups["exclusive_ms"].mean()
    out["errors"] = groups["error"].sum().astype(int)
    info = {int(s): CATALOGUE[s] for s in CATALOGUE}
    out.insert(0, "name", [info[int(s)].span_name for s in out.index])
    out.insert(1, "service", [info[int(s)].service for s in out.index])
    out.insert(2, "phase", [info[int(s)].phase.value for s in out.index])
    out.index.name = "step"
    return out


def tail_table(analysis: BootAnalysis, *, tail: float = 0.01) -> pd.DataFrame:
    """What the slowest boots spend their time on, step by step, against a typical boot.

    The slowest ``tail`` fraction of successful boots (at least one) is compared with all successful
    boots: mean critical-path milliseconds per step in each group, the excess, and each step's
    share of the excess. Sorted by excess: the first rows are the steps that make the tail.
    """
    table = analysis.table
    ok = (table["outcome"] == "ACTIVE").to_numpy()
    per_step = analysis.critical_step_ms()[ok]
    totals = table["total_ms"][ok]
    if len(totals) == 0:
        return pd.DataFrame(
            columns=["name", "phase", "tail_mean_ms", "all_mean_ms", "excess_ms", "excess_pct"]
        )
    k = max(1, int(np.ceil(tail * len(totals))))
    slow = totals.nlargest(k).index
    out = pd.DataFrame({"tail_mean_ms": per_step.loc[slow].mean(), "all_mean_ms": per_step.mean()})
    out["excess_ms"] = out["tail_mean_ms"] - out["all_mean_ms"]
    positive = out["excess_ms"].clip(lower=0).sum()
    out["excess_pct"] = 100.0 * out["excess_ms"].clip(lower=0) / positive if positive else 0.0
    names = {int(s): (CATALOGUE[s].span_name, CATALOGUE[s].phase.value) for s in CATALOGUE}
    out.insert(
        0, "name", [names.get(s, ("(no step)", None))[0] if s != "none" else "(no step)" for s in out.index]
    )
    out.insert(1, "phase", [names.get(s, (None, None))[1] if s != "none" else None for s in out.index])
    out.index.name = "step"
    out.attrs["tail_boots"] = k
    out.attrs["tail_threshold_ms"] = float(totals.loc[slow].min())
    return out.sort_values("excess_ms", ascending=False)
