"""``harness bench``: run an experiment (schedulers x loads x profiles) and write its report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.live import Live
from rich.table import Table

from harness import aio
from harness.cli import app
from harness.cli.common import console, fail, out
from harness.experiment.runner import run_experiment
from harness.experiment.spec import Cell, ExperimentError, load_experiment


def _ms(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.0f}"


class _Display:
    """A live table: one row a cell, filled in as cells finish."""

    def __init__(self, cells: list[Cell], duration: float) -> None:
        self.cells, self.duration = cells, duration
        self.rows: dict[str, dict[str, Any]] = {}
        self.state: dict[str, str] = {c.name: "waiting" for c in cells}

    def notify(self, event: str, cell: Cell, summary: dict[str, Any] | None) -> None:
        self.state[cell.name] = {"start": f"running ({self.duration:g} s)", "done": "done",
                                 "skip": "done (kept)"}[event]
        if summary is not None:
            self.rows[cell.name] = summary

    def __rich__(self) -> Table:
        t = Table(title="harness bench", show_edge=False)
        for col in ("cell", "state", "boots", "ACTIVE", "boots/s", "p50 ms", "p95 ms", "max ms", "SLA"):
            t.add_column(col, justify="left" if col in ("cell", "state") else "right")
        for c in self.cells:
            s = self.rows.get(c.name, {})
            sla = "" if not s.get("sla") else ("[green]ok[/]" if s.get("sla_ok") else "[red]FAIL[/]")
            t.add_row(c.name, self.state[c.name], str(s.get("boots", "")), str(s.get("active", "")),
                      f"{s['throughput']:.1f}" if "throughput" in s else "", _ms(s.get("p50_s")),
                      _ms(s.get("p95_s")), _ms(s.get("max_s")), sla)
        return t


@app.command()
def bench(
    experiment: Optional[Path] = typer.Argument(None, help="Experiment TOML (default: ~2 minute built-in experiment)."),
    out_dir: Path = typer.Option(Path("runs/bench"), "--out", "-o", help="Where cells, summary and report go."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Override seconds of load per cell.", min=1),
    fresh: bool = typer.Option(False, "--fresh", help="Rerun cells that already finished."),
) -> None:
    """Run a scheduler comparison end to end: cloud, load, traces, report, SLA checks.

    Exits 1 when an SLA fails (for CI); finished cells are kept and skipped on the next run.
    """
    try:
        exp = load_experiment(experiment)
    except ExperimentError as exc:
        fail(str(exc))
    if duration is not None:
        exp = exp.model_copy(update={"duration_s": duration})
    if fresh:
        for cell in exp.cells():
            (out_dir / cell.name / "summary.json").unlink(missing_ok=True)
    cells = exp.cells()
    total = len(cells) * exp.duration_s
    console.print(f"experiment [bold]{exp.name}[/]: {len(cells)} cells x {exp.duration_s:g} s "
                  f"(about {total / 60:.1f} min of load) -> {out_dir}")
    display = _Display(cells, exp.duration_s)
    try:
        with Live(display, console=console, refresh_per_second=2, transient=False):
            outcomes = aio.run(run_experiment(exp, out_dir, notify=display.notify))
        console.file.write("\n")
        console.file.flush()
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted:[/] finished cells are kept in {out_dir}; run again to resume")
        raise typer.Exit(130)
    except ValueError as exc:
        fail(str(exc))
    report = _report(out_dir, [out_dir / o.cell.name for o in outcomes])
    failed = [r for o in outcomes for r in o.sla if not r.success]
    out.print(f"summary: {out_dir / 'summary.csv'}")
    if report:
        out.print(f"report:  {report}")
    if failed:
        for r in failed:
            console.print(f"[bold red]SLA failed[/] in cell {r.cell}: {r.criterion}: {r.detail}")
        raise typer.Exit(1)


def _report(out_dir: Path, cell_dirs: list[Path]) -> Path:
    """The analysis report over every cell, side by side (``OUT/report.html`` and its CSVs)."""
    from analysis.rundata import load_runs
    from analysis.report import build_report

    build_report(load_runs(cell_dirs), out_dir)
    return out_dir / "report.html"
