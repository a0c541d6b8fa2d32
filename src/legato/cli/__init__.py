"""The `legato` command: one Typer app, one module per command group.

Start-up time matters (`legato --help` is budgeted): the command modules import only Typer, Rich
and Legato's light modules at import; the history store, SQLAlchemy and pydantic are imported
inside the commands that need them.
"""

from __future__ import annotations

import platform
import sys
from typing import Annotated

import typer

from ..settings import active_profile_name, load_profiles
from . import config, flow_run, profile, task_run
from ._common import handles_errors

app = typer.Typer(
    name="legato",
    help="Legato: a workflow orchestrator for Python.",
    no_args_is_help=True,
    # a traceback's locals could hold a setting's secret value
    pretty_exceptions_show_locals=False,
)
app.add_typer(config.app, name="config")
app.add_typer(profile.app, name="profile")
app.add_typer(flow_run.app, name="flow-run")
app.add_typer(task_run.app, name="task-run")


def legato_version() -> str:
    # importlib.metadata costs ~40 ms to import: lazy, for CLI start-up time
    from importlib import metadata

    try:
        return metadata.version("legato")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(legato_version())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Legato: a workflow orchestrator for Python."""


@app.command()
@handles_errors
def version() -> None:
    """Print Legato's version, Python's, the platform and the active profile."""
    rows = [
        ("Version", legato_version()),
        ("Python version", platform.python_version()),
        ("OS/Arch", f"{sys.platform}/{platform.machine()}"),
        ("Profile", active_profile_name(load_profiles())),
    ]
    for label, value in rows:
        typer.echo(f"{label + ':':<16}{value}")


def main() -> None:
    """Entry point of the `legato` console script."""
    app()
