"""The HTML report of one or more runs, with its tables as CSV.

``report.html`` is self-contained: plotly's JavaScript is inlined once, so it opens offline and can
be mailed or archived. It holds, per run and side by side: a headline table, a typical and the
slowest boot's waterfall with its critical path, phase bars, latency CDFs, phase spread, the load
profile (boots in flight), throughput and latency against load, host utilisation over time, the
Rally-style phase table, the per-step table, the tail analysis, the scheduler comparison with
significance tests, the slow boots (linked to Jaeger when its URL is given), data-quality counts
and every run's full settings (to reproduce it).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from analysis import plots
from analysis.breakdown import phase_table, step_table, tail_table
from analysis.capacity import balance, usage_over_time
from analysis.compare import run_summary, same_load_pairs, significance
from analysis.rundata import Run

#: Figure ids in the report, in order (each is a ``<div data-figure=...>``).
FIGURES = (
    "waterfall-typical",
    "waterfall-slowest",
    "phase-bars",
    "latency-cdf",
    "phase-box",
    "load-profile",
    "saturation",
    "host-heatmap",
)
HEADLINE = [
    "run",
    "scheduler",
    "boots",
    "active",
    "success_pct",
    "no_valid_host_pct",
    "throughput",
    "mean_in_flight",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "queue_wait_p50_ms",
]


@dataclass
class Report:
    html: Path
    tables: dict[str, Path]
    headline: pd.DataFrame
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _boot_trace(run: Run, row: int) -> pd.DataFrame:
    trace_id = run.analysis.table["trace_id"].iat[row]
    return run.spans[run.spans["trace_id"] == trace_id]


def _waterfall(run: Run, which: str) -> go.Figure | None:
    table = run.analysis.table
    ok = table.index[table["outcome"] == "ACTIVE"]
    if not len(ok):
        return None
    totals = table.loc[ok, "total_ms"]
    row = int(totals.idxmax() if which == "slowest" else (totals - totals.median()).abs().idxmin())
    spans = _boot_trace(run, row)
    path = run.analysis.critical_path(row)
    return plots.waterfall(
        spans,
        critical=path,
        title=(
            f"{which} boot of {run.name}: {table.at[row, 'total_ms']:.1f} ms, "
            f"trace {table.at[row, 'trace_id']}"
        ),
    )


def _fmt_table(df: pd.DataFrame, *, index: bool = True) -> str:
    return df.to_html(
        index=index, float_format=lambda v: f"{v:,.2f}", na_rep="-", border=0, classes="table", escape=True
    )


def _quality(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        a = run.spans.attrs
        t = run.analysis.table
        rows.append(
            {
                "run": run.name,
                "spans": len(run.spans),
                "lines": a.get("lines", 0),
                "malformed_lines": a.get("malformed_lines", 0),
                "malformed_spans": a.get("malformed_spans", 0),
                "duplicate_spans": a.get("duplicate_spans", 0),
                "incomplete_boots": int((t["outcome"] == "INCOMPLETE").sum()),
                "first_error": a.get("first_error") or "",
            }
        )
    return pd.DataFrame(rows)


def _slow_boots(boots: pd.DataFrame, jaeger_url: str | None, n: int) -> pd.DataFrame:
    slow = boots.sort_values("total_ms", ascending=False).head(n)
    cols = ["run", "trace_id", "outcome", "total_ms", "host", "error"] + [
        c for c in boots.columns if c.endswith("_ms") and c not in ("total_ms", "work_ms")
    ]
    slow = slow[cols].copy()
    if jaeger_url:
        base = jaeger_url.rstrip("/")
        slow["trace_id"] = [f'<a href="{html.escape(base)}/trace/{t}">{t}</a>' for t in slow["trace_id"]]
    return slow


def _usage(runs: list[Run]) -> pd.DataFrame:
    frames = []
    for run in runs:
        if run.capacity is not None:
            frames.append(usage_over_time(run.capacity).assign(run=run.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def build_report(
    runs: list[Run],
    out_dir: str | Path,
    *,
    jaeger_url: str | None = None,
    slow_boots: int = 10,
    tail: float = 0.01,
) -> Report:
    """Write ``report.html`` and the CSV tables into ``out_dir``; returns what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    boots = pd.concat([r.boots for r in runs], ignore_index=True)
    labels = {r.name: r.labels() for r in runs}
    bal = {r.name: balance(r.capacity) for r in runs if r.capacity is not None}
    summary = run_summary(boots, labels=labels, balance=bal)
    sig = significance(boots, pairs=same_load_pairs(summary))
    phases = pd.concat({r.name: phase_table(r.analysis.table) for r in runs}, names=["run", "phase"])
    steps = pd.concat(
        {r.name: step_table(r.spans, r.analysis.tree.exclusive_ms()) for r in runs}, names=["run", "step"]
    )
    tails = pd.concat({r.name: tail_table(r.analysis, tail=tail) for r in runs}, names=["run", "step"])
    headline = summary[[c for c in HEADLINE if c in summary]]
    notes: list[str] = []

    tables = {
        "boots": boots,
        "headline": headline,
        "compare": summary,
        "significance": sig,
        "phases": phases.reset_index(),
        "steps": steps.reset_index(),
        "tail": tails.reset_index(),
        "quality": _quality(runs),
    }
    paths = {}
    for name, df in tables.items():
        paths[name] = out / f"{name}.csv"
        df.to_csv(paths[name], index=False)

    figures: dict[str, go.Figure | None] = {
        "waterfall-typical": _waterfall(runs[0], "typical"),
        "waterfall-slowest": _waterfall(runs[0], "slowest"),
        "phase-bars": plots.phase_bars(boots),
        "latency-cdf": plots.latency_cdf(boots),
        "phase-box": plots.phase_box(boots),
        "load-profile": plots.load_profile(boots),
        "saturation": plots.saturation(summary.assign(scheduler=summary["scheduler"].fillna("?"))),
    }
    usage = _usage(runs)
    figures["host-heatmap"] = plots.host_heatmap(usage) if len(usage) else None
    if figures["host-heatmap"] is None:
        notes.append("host utilisation: no nova.db in the run directory (a run on another database)")
    if len(runs) == 1:
        notes.append(
            "throughput against load: one run is one point; give several runs (load levels) to see the knee"
        )

    body = [
        f"<h1>Boot-path report</h1><p>{len(runs)} run(s), {len(boots)} boots, generated "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC.</p>",
        "<h2>Headline</h2>",
        _fmt_table(headline, index=False),
    ]
    sections = [
        ("Where a boot's time goes", ["waterfall-typical", "waterfall-slowest", "phase-bars", "phase-box"]),
        ("Latency", ["latency-cdf"]),
        ("Load", ["load-profile", "saturation"]),
        ("Hosts", ["host-heatmap"]),
    ]
    shown = []
    for title, ids in sections:
        body.append(f"<h2>{html.escape(title)}</h2>")
        for fid in ids:
            fig = figures[fid]
            if fig is None:
                body.append(f'<div class="figure missing" data-figure="{fid}"><p>({fid}: no data)</p></div>')
                continue
            body.append(
                f'<div class="figure" data-figure="{fid}">'
                + fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{fid}")
                + "</div>"
            )
            shown.append(fid)
    body += [
        "<h2>Phases (Rally style, ACTIVE boots, ms)</h2>",
        _fmt_table(phases),
        "<h2>Steps (span durations, ms)</h2>",
        _fmt_table(steps),
        f"<h2>The tail: what the slowest {tail:.0%} of boots spend their time on</h2>",
        "<p>Critical-path ms per step, mean over the tail against all ACTIVE boots; sorted by the "
        "excess.</p>",
        _fmt_table(tails.groupby(level=0, group_keys=False).head(8)),
        "<h2>Scheduler comparison</h2>",
        _fmt_table(summary, index=False),
        "<h3>Is the difference significant? (Mann-Whitney U, ACTIVE boot times)</h3>",
        _fmt_table(sig, index=False),
        "<h2>Slowest boots</h2>",
        _slow_boots(boots, jaeger_url, slow_boots).to_html(
            index=False, escape=False, border=0, float_format=lambda v: f"{v:,.2f}", na_rep="-"
        ),
        "<h2>Data quality</h2>",
        _fmt_table(_quality(runs), index=False),
    ]
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    body.append("<h2>Run settings</h2>")
    for run in runs:
        body.append(
            f"<details><summary>{html.escape(run.name)} ({html.escape(str(run.path))})</summary>"
            f"<pre>{html.escape(json.dumps(run.settings, indent=2, default=str))}</pre></details>"
        )

    page = _PAGE.format(plotly=get_plotlyjs(), body="\n".join(body), style=_STYLE)
    report_path = out / "report.html"
    report_path.write_text(page, encoding="utf-8")
    return Report(html=report_path, tables=paths, headline=headline, figures=shown, notes=notes)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; margin-top: 1.6em; }
table.table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0; }
table.table td, table.table th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
table.table th { background: #f5f5f5; } pre { background: #f8f8f8; padding: 0.8em; font-size: 12px; }
.figure { margin: 1em 0; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Boot-path report</title>
<style>{style}</style>
<script type="text/javascript">{plotly}</script>
</head><body>
{body}
</body></html>
"""


#: The terminal's headline: fewer, shorter columns than the HTML's.
TERMINAL = {
    "run": "run",
    "scheduler": "scheduler",
    "boots": "boots",
    "success_pct": "ok %",
    "no_valid_host_pct": "NVH %",
    "throughput": "boots/s",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
}


def headline_rows(headline: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The headline for a terminal table: column titles and rows of strings."""
    cols = [c for c in TERMINAL if c in headline.columns]

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "-" if v != v else f"{v:,.1f}"
        return "-" if v is None else str(v)

    return [TERMINAL[c] for c in cols], [
        [fmt(v) for v in row] for row in headline[cols].itertuples(index=False)
    ]


__all__ = ["FIGURES", "Report", "build_report", "headline_rows"]
