"""``harness schedulers``: the scheduling algorithms, their options, filters and weighers.

Every algorithm is selectable with ``--scheduler NAME`` on the commands that start a cloud (or
``scheduler = "NAME"`` in the settings); options go in ``--scheduler-opt key=value`` (repeatable)
or ``[scheduler_options]`` in the settings file.
"""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli import app
from harness.cli.common import fail, out
from harness.scheduling import load_all
from harness.scheduling.filters import FILTERS, load_filters
from harness.scheduling.weighers import WEIGHERS, load_weighers


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


@app.command()
def schedulers(
    name: Optional[str] = typer.Argument(None, help="Show one algorithm's options in full."),
) -> None:
    """List the scheduling algorithms with their options (and the filter scheduler's plugins)."""
    registry = load_all()
    if name is not None and name not in registry:
        fail(f"unknown scheduler {name!r}: choose one of {', '.join(sorted(registry))}")
    if name is None:
        table = Table(title="scheduling algorithms (--scheduler NAME)", show_edge=False)
        table.add_column("name", style="bold")
        table.add_column("what it does")
        table.add_column("options (--scheduler-opt key=value)")
        for key in sorted(registry, key=lambda k: (k != "filter_scheduler", k)):
            cls = registry[key]
            opts = ", ".join(f"{k}={_show(o.default)}" for k, o in cls.options.items()) or "-"
            table.add_row(key, escape(cls.summary), opts if len(opts) < 80 else f"{len(cls.options)} options: "
                          f"harness schedulers {key}")
        out.print(table)
        return
    cls = registry[name]
    out.print(f"[bold]{name}[/]: {cls.summary}")
    table = Table(show_edge=False)
    for col in ("option", "default", "meaning"):
        table.add_column(col, overflow="fold")
    for key, opt in cls.options.items():
        table.add_row(key, escape(_show(opt.default)), escape(opt.help))
    if cls.options:
        out.print(table)
    else:
        out.print("no options")
    if name == "filter_scheduler":
        load_filters()
        load_weighers()
        out.print("filters: " + ", ".join(sorted(FILTERS)))
        plugins = Table(title="weighers", show_edge=False)
        for col in ("weigher", "multiplier option", "default", "effect"):
            plugins.add_column(col, overflow="fold")
        for wname, w in sorted(WEIGHERS.items()):
            plugins.add_row(wname, w.option, _show(w.default_multiplier), escape(w.help))
        out.print(plugins)
