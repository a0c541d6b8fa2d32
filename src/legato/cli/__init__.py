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
from ..version import legato_version
from . import (
    block,
    concurrency_limit,
    config,
    deployment,
    flow_run,
    history,
    login,
    profile,
    server,
    task_run,
    work_queue,
    worker,
)
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
app.add_typer(history.app, name="history")
app.add_typer(server.app, name="server")
app.add_typer(server.orion_app, name="orion")
app.add_typer(concurrency_limit.app, name="concurrency-limit")
app.add_typer(block.app, name="block")
app.add_typer(deployment.app, name="deployment")
app.command("deploy")(handles_errors(deployment.deploy))
app.add_typer(work_queue.queue_app, name="work-queue")
app.add_typer(work_queue.pool_app, name="work-pool")
app.add_typer(worker.agent_app, name="agent")
app.add_typer(worker.worker_app, name="worker")
app.command("login")(login.login)


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
