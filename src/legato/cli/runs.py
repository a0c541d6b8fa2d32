"""`legato flow-run` and `legato task-run`: read the run history.

Tables show times in local time; ``--json`` prints the history's records (times in ISO UTC) and
nothing else on stdout. Run ids may be given in full or as a unique prefix of at least 4
characters, as with git.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from .. import states
from ..states import StateType
from ._common import console, err_console, handles_errors, print_json

flow_run_app = typer.Typer(help="List and inspect flow runs, and read their logs.", no_args_is_help=True)
task_run_app = typer.Typer(help="List and inspect task runs.", no_args_is_help=True)

_STATE_STYLE = {
    StateType.SCHEDULED: "yellow",
    StateType.PENDING: "grey62",
    StateType.RUNNING: "blue",
    StateType.COMPLETED: "green",
    StateType.FAILED: "red",
    StateType.CRASHED: "bright_red",
    StateType.CANCELLING: "grey50",
    StateType.CANCELLED: "grey50",
    StateType.PAUSED: "grey62",
}
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
_RELATIVE = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PAGE = 500


# -- parsing options ---------------------------------------------------------------------------
def _named_states() -> dict[str, tuple[str, StateType]]:
    """Built-in state names that are not also type names (Cached, Late, ...), by lower-case name."""
    out = {}
    for attr in states.__all__:
        make = getattr(states, attr)
        if callable(make) and not isinstance(make, type):
            state = make()
            if state.name.upper() not in StateType.__members__:
                out[state.name.lower()] = (state.name, state.type)
    return out


def parse_states(values: Sequence[str] | None) -> tuple[set[StateType], set[str]]:
    """--state values as (state types, state names). A word that is a type (COMPLETED) means the
    type, any name of it included; a built-in state name (Cached) means that name only."""
    types: set[StateType] = set()
    names: set[str] = set()
    named = _named_states()
    for value in values or ():
        word = value.strip()
        if word.upper() in StateType.__members__:
            types.add(StateType[word.upper()])
        elif word.lower() in named:
            names.add(named[word.lower()][0])
        else:
            valid = [t.value for t in StateType] + sorted(n for n, _ in named.values())
            raise typer.BadParameter(
                f"Unknown state {value!r}. Use a state type or name: {', '.join(valid)}.",
                param_hint="--state",
            )
    return types, names


def parse_when(value: str | None) -> dt.datetime | None:
    """An ISO datetime (local time if it has no offset) or a time ago: 30s, 30m, 2h, 1d, 1w."""
    if value is None:
        return None
    text = value.strip()
    match = _RELATIVE.fullmatch(text)
    if match:
        ago = dt.timedelta(**{_UNITS[match[2].lower()]: int(match[1])})
        return dt.datetime.now(dt.timezone.utc) - ago
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO datetime (2024-05-01T12:00, 2024-05-01T12:00+02:00) "
            "nor a time ago (30s, 30m, 2h, 1d, 1w)."
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is the user's local time
    return when.astimezone(dt.timezone.utc)


def parse_level(value: str | None) -> int:
    if value is None:
        return 0
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    if text not in _LEVELS:
        raise typer.BadParameter(
            f"Unknown log level {value!r}; use DEBUG, INFO, WARNING, ERROR, CRITICAL or a number.",
            param_hint="--level",
        )
    return _LEVELS[text]


def _collect(
    fetch: Callable[[int, int], list[Any]], keep: Callable[[Any], bool], limit: int
) -> list[Any]:
    """Page through ``fetch(offset, count)`` keeping rows that pass ``keep``, up to ``limit``.
    For filters the store cannot express in one query (a state type OR a state name)."""
    out: list[Any] = []
    offset = 0
    while len(out) < limit:
        rows = fetch(offset, _PAGE)
        out.extend(r for r in rows if keep(r))
        if len(rows) < _PAGE:
            break
        offset += _PAGE
    return out[:limit]


def _state_filter(values: Sequence[str] | None) -> tuple[list[StateType] | None, Any]:
    """The state types to push down to the store, and a row test (None if the types suffice)."""
    types, names = parse_states(values)
    if not names:
        return (sorted(types) or None), None
    named = {name: stype for name, stype in _named_states().values()}
    pushdown = types | {named[n] for n in names}

    def keep(run: Any) -> bool:
        return run.state_type in types or run.state_name in names

    return sorted(pushdown), keep


# -- formatting --------------------------------------------------------------------------------
def local_time(when: dt.datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def duration(run: Any) -> str:
    total = run.total_run_time or 0.0
    if run.state_type is StateType.RUNNING and run.state_timestamp is not None:
        # the store adds the running stretch when the run leaves RUNNING; show it live
        total += (dt.datetime.now(dt.timezone.utc) - run.state_timestamp).total_seconds()
    if run.start_time is None and not total:
        return "-"
    return format_seconds(max(total, 0.0))


def state_text(state_type: StateType | None, name: str | None) -> Text:
    if state_type is None:
        return Text("-")
    return Text(name or state_type.value, style=_STATE_STYLE.get(state_type, ""))


def _details(rows: Iterable[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value if isinstance(value, Text) else Text(str(value)))
    return grid


def _states_table(records: list[Any]) -> Table:
    table = Table(title="States", title_justify="left")
    table.add_column("Time", no_wrap=True)
    table.add_column("Type")
    table.add_column("Name")
    table.add_column("Message")
    for s in records:
        table.add_row(
            local_time(s.timestamp), s.type.value, state_text(s.type, s.name), s.message or ""
        )
    return table


def _json_or_none(value: Any) -> str:
    return json.dumps(value) if value else "-"


def _client() -> Any:
    # the client (and with it SQLAlchemy and pydantic) is imported on first use, not when the
    # CLI starts: lazy for CLI start-up time (`legato --help` must stay fast)
    from ..client import get_client

    return get_client()


# -- flow runs ---------------------------------------------------------------------------------
@flow_run_app.command("ls")
@handles_errors
def flow_run_ls(
    flow_name: Annotated[str | None, typer.Option("--flow-name", help="Only runs of this flow.")] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only runs in this state type (COMPLETED) or state name (Cached); repeatable, "
            "case-insensitive.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only runs started at or after: ISO datetime or a time ago (2h, 30m, 1d)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only runs started at or before: ISO datetime or a time ago."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Show at most this many runs.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, for scripts.")] = False,
) -> None:
    """List flow runs, newest first."""
    from ..schemas import FlowRunFilter  # lazy: pydantic, for CLI start-up time

    state_types, keep = _state_filter(state)
    after, before = parse_when(since), parse_when(until)
    if after and before and after > before:
        raise typer.BadParameter("--since is later than --until; nothing can match.")
    client = _client()

    def fetch(offset: int, count: int) -> list[Any]:
        flt = FlowRunFilter(
            flow_name=flow_name,
            state_types=state_types,
            start_after=after,
            start_before=before,
            limit=count,
            offset=offset,
        )
        return client.read_flow_runs(flt)

    runs = fetch(0, limit) if keep is None else _collect(fetch, keep, limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in runs])
        return
    if not runs:
        err_console().print("No flow runs found.")
        return
    table = Table(title="Flow runs")
    table.add_column("ID", no_wrap=True, style="cyan")
    table.add_column("Name")
    table.add_column("Flow")
    table.add_column("State", no_wrap=True)
    table.add_column("Start time", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    for r in runs:
        table.add_row(
            r.id,
            r.name,
            r.flow_name,
            state_text(r.state_type, r.state_name),
            local_time(r.start_time),
            duration(r),
        )
    console().print(table)


@flow_run_app.command("inspect")
@handles_errors
def flow_run_inspect(
    id: Annotated[str, typer.Argument(help="Flow run id, or a unique prefix of it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object, for scripts.")] = False,
) -> None:
    """Show a flow run, its states in order and a summary of its task runs."""
    from ..schemas import TaskRunFilter  # lazy: pydantic, for CLI start-up time

    client = _client()
    run = client.read_flow_run(id)
    history = client.read_flow_run_states(run.id)
    tasks = client.read_task_runs(TaskRunFilter(flow_run_id=run.id, limit=1_000_000))
    by_state = Counter(t.state_name or "-" for t in tasks)
    if as_json:
        payload = run.model_dump(mode="json")
        payload["states"] = [s.model_dump(mode="json") for s in history]
        payload["task_runs"] = {"total": len(tasks), "by_state": dict(sorted(by_state.items()))}
        print_json(payload)
        return
    state = state_text(run.state_type, run.state_name)
    if run.state_type is not None:
        state.append(f" ({run.state_type.value})", style="")
    rows: list[tuple[str, Any]] = [
        ("ID", run.id),
        ("Name", run.name),
        ("Flow", run.flow_name),
        ("State", state),
        ("Message", run.state_message or "-"),
        ("Parameters", _json_or_none(run.parameters)),
        ("Tags", ", ".join(run.tags) or "-"),
        ("Created", local_time(run.created)),
        ("Start time", local_time(run.start_time)),
        ("End time", local_time(run.end_time)),
        ("Duration", duration(run)),
        ("Run count", run.run_count),
    ]
    if run.parent_task_run_id:
        rows.append(("Parent task run", run.parent_task_run_id))
    out = console()
    out.print(_details(rows))
    out.print()
    out.print(_states_table(history))
    out.print()
    summary = ", ".join(f"{n} {name}" for name, n in sorted(by_state.items()))
    out.print(f"Task runs: {len(tasks)}" + (f" ({summary})" if summary else ""))
    if tasks:
        out.print(f"List them with: legato task-run ls --flow-run {run.id}", style="dim")


@flow_run_app.command("logs")
@handles_errors
def flow_run_logs(
    id: Annotated[str, typer.Argument(help="Flow run id, or a unique prefix of it.")],
    head: Annotated[
        int | None,
        typer.Option("--head", "--limit", "-n", min=1, help="Show only the first N lines."),
    ] = None,
    tail: Annotated[int | None, typer.Option("--tail", min=1, help="Show only the last N lines.")] = None,
    level: Annotated[
        str | None,
        typer.Option(help="Lowest level shown: DEBUG, INFO, WARNING, ERROR, CRITICAL."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, for scripts.")] = False,
) -> None:
    """Print a flow run's log lines (its task runs' included), oldest first."""
    if head is not None and tail is not None:
        raise typer.BadParameter("--head/--limit and --tail cannot be used together.")
    min_level = parse_level(level)
    client = _client()
    run = client.read_flow_run(id)  # an unknown id is an error, not an empty log
    logs = client.read_logs(flow_run_id=run.id, min_level=min_level, limit=head)
    if tail is not None:
        logs = logs[-tail:]
    if as_json:
        print_json([r.model_dump(mode="json") for r in logs])
        return
    if not logs:
        err_console().print(f"No log lines for flow run {run.name!r} ({run.id}).")
    for log in logs:
        when = log.timestamp.astimezone()
        stamp = f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d}"
        name = logging.getLevelName(log.level)
        colour = "red" if log.level >= 40 else "yellow" if log.level >= 30 else None
        # typer.echo drops the colour when stdout is not a terminal
        typer.echo(f"{stamp} | {typer.style(f'{name:<7}', fg=colour)} | {log.name} - {log.message}")


# -- task runs ---------------------------------------------------------------------------------
@task_run_app.command("ls")
@handles_errors
def task_run_ls(
    flow_run: Annotated[
        str | None,
        typer.Option("--flow-run", help="Only task runs of this flow run (id or unique prefix)."),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="State type or state name; repeatable, case-insensitive."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="Show at most this many.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, for scripts.")] = False,
) -> None:
    """List task runs: a flow run's in the order they were created, otherwise newest first."""
    from ..schemas import TaskRunFilter  # lazy: pydantic, for CLI start-up time

    state_types, keep = _state_filter(state)
    client = _client()
    flow_run_id = client.read_flow_run(flow_run).id if flow_run is not None else None

    def fetch(offset: int, count: int) -> list[Any]:
        flt = TaskRunFilter(
            flow_run_id=flow_run_id,
            state_types=state_types,
            sort="created_asc" if flow_run_id else "created_desc",
            limit=count,
            offset=offset,
        )
        return client.read_task_runs(flt)

    runs = fetch(0, limit) if keep is None else _collect(fetch, keep, limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in runs])
        return
    if not runs:
        err_console().print("No task runs found.")
        return
    table = Table(title="Task runs")
    table.add_column("ID", no_wrap=True, style="cyan")
    table.add_column("Name")
    table.add_column("Task")
    if flow_run_id is None:
        table.add_column("Flow run", no_wrap=True)
    table.add_column("State", no_wrap=True)
    table.add_column("Start time", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    for r in runs:
        cells: list[Any] = [r.id, r.name, r.task_key]
        if flow_run_id is None:
            cells.append(r.flow_run_id or "-")
        cells += [state_text(r.state_type, r.state_name), local_time(r.start_time), duration(r)]
        table.add_row(*cells)
    console().print(table)


@task_run_app.command("inspect")
@handles_errors
def task_run_inspect(
    id: Annotated[str, typer.Argument(help="Task run id, or a unique prefix of it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object, for scripts.")] = False,
) -> None:
    """Show a task run and its states in order."""
    client = _client()
    run = client.read_task_run(id)
    history = client.read_task_run_states(run.id)
    if as_json:
        payload = run.model_dump(mode="json")
        payload["states"] = [s.model_dump(mode="json") for s in history]
        print_json(payload)
        return
    flow_run = "-"
    if run.flow_run_id is not None:
        parent = client.read_flow_run(run.flow_run_id)
        flow_run = f"{parent.name} ({parent.id})"
    state = state_text(run.state_type, run.state_name)
    if run.state_type is not None:
        state.append(f" ({run.state_type.value})", style="")
    rows: list[tuple[str, Any]] = [
        ("ID", run.id),
        ("Name", run.name),
        ("Task", run.task_key),
        ("Dynamic key", run.dynamic_key),
        ("Flow run", flow_run),
        ("State", state),
        ("Message", run.state_message or "-"),
        ("Tags", ", ".join(run.tags) or "-"),
        ("Cache key", run.cache_key or "-"),
        ("Cache expiration", local_time(run.cache_expiration)),
        ("Created", local_time(run.created)),
        ("Start time", local_time(run.start_time)),
        ("End time", local_time(run.end_time)),
        ("Duration", duration(run)),
        ("Run count", run.run_count),
    ]
    out = console()
    out.print(_details(rows))
    out.print()
    out.print(_states_table(history))
