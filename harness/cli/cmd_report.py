"""``harness report`` (HTML report of runs) and ``harness trace show`` (one trace in the terminal)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from harness.cli import app
from harness.cli.common import console, fail, out

trace_app = typer.Typer(
    help="Look at one trace: its span tree, phases and critical path.", no_args_is_help=True
)
app.add_typer(trace_app, name="trace")

JaegerOpt = typer.Option(None, "--jaeger-url", help="Jaeger UI/query URL (e.g. http://localhost:16686).")


@app.command()
def report(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories (or spans.jsonl files) to report on."),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Where report.html and the CSV tables go (default: the first run)."
    ),
    jaeger_url: Optional[str] = JaegerOpt,
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write spans.parquet."),
    tail: float = typer.Option(
        0.01, "--tail", min=0.0001, max=1.0, help="Share of the slowest boots the tail analysis looks at."
    ),
) -> None:
    """Write a self-contained HTML report (plotly inline) and CSV tables; print the headline."""
    from analysis.load import SpanSourceError
    from analysis.report import build_report, headline_rows
    from analysis.rundata import load_runs

    try:
        runs = load_runs(run_dirs, cache=not no_cache)
    except SpanSourceError as exc:
        fail(str(exc))
    if not any(len(r.analysis.table) for r in runs):
        fail("no boots in " + ", ".join(str(p) for p in run_dirs) + " (no span of step 3, POST /servers)")
    target = out_dir or runs[0].path
    rep = build_report(runs, target, jaeger_url=jaeger_url, tail=tail)
    table = Table(title="boots (latency of ACTIVE boots, POST /servers to ACTIVE)", show_edge=False)
    titles, rows = headline_rows(rep.headline)
    for col in titles:
        table.add_column(col, justify="left" if col in ("run", "scheduler") else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    for run in runs:
        bad = run.spans.attrs.get("malformed_lines", 0) + run.spans.attrs.get("malformed_spans", 0)
        if bad:
            console.print(
                f"[yellow]{run.name}: skipped {run.spans.attrs['malformed_lines']} malformed lines, "
                f"{run.spans.attrs['malformed_spans']} malformed spans[/] "
                f"({run.spans.attrs.get('first_error')})"
            )
    for note in rep.notes:
        console.print(f"note: {note}")
    out.print(f"report  {rep.html}")
    out.print(f"tables  {', '.join(p.name for p in rep.tables.values())} in {target}")


@trace_app.command("show")
def trace_show(
    trace_id: str = typer.Argument(..., help="Trace id (or a unique prefix of it)."),
    run_dir: Path = typer.Option(Path("runs/latest"), "--run-dir", help="Run directory or spans.jsonl file."),
    html: Optional[Path] = typer.Option(
        None, "--html", help="Write the trace's waterfall to this HTML file."
    ),
    dot: Optional[Path] = typer.Option(
        None, "--dot", help="Write the span tree as Graphviz DOT to this file."
    ),
    jaeger_url: Optional[str] = typer.Option(
        None, "--jaeger-url", help="Read the trace from this Jaeger instead of the run directory."
    ),
) -> None:
    """Print a trace's span tree with durations, phases and its critical path (like osprofiler)."""
    from analysis.traceview import TraceNotFound, find_trace, rich_tree, to_dot, write_html

    if jaeger_url:
        from analysis.jaeger import JaegerError, load_jaeger

        try:
            spans = load_jaeger(jaeger_url, trace_ids=[trace_id])
        except JaegerError as exc:
            fail(str(exc))
    else:
        from analysis.load import SpanSourceError, load_spans

        try:
            spans = load_spans(run_dir, cache=True)
        except SpanSourceError as exc:
            fail(str(exc))
    try:
        trace = find_trace(spans, trace_id)
    except TraceNotFound as exc:
        fail(str(exc))
    if html is None and dot is None:
        out.print(rich_tree(trace))
    if html is not None:
        out.print(f"html  {write_html(trace, html)}")
    if dot is not None:
        dot.parent.mkdir(parents=True, exist_ok=True)
        dot.write_text(to_dot(trace))
        out.print(f"dot   {dot}")
