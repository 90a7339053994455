"""One trace at a time: a span tree for the terminal (as ``osprofiler trace show`` prints it), a
Graphviz DOT graph, or a standalone HTML waterfall.

Every view marks the spans on the critical path and colours by the phase a span's time counts for.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from rich.text import Text
from rich.tree import Tree as RichTree

from analysis import plots
from analysis.boots import PHASES, Tree, critical_path


class TraceNotFound(LookupError):
    """No trace, or more than one, matches the id given."""


def find_trace(spans: pd.DataFrame, trace_id: str) -> pd.DataFrame:
    """The spans of the trace whose id is ``trace_id`` or starts with it (at least 4 hex digits)."""
    want = trace_id.strip().lower()
    if len(want) < 4:
        raise TraceNotFound(f"trace id {trace_id!r} is too short: give at least 4 hex digits")
    ids = spans["trace_id"].astype(str).str.lower()
    exact = spans[ids == want]
    if len(exact):
        return exact.reset_index(drop=True)
    matches = pd.unique(ids[ids.str.startswith(want)])
    if len(matches) == 0:
        raise TraceNotFound(f"no trace {trace_id!r} among {ids.nunique()} traces")
    if len(matches) > 1:
        raise TraceNotFound(
            f"trace id prefix {trace_id!r} matches {len(matches)} traces "
            f"({', '.join(sorted(matches)[:5])} ...): give more digits"
        )
    return spans[ids == matches[0]].reset_index(drop=True)


def _layout(spans: pd.DataFrame) -> tuple[Tree, list[int], list[int], set[str], np.ndarray]:
    tree = Tree(spans)
    order, depth = plots._tree_order(tree.parent, tree.start)
    on_path = set(critical_path(spans)["span_id"])
    return tree, order, depth, on_path, tree.exclusive_ms()


def _phase_name(tree: Tree, row: int) -> str:
    return PHASES[tree.phase[row]] if tree.phase[row] >= 0 else "-"


def rich_tree(spans: pd.DataFrame) -> RichTree:
    """The trace as a rich tree: name, service, step, phase, start offset, duration, self time;
    ``*`` marks the critical path and errors are red."""
    spans = spans.reset_index(drop=True)
    tree, order, depth, on_path, self_ms = _layout(spans)
    t0 = tree.start.min()
    root = RichTree(
        Text(
            f"trace {spans['trace_id'].iat[0]}  ({len(spans)} spans, "
            f"{(tree.end.max() - t0) / 1e6:.2f} ms; * = critical path)",
            style="bold",
        )
    )
    nodes: dict[int, RichTree] = {}
    for row in order:
        step = spans["step"].iat[row]
        err = str(spans["status_code"].iat[row]) == "ERROR"
        label = Text()
        label.append("* " if spans["span_id"].iat[row] in on_path else "  ", style="bold yellow")
        label.append(str(spans["name"].iat[row]), style="bold red" if err else "bold")
        label.append(f"  [{spans['service'].iat[row]}]", style="cyan")
        if not pd.isna(step):
            label.append(f"  step {int(step)}", style="magenta")
        label.append(f"  {_phase_name(tree, row)}", style="green")
        label.append(
            f"  +{(tree.start[row] - t0) / 1e6:.2f} ms  {(tree.end[row] - tree.start[row]) / 1e6:.2f} ms"
            f"  (self {self_ms[row]:.2f})"
        )
        if err and isinstance(spans["status_message"].iat[row], str):
            label.append(f"  ERROR: {spans['status_message'].iat[row]}", style="red")
        parent = tree.parent[row]
        nodes[row] = (nodes[parent] if parent in nodes else root).add(label)
    return root


def to_dot(spans: pd.DataFrame) -> str:
    """The trace as a Graphviz digraph (parent -> child), phase-coloured, critical path in bold."""
    spans = spans.reset_index(drop=True)
    tree, order, _, on_path, self_ms = _layout(spans)
    lines = [
        "digraph trace {",
        '  rankdir=LR; node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    for row in order:
        sid = spans["span_id"].iat[row]
        step = spans["step"].iat[row]
        label = (
            f"{spans['name'].iat[row]}\\n{spans['service'].iat[row]}"
            + ("" if pd.isna(step) else f" step {int(step)}")
            + f"\\n{(tree.end[row] - tree.start[row]) / 1e6:.2f} ms (self {self_ms[row]:.2f})"
        )
        colour = plots.PHASE_COLOURS.get(_phase_name(tree, row), "#ffffff")
        pen = ", penwidth=3" if sid in on_path else ""
        err = ', color="red"' if str(spans["status_code"].iat[row]) == "ERROR" else ""
        lines.append(f'  "{sid}" [label="{_dot_escape(label)}", fillcolor="{colour}"{pen}{err}];')
    for row in order:
        p = tree.parent[row]
        if p >= 0:
            a, b = spans["span_id"].iat[p], spans["span_id"].iat[row]
            bold = ", penwidth=3" if a in on_path and b in on_path else ""
            lines.append(f'  "{a}" -> "{b}" [arrowsize=0.6{bold}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace('"', '\\"')


def write_html(spans: pd.DataFrame, path: str | Path) -> Path:
    """A standalone page with the trace's waterfall (plotly inline, opens offline)."""
    spans = spans.reset_index(drop=True)
    fig = plots.waterfall(
        spans, critical=critical_path(spans), title=f"trace {html.escape(str(spans['trace_id'].iat[0]))}"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path
