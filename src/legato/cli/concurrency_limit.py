"""`legato concurrency-limit`: at most N task runs with a tag Running at once, across processes."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._common import console, handles_errors, print_json

app = typer.Typer(help="Limit how many task runs with a tag run at once.", no_args_is_help=True)


def _client() -> Any:
    from ..client.factory import get_client  # lazy: the store, for CLI start-up time

    return get_client()


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {"tag": row["tag"], "concurrency_limit": row["concurrency_limit"],
            "active_slots": list(row.get("active_slots") or []),
            "id": str(row["id"])}


@app.command("create")
@handles_errors
def create(tag: str, limit: Annotated[int, typer.Argument(min=0, help="Task runs at once.")],
           json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create a tag's limit, or change it."""
    row = _shown(_client().set_concurrency_limit(tag, limit))
    if json_out:
        print_json(row)
    else:
        console().print(f"Concurrency limit of tag {tag!r} set to {limit}.")


@app.command("inspect")
@handles_errors
def inspect(tag: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a tag's limit and the task runs holding its slots."""
    row = _shown(_client().read_concurrency_limit(tag))
    if json_out:
        print_json(row)
        return
    out = console()
    out.print(f"Tag: {row['tag']}\nLimit: {row['concurrency_limit']}\n"
              f"Active slots: {len(row['active_slots'])}")
    for run_id in row["active_slots"]:
        out.print(f"  {run_id}")


@app.command("ls")
@handles_errors
def ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every tag's limit."""
    rows = [_shown(r) for r in _client().read_concurrency_limits()]
    if json_out:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("Tag", "Limit", "Active slots")
    for r in rows:
        table.add_row(r["tag"], str(r["concurrency_limit"]), str(len(r["active_slots"])))
    console().print(table)


@app.command("reset")
@handles_errors
def reset(tag: str) -> None:
    """Free every slot of a tag (after task runs died holding them)."""
    _client().reset_concurrency_limit(tag)
    console().print(f"Every slot of tag {tag!r} is free.")


@app.command("delete")
@handles_errors
def delete(tag: str) -> None:
    """Remove a tag's limit."""
    _client().delete_concurrency_limit(tag)
    console().print(f"Concurrency limit of tag {tag!r} deleted.")
