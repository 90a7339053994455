"""Which scheduler wins: a row per run (a scheduler at a load level) and significance tests.

Every number comes from the boot table (:func:`analysis.boots.boot_table`, with a ``run`` column
and the run's labels) and, where the run kept Nova's DB, the hosts' final state
(:mod:`analysis.capacity`). Percentile confidence intervals are bootstrapped (SciPy's
``bootstrap``, percentile method, seeded); differences between two runs are tested with the
Mann-Whitney U test on their ACTIVE boot times (no normality assumed).
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from analysis.boots import PHASES

#: The percentiles the comparison reports, with bootstrap intervals for these.
CI_PERCENTILES = (50, 95)
CONFIDENCE = 0.95
RESAMPLES = 2000


def bootstrap_ci(
    values: np.ndarray, q: float, *, seed: int = 0, confidence: float = CONFIDENCE, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """A ``confidence`` interval for the ``q``-th percentile of ``values`` (NaN with < 3 values)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 3 or np.all(values == values[0]):
        v = float(np.percentile(values, q)) if len(values) else np.nan
        return (v, v) if len(values) >= 3 else (np.nan, np.nan)
    res = stats.bootstrap(
        (values,),
        lambda x, axis: np.percentile(x, q, axis=axis),
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def run_summary(
    boots: pd.DataFrame,
    *,
    labels: Mapping[str, Mapping[str, Any]] | None = None,
    balance: Mapping[str, Mapping[str, float]] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A row per run: scheduler, load, boots, success and NoValidHost rates, retries, throughput,
    mean boots in flight, boot-time percentiles (with bootstrap intervals), per-phase p50/p95 and,
    when known, host balance (``ram_cv``, ``vcpu_cv``) and fragmentation.

    ``labels[run]`` adds columns (``scheduler``, ``offered`` ... from the run's settings or a
    ``harness bench`` cell); ``balance[run]`` comes from :func:`analysis.capacity.balance`.
    """
    rows = []
    for run, g in boots.groupby("run", sort=False, observed=True):
        ok = g[g["outcome"] == "ACTIVE"]
        lat = ok["total_ms"].to_numpy(dtype=float)
        window_s = (g["end_ns"].max() - g["start_ns"].min()) / 1e9 if len(g) else np.nan
        row: dict[str, Any] = {
            "run": run,
            "scheduler": g["scheduler"].dropna().iloc[0] if g["scheduler"].notna().any() else None,
            "boots": len(g),
            "active": len(ok),
            "success_pct": 100.0 * len(ok) / len(g) if len(g) else np.nan,
            "no_valid_host_pct": 100.0 * g["no_valid_host"].mean() if len(g) else np.nan,
            "reschedules_mean": float(g["reschedules"].mean()) if len(g) else np.nan,
            "throughput": len(ok) / window_s if window_s else np.nan,
            # Little's law: the mean number of boots in flight is boot-seconds over the window
            "mean_in_flight": g["total_ms"].sum() / 1e3 / window_s if window_s else np.nan,
        }
        for q in (50, 90, 95, 99):
            row[f"p{q}_ms"] = float(np.percentile(lat, q)) if len(lat) else np.nan
        for q in CI_PERCENTILES:
            row[f"p{q}_ci_low"], row[f"p{q}_ci_high"] = bootstrap_ci(lat, q, seed=seed)
        row["max_ms"] = float(lat.max()) if len(lat) else np.nan
        for p in PHASES:
            col = ok[f"{p}_ms"].to_numpy(dtype=float)
            row[f"{p}_p50_ms"] = float(np.percentile(col, 50)) if len(col) else np.nan
            row[f"{p}_p95_ms"] = float(np.percentile(col, 95)) if len(col) else np.nan
        row["queue_wait_p50_ms"] = float(ok["queue_wait_ms"].median()) if len(ok) else np.nan
        row.update({k: v for k, v in (labels or {}).get(run, {}).items() if v is not None})
        row.update((balance or {}).get(run, {}))
        rows.append(row)
    return pd.DataFrame(rows)


def significance(
    boots: pd.DataFrame, *, pairs: list[tuple[str, str]] | None = None, alpha: float = 0.05
) -> pd.DataFrame:
    """Mann-Whitney U (two-sided) between runs' ACTIVE boot times.

    ``pairs`` defaults to every pair of runs. Columns: a, b, n_a, n_b, median_a_ms, median_b_ms,
    u, p_value, significant (p < ``alpha``), faster (the run with the lower median when significant).
    """
    ok = boots[boots["outcome"] == "ACTIVE"]
    times = {
        run: g["total_ms"].to_numpy(dtype=float) for run, g in ok.groupby("run", sort=False, observed=True)
    }
    pairs = pairs if pairs is not None else list(itertools.combinations(times, 2))
    rows = []
    for a, b in pairs:
        x, y = times.get(a, np.array([])), times.get(b, np.array([]))
        if len(x) < 2 or len(y) < 2:
            u, p = np.nan, np.nan
        else:
            res = stats.mannwhitneyu(x, y, alternative="two-sided")
            u, p = float(res.statistic), float(res.pvalue)
        ma = float(np.median(x)) if len(x) else np.nan
        mb = float(np.median(y)) if len(y) else np.nan
        sig = bool(p < alpha) if p == p else False
        rows.append(
            {
                "a": a,
                "b": b,
                "n_a": len(x),
                "n_b": len(y),
                "median_a_ms": ma,
                "median_b_ms": mb,
                "u": u,
                "p_value": p,
                "significant": sig,
                "faster": (a if ma < mb else b) if sig else None,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "a",
            "b",
            "n_a",
            "n_b",
            "median_a_ms",
            "median_b_ms",
            "u",
            "p_value",
            "significant",
            "faster",
        ],
    )


def same_load_pairs(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """Pairs of runs at the same offered load (every pair when the load is not known)."""
    if "offered" not in summary or summary["offered"].isna().all():
        return list(itertools.combinations(summary["run"], 2))
    return [
        pair
        for _, g in summary.groupby("offered", dropna=False)
        for pair in itertools.combinations(g["run"], 2)
    ]
