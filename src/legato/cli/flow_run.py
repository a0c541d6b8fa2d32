"""`legato flow-run`: list and inspect flow runs, and read their logs."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated, Any

import typer

from ._common import console, err_console, exit_with_error, handles_errors, print_json
from ._history import (
    collect,
    details_grid,
    duration,
    history_client,
    json_or_dash,
    local_time,
    parse_level,
    parse_when,
    run_id,
    runs_table,
    state_filter,
    state_text,
    states_table,
)

app = typer.Typer(help="List and inspect flow runs, and read their logs.", no_args_is_help=True)


@app.command("ls")
@handles_errors
def flow_run_ls(
    flow_name: Annotated[
        str | None, typer.Option("--flow-name", help="Only runs of this flow.")
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="Only runs in this state type (COMPLETED) or state name (Cached); repeatable, "
            "case-insensitive.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only runs started at or after: ISO datetime or a time ago (2h, 30m, 1d)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only runs started at or before: ISO datetime or a time ago."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="Show at most this many runs.")
    ] = 15,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, for scripts.")
    ] = False,
) -> None:
    """List flow runs, newest first."""
    from ..schemas import FlowRunFilter  # lazy: pydantic, for CLI start-up time

    state_types, keep = state_filter(state)
    after, before = parse_when(since), parse_when(until)
    if after and before and after > before:
        raise typer.BadParameter("--since is later than --until; nothing can match.")
    client = history_client()

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

    runs = fetch(0, limit) if keep is None else collect(fetch, keep, limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in runs])
        return
    if not runs:
        err_console().print("No flow runs found.")
        return
    table = runs_table("Flow runs", ["ID", "Name", "Flow", "State", "Start time", "Duration"])
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


@app.command("inspect")
@handles_errors
def flow_run_inspect(
    id: Annotated[str, typer.Argument(help="Flow run id, or a unique prefix of it.", metavar="ID")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON object, for scripts.")
    ] = False,
) -> None:
    """Show a flow run, its states in order and a summary of its task runs."""
    from ..schemas import TaskRunFilter  # lazy: pydantic, for CLI start-up time

    client = history_client()
    run = client.read_flow_run(run_id(id, "flow run"))
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
        ("Parameters", json_or_dash(run.parameters)),
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
    out.print(details_grid(rows))
    out.print()
    out.print(states_table(history))
    out.print()
    summary = ", ".join(f"{n} {name}" for name, n in sorted(by_state.items()))
    out.print(f"Task runs: {len(tasks)}" + (f" ({summary})" if summary else ""))
    if tasks:
        out.print(
            f"List them with: legato task-run ls --flow-run {run.id}", style="dim", soft_wrap=True
        )


@app.command("logs")
@handles_errors
def flow_run_logs(
    id: Annotated[str, typer.Argument(help="Flow run id, or a unique prefix of it.", metavar="ID")],
    head: Annotated[
        int | None,
        typer.Option("--head", "--limit", "-n", min=1, help="Show only the first N lines."),
    ] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", min=1, help="Show only the last N lines.")
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(help="Lowest level shown: DEBUG, INFO, WARNING, ERROR, CRITICAL."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, for scripts.")
    ] = False,
) -> None:
    """Print a flow run's log lines (its task runs' included), oldest first."""
    if head is not None and tail is not None:
        raise typer.BadParameter("--head/--limit and --tail cannot be used together.")
    min_level = parse_level(level)
    client = history_client()
    run = client.read_flow_run(
        run_id(id, "flow run")
    )  # an unknown id is an error, not an empty log
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


@app.command("delete")
@handles_errors
def flow_run_delete(
    ids: Annotated[list[str], typer.Argument(help="Flow run ids (or unique prefixes).",
                                             metavar="ID...")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Delete flow runs with their task runs, states, logs and subflow runs."""
    import sys

    client = history_client()
    runs = [client.read_flow_run(run_id(i, "flow run")) for i in ids]  # all found, or none gone
    if not yes and sys.stdin.isatty():
        names = ", ".join(f"{r.name} ({r.id})" for r in runs)
        typer.confirm(f"Delete {len(runs)} flow run(s): {names}?", abort=True)
    for run in runs:
        client.delete_flow_run(run.id)
        console().print(f"Deleted flow run {run.name!r} ({run.id}).")


@app.command("cancel")
@handles_errors
def flow_run_cancel(
    id_: Annotated[str, typer.Argument(help="A flow run id (or a unique prefix).",
                                       metavar="ID")],
) -> None:
    """Cancel a flow run and its subflow runs: one not started never starts; a running one is
    stopped by its worker (SIGTERM, then SIGKILL) and ends Cancelled."""
    client = history_client()
    run = client.read_flow_run(run_id(id_, "flow run"))
    answer = client.cancel_flow_run(run.id)
    if answer["status"] != "ACCEPT":
        exit_with_error(answer.get("reason") or "the flow run cannot be cancelled")
    state = answer["run"]["state_name"]
    console().print(f"Flow run {run.name!r} ({run.id}) is {state}.")
