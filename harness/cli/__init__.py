"""The ``harness`` command line. Each group of commands lives in its own module and registers
itself on :data:`app`; ``main`` is the console-script entry point."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="harness",
    help="A mock OpenStack cloud that reproduces the 29-step VM boot, traced with OpenTelemetry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register() -> None:
    import importlib
    import pkgutil

    import harness.cli as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"harness.cli.{mod.name}")


def main() -> None:
    _register()
    app()
