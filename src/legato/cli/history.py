"""`legato history`: maintenance of the run history (pruning old runs and logs)."""

from __future__ import annotations

import datetime as dt
import re
import sys
from typing import Annotated, Any

import typer

from ..settings import get_settings
from ._common import console, exit_with_error, handles_errors, print_json, warn

app = typer.Typer(help="Maintain the run history: prune old runs and logs.", no_args_is_help=True)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "days"}
_FORMS = "a number with a unit (30d, 12h, 90m, 2w) or a plain number of days (30)"


def parse_duration(value: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` or a plain number of days; ValueError if not."""
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise ValueError(f"--older-than {value!r} is not a duration; use {_FORMS}.")
    return dt.timedelta(**{_UNITS[match[2].lower()]: float(match[1])})


def describe(age: dt.timedelta) -> str:
    seconds = age.total_seconds()
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g} seconds"


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # no stdin, or a closed one
        return False


def _summary(result: Any) -> str:
    parts = [
        (result.flow_runs, "flow run"),
        (result.task_runs, "task run"),
        (result.states, "state"),
        (result.logs, "log line"),
        (result.cache_entries, "expired cache entry"),
    ]
    words = []
    for n, what in parts:
        plural = what if n == 1 else ("expired cache entries" if what.endswith("entry") else what + "s")
        words.append(f"{n:,} {plural}")
    return ", ".join(words[:-1]) + " and " + words[-1]


@app.command("prune")
@handles_errors
def history_prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Delete what is older than this: 30d, 12h, 90m, 2w or a number of days. "
            "Default: the LEGATO_RETENTION_*_DAYS settings.",
        ),
    ] = None,
    flow_runs: Annotated[
        bool,
        typer.Option(
            "--flow-runs/--no-flow-runs",
            help="Finished flow runs, with their task runs, states and log lines.",
        ),
    ] = True,
    task_runs: Annotated[
        bool,
        typer.Option(
            "--task-runs/--no-task-runs",
            help="Finished task runs of finished flow runs, with their states.",
        ),
    ] = True,
    logs: Annotated[bool, typer.Option("--logs/--no-logs", help="Log lines.")] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the counts as JSON, for scripts.")
    ] = False,
) -> None:
    """Delete finished runs (and their states and logs) and log lines older than an age.

    Only finished runs (Completed, Failed, Crashed, Cancelled) are deleted, judged by their end time; running, scheduled, pending and paused runs stay whatever their age. Expired cache entries are deleted too.
    """  # noqa: E501 - one line per paragraph: Typer keeps line breaks in help texts
    settings = get_settings()
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            exit_with_error(str(exc))
        ages = dict.fromkeys(("flow_runs", "task_runs", "logs"), age)
    else:
        ages = {
            kind: None if days is None else dt.timedelta(days=days)
            for kind, days in (
                ("flow_runs", settings.retention_flow_runs_days),
                ("task_runs", settings.retention_task_runs_days),
                ("logs", settings.retention_logs_days),
            )
        }
        if all(a is None for a in ages.values()):
            exit_with_error(
                "Give --older-than (e.g. --older-than 30d), or set LEGATO_RETENTION_FLOW_RUNS_DAYS, "
                "LEGATO_RETENTION_TASK_RUNS_DAYS or LEGATO_RETENTION_LOGS_DAYS."
            )
    chosen = {"flow_runs": flow_runs, "task_runs": task_runs, "logs": logs}
    ages = {kind: (age if chosen[kind] else None) for kind, age in ages.items()}

    # lazy: the store loads SQLAlchemy (~0.3 s), for CLI start-up time
    from ..store.database import get_database
    from ..store.retention import prune

    db = get_database(settings.resolved_database_url, settings.database_busy_timeout)
    if settings.api_url:
        warn(
            "LEGATO_API_URL is set, but `legato history prune` works on the database directly: "
            f"{db.display}."
        )
    kwargs = {
        "flow_runs_older_than": ages["flow_runs"],
        "task_runs_older_than": ages["task_runs"],
        "logs_older_than": ages["logs"],
    }
    what = ", ".join(
        f"{kind.replace('_', ' ')} older than {describe(a)}" for kind, a in ages.items() if a
    ) or "expired cache entries only"

    if not dry_run and not yes and _stdin_is_tty():
        planned = prune(db, **kwargs, dry_run=True)
        if not planned.total:
            _report(planned, as_json, what)
            return
        if not typer.confirm(f"Delete {_summary(planned)} ({what})?", default=False):
            exit_with_error("Aborted; nothing was deleted.")
    result = prune(db, **kwargs, dry_run=dry_run)
    _report(result, as_json, what)


def _report(result: Any, as_json: bool, what: str) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    verb = "Would delete" if result.dry_run else "Deleted"
    console().print(f"{verb} {_summary(result)} ({what}).", soft_wrap=True)
