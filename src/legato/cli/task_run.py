"""`legato task-run`: list and inspect task runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._common import console, err_console, handles_errors, print_json
from ._history import (
    collect,
    details_grid,
    duration,
    history_client,
    local_time,
    run_id,
    runs_table,
    state_filter,
    state_text,
    states_table,
)

app = typer.Typer(help="List and inspect task runs.", no_args_is_help=True)


@app.command("ls")
@handles_errors
def task_run_ls(
    flow_run: Annotated[
        str | None,
        typer.Option("--flow-run", help="Only task runs of this flow run (id or unique prefix)."),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="State type or state name; repeatable, case-insensitive.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="Show at most this many.")] = 15,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, for scripts.")
    ] = False,
) -> None:
    """List task runs: a flow run's in the order they were created, otherwise newest first."""
    from ..schemas import TaskRunFilter  # lazy: pydantic, for CLI start-up time

    state_types, keep = state_filter(state)
    client = history_client()
    flow_run_id = (
        client.read_flow_run(run_id(flow_run, "flow run")).id if flow_run is not None else None
    )

    def fetch(offset: int, count: int) -> list[Any]:
        flt = TaskRunFilter(
            flow_run_id=flow_run_id,
            state_types=state_types,
            sort="created_asc" if flow_run_id else "created_desc",
            limit=count,
            offset=offset,
        )
        return client.read_task_runs(flt)

    runs = fetch(0, limit) if keep is None else collect(fetch, keep, limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in runs])
        return
    if not runs:
        err_console().print("No task runs found.")
        return
    columns = ["ID", "Name", "Task", "State", "Start time", "Duration"]
    if flow_run_id is None:
        columns.insert(3, "Flow run")
    table = runs_table("Task runs", columns)
    for r in runs:
        cells: list[Any] = [r.id, r.name, r.task_key]
        if flow_run_id is None:
            # a prefix is enough to pass to `legato flow-run inspect`
            cells.append(r.flow_run_id or "-")  # (a short prefix of a UUIDv7 is not unique)
        cells += [state_text(r.state_type, r.state_name), local_time(r.start_time), duration(r)]
        table.add_row(*cells)
    console().print(table)


@app.command("inspect")
@handles_errors
def task_run_inspect(
    id: Annotated[str, typer.Argument(help="Task run id, or a unique prefix of it.", metavar="ID")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON object, for scripts.")
    ] = False,
) -> None:
    """Show a task run and its states in order."""
    client = history_client()
    run = client.read_task_run(run_id(id, "task run"))
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
    out.print(details_grid(rows))
    out.print()
    out.print(states_table(history))
