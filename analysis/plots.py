"""Plotly figures of a run: a boot's waterfall, phase bars, latency CDFs, load and saturation,
host utilisation. Each function takes the analysis tables and returns a ``go.Figure``; the colours
of the phases are the same in every figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from analysis.boots import PHASES, Tree

#: One colour per phase, everywhere (``other``: time in spans of no phase).
PHASE_COLOURS = dict(zip(PHASES + ["other"], px.colors.qualitative.Plotly + ["#9e9e9e"]))
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=40), height=450)


def _tree_order(parent: np.ndarray, start: np.ndarray) -> tuple[list[int], list[int]]:
    """Rows in depth-first order (children by start time) and each row's depth."""
    children: dict[int, list[int]] = {}
    for row, p in enumerate(parent):
        children.setdefault(int(p), []).append(row)
    order, depth = [], []
    stack = [(r, 0) for r in sorted(children.get(-1, []), key=lambda r: start[r], reverse=True)]
    while stack:
        row, d = stack.pop()
        order.append(row)
        depth.append(d)
        for c in sorted(children.get(row, []), key=lambda r: start[r], reverse=True):
            stack.append((c, d + 1))
    return order, depth


def waterfall(
    trace_spans: pd.DataFrame, *, title: str = "boot waterfall", critical: pd.DataFrame | None = None
) -> go.Figure:
    """A trace as Jaeger draws it: a bar a span, indented by depth, coloured by phase (the phase its
    time counts for, inherited from the nearest ancestor with one). ``critical`` (from
    :func:`analysis.boots.critical_path`) is drawn as a black line through the bars on the path."""
    spans = trace_spans.reset_index(drop=True)
    tree = Tree(spans)
    order, depth = _tree_order(tree.parent, tree.start)
    t0 = tree.start.min() if len(spans) else 0
    phase_names = np.array(PHASES + ["other"], dtype=object)
    phase = phase_names[np.where(tree.phase >= 0, tree.phase, len(PHASES))]
    labels = [f"{'  ' * d}{spans['name'].iat[r]}" for r, d in zip(order, depth)]
    y_of = {r: f"{i:03d} {label}" for i, (r, label) in enumerate(zip(order, labels))}
    fig = go.Figure()
    rows = np.array(order, dtype=np.int64)
    for ph in PHASES + ["other"]:
        sel = rows[phase[rows] == ph] if len(rows) else rows
        if not len(sel):
            continue
        step = spans["step"].to_numpy(dtype=object)
        fig.add_trace(
            go.Bar(
                name=ph,
                orientation="h",
                marker_color=PHASE_COLOURS[ph],
                y=[y_of[r] for r in sel],
                base=(tree.start[sel] - t0) / 1e6,
                x=(tree.end[sel] - tree.start[sel]) / 1e6,
                customdata=np.stack(
                    [
                        spans["service"].astype(str).to_numpy()[sel],
                        [("" if pd.isna(step[r]) else str(step[r])) for r in sel],
                    ],
                    axis=1,
                ),
                hovertemplate="%{y}<br>service %{customdata[0]}, step %{customdata[1]}<br>"
                "start %{base:.2f} ms, %{x:.2f} ms<extra>" + ph + "</extra>",
            )
        )
    if critical is not None and len(critical):
        row_of = {sid: r for r, sid in enumerate(spans["span_id"])}
        xs, ys = [], []
        for sec in critical.itertuples():
            r = row_of.get(sec.span_id)
            if r is None:
                continue
            xs += [(sec.start_ns - t0) / 1e6, (sec.end_ns - t0) / 1e6, None]
            ys += [y_of[r], y_of[r], None]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name="critical path",
                line=dict(color="black", width=3),
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        **{**_LAYOUT, "height": max(300, 18 * len(order) + 120)},
        title=title,
        barmode="overlay",
        xaxis_title="ms since the boot request",
        legend_title="phase",
    )
    fig.update_yaxes(
        autorange="reversed",
        tickfont=dict(family="monospace", size=10),
        ticktext=labels,
        tickvals=[y_of[r] for r in order],
    )
    return fig


def phase_bars(boots: pd.DataFrame, *, by: str = "run", title: str = "where a boot's time goes") -> go.Figure:
    """Mean milliseconds per phase, stacked, one bar per ``by`` group (a run, a scheduler): the
    stack's height is the mean boot time (phases add up to it along the critical path)."""
    ok = boots[boots["outcome"] == "ACTIVE"]
    cols = [f"{p}_ms" for p in PHASES if p != "auth"] + ["other_ms"]
    means = ok.groupby(by, observed=True)[cols].mean()
    fig = go.Figure()
    for col in cols:
        ph = col[:-3]
        if (means[col] > 0).any():
            fig.add_trace(
                go.Bar(
                    name=ph,
                    x=means.index.astype(str),
                    y=means[col],
                    marker_color=PHASE_COLOURS[ph],
                    hovertemplate="%{x}: %{y:.1f} ms<extra>" + ph + "</extra>",
                )
            )
    fig.update_layout(
        **_LAYOUT, title=title, barmode="stack", yaxis_title="mean ms per ACTIVE boot", legend_title="phase"
    )
    return fig


def latency_cdf(
    boots: pd.DataFrame, *, by: str = "run", title: str = "boot latency (to ACTIVE)"
) -> go.Figure:
    """Empirical CDF of the boot time of ACTIVE boots, a line per group."""
    ok = boots[boots["outcome"] == "ACTIVE"].assign(**{by: lambda f: f[by].astype(str)})
    fig = px.ecdf(ok, x="total_ms", color=by, title=title) if len(ok) else go.Figure()
    fig.update_layout(**_LAYOUT, xaxis_title="ms from POST /servers to ACTIVE", yaxis_title="share of boots")
    return fig


def in_flight(boots: pd.DataFrame) -> pd.DataFrame:
    """Boots in flight over time (a row per start or end event), per run: time_s since the run's
    first boot, in_flight after the event."""
    frames = []
    for run, g in boots.groupby("run", observed=True):
        t0 = g["start_ns"].min()
        ev = pd.DataFrame(
            {
                "t": np.concatenate([g["start_ns"], g["end_ns"]]) - t0,
                "d": np.concatenate([np.ones(len(g)), -np.ones(len(g))]),
            }
        ).sort_values(["t", "d"])
        frames.append(
            pd.DataFrame(
                {"run": run, "time_s": ev["t"].to_numpy() / 1e9, "in_flight": ev["d"].cumsum().to_numpy()}
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["run", "time_s", "in_flight"])
    )


def load_profile(boots: pd.DataFrame, *, title: str = "load: boots in flight") -> go.Figure:
    """How many boots were between POST /servers and ACTIVE/ERROR at each moment of each run."""
    data = in_flight(boots)
    fig = go.Figure()
    for run, g in data.groupby("run", observed=True):
        fig.add_trace(
            go.Scatter(x=g["time_s"], y=g["in_flight"], mode="lines", line_shape="hv", name=str(run))
        )
    fig.update_layout(
        **_LAYOUT,
        title=title,
        xaxis_title="s since the run's first boot",
        yaxis_title="boots in flight",
        legend_title="run",
    )
    return fig


def saturation(summary: pd.DataFrame, *, title: str = "throughput and latency against load") -> go.Figure:
    """A point per run: ACTIVE boots per second and p95 boot time against the mean number of boots
    in flight (or the offered load, when the runs say it), one line per scheduler: the knee."""
    from plotly.subplots import make_subplots

    x = "offered" if "offered" in summary and summary["offered"].notna().all() else "mean_in_flight"
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for sched, g in summary.sort_values(x).groupby("scheduler", observed=True):
        fig.add_trace(
            go.Scatter(x=g[x], y=g["throughput"], mode="lines+markers", name=f"{sched} boots/s"),
            secondary_y=False,
        )
        fig.add_trace(
            go.Scatter(x=g[x], y=g["p95_ms"], mode="lines+markers", line_dash="dot", name=f"{sched} p95 ms"),
            secondary_y=True,
        )
    fig.update_layout(**_LAYOUT, title=title, xaxis_title=x.replace("_", " "))
    fig.update_yaxes(title_text="ACTIVE boots per second", secondary_y=False)
    fig.update_yaxes(title_text="p95 boot ms", secondary_y=True)
    return fig


def host_heatmap(
    usage: pd.DataFrame, *, value: str = "ram_pct", title: str = "host utilisation over time"
) -> go.Figure:
    """Hosts down, time across, colour the share of RAM (or ``value``) in use; one panel per run
    (``usage`` from :func:`analysis.capacity.usage_over_time`, with a ``run`` column)."""
    from plotly.subplots import make_subplots

    usage = usage if "run" in usage else usage.assign(run="")
    runs = list(dict.fromkeys(usage["run"]))
    grids = [
        usage[usage["run"] == r].pivot_table(index="host", columns="time_s", values=value, aggfunc="last")
        for r in runs
    ]
    heights = [max(1, g.shape[0]) for g in grids]
    fig = make_subplots(
        rows=len(runs),
        cols=1,
        subplot_titles=[str(r) for r in runs],
        row_heights=[h / sum(heights) for h in heights],
        vertical_spacing=min(0.12, 0.5 / len(runs)) if len(runs) > 1 else 0.0,
    )
    vmax = float(np.nanmax(usage[value])) if len(usage) else 1.0
    for i, grid in enumerate(grids, 1):
        fig.add_trace(
            go.Heatmap(
                z=grid.to_numpy(),
                x=grid.columns,
                y=grid.index.astype(str),
                coloraxis="coloraxis",
                hovertemplate="%{y} at %{x:.1f} s: %{z:.1f}%<extra></extra>",
            ),
            row=i,
            col=1,
        )
        fig.update_xaxes(title_text="s since the run's first boot" if i == len(runs) else None, row=i, col=1)
    fig.update_layout(
        **{**_LAYOUT, "height": max(300, 22 * sum(heights) + 60 * len(runs) + 100)},
        title=title,
        coloraxis=dict(
            colorscale="Viridis", cmin=0, cmax=max(vmax, 1e-9), colorbar_title=value.replace("_pct", " %")
        ),
    )
    return fig


def phase_box(boots: pd.DataFrame, *, by: str = "run", title: str = "phase time per boot") -> go.Figure:
    """The spread of each phase's time across boots (a box per phase and group)."""
    ok = boots[boots["outcome"] == "ACTIVE"]
    cols = [f"{p}_ms" for p in PHASES if p != "auth"]
    long = ok.melt(id_vars=[by], value_vars=cols, var_name="phase", value_name="ms")
    long["phase"] = long["phase"].str[:-3]
    long[by] = long[by].astype(str)
    fig = px.box(long, x="phase", y="ms", color=by, title=title, points=False)
    fig.update_layout(**_LAYOUT)
    return fig
