"""`legato work-queue` and `legato work-pool`: where deployments' runs wait for agents/workers."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from ._common import console, handles_errors, print_json

queue_app = typer.Typer(help="Work queues: where runs wait for agents and workers.",
                        no_args_is_help=True)
pool_app = typer.Typer(help="Work pools: a kind of infrastructure and its queues.",
                       no_args_is_help=True)
Pool = Annotated[str | None, typer.Option("--pool", "-p", help="The queue's work pool "
                                          "(default: the agents' pool).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client() -> Any:
    from ..client.factory import get_client  # lazy: the store, for CLI start-up time

    return get_client()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@queue_app.command("create")
@handles_errors
def create_queue(name: str, pool: Pool = None,
                 limit: Annotated[int | None, typer.Option("--limit", "-l")] = None,
                 priority: Annotated[int, typer.Option("--priority")] = 1) -> None:
    """Create a work queue."""
    q = _client().create_work_queue(name, pool, priority=priority, concurrency_limit=limit)
    console().print(f"Created work queue {name!r} in pool {q['work_pool_name']!r}.")


@queue_app.command("ls")
@handles_errors
def ls_queues(pool: Pool = None, json_out: JsonOut = False) -> None:
    """List work queues."""
    queues = _client().read_work_queues(pool)
    if json_out:
        print_json(_jsonable(queues))
        return
    table = Table("Pool", "Name", "Priority", "Limit", "Paused", "Last polled")
    for q in queues:
        table.add_row(q["work_pool_name"], q["name"], str(q["priority"]),
                      str(q["concurrency_limit"] if q["concurrency_limit"] is not None else "-"),
                      "yes" if q["is_paused"] else "no", str(q.get("last_polled") or "never"))
    console().print(table)


@queue_app.command("inspect")
@handles_errors
def inspect_queue(name: str, pool: Pool = None, json_out: JsonOut = False) -> None:
    """Show a work queue."""
    q = _jsonable(_client().read_work_queue(name, pool))
    if json_out:
        print_json(q)
        return
    for key in ("name", "work_pool_name", "priority", "concurrency_limit", "is_paused",
                "last_polled", "id"):
        console().print(f"{key}: {q.get(key)}")


def _update(name: str, pool: str | None, message: str, **fields: Any) -> None:
    _client().update_work_queue(name, pool, **fields)
    console().print(message)


@queue_app.command("pause")
@handles_errors
def pause_queue(name: str, pool: Pool = None) -> None:
    """Pause a work queue: its runs wait."""
    _update(name, pool, f"Work queue {name!r} paused.", is_paused=True)


@queue_app.command("resume")
@handles_errors
def resume_queue(name: str, pool: Pool = None) -> None:
    """Resume a work queue."""
    _update(name, pool, f"Work queue {name!r} resumed.", is_paused=False)


@queue_app.command("set-concurrency-limit")
@handles_errors
def set_limit(name: str, limit: Annotated[int, typer.Argument(min=0)], pool: Pool = None) -> None:
    """At most LIMIT runs of the queue at once."""
    _update(name, pool, f"Work queue {name!r}: at most {limit} run(s) at once.",
            concurrency_limit=limit)


@queue_app.command("clear-concurrency-limit")
@handles_errors
def clear_limit(name: str, pool: Pool = None) -> None:
    """Remove a work queue's concurrency limit."""
    _update(name, pool, f"Work queue {name!r}: no concurrency limit.", concurrency_limit=None)


@queue_app.command("delete")
@handles_errors
def delete_queue(name: str, pool: Pool = None) -> None:
    """Delete a work queue."""
    _client().delete_work_queue(name, pool)
    console().print(f"Deleted work queue {name!r}.")


@pool_app.command("create")
@handles_errors
def create_pool(name: str,
                type_: Annotated[str, typer.Option("--type", "-t", help="process, docker or "
                                                   "kubernetes")] = "process",
                limit: Annotated[int | None, typer.Option("--limit", "-l")] = None) -> None:
    """Create a work pool (with its base job template from the infrastructure type)."""
    from ..infrastructure import infrastructure_for_type  # lazy: the infrastructure blocks

    template = infrastructure_for_type(type_).base_job_template()
    _client().create_work_pool(name, type_, base_job_template=template, concurrency_limit=limit)
    console().print(f"Created work pool {name!r} of type {type_!r}. Start a worker: "
                    f"legato worker start --pool {name!r}")


@pool_app.command("ls")
@handles_errors
def ls_pools(json_out: JsonOut = False) -> None:
    """List work pools."""
    pools = _client().read_work_pools()
    if json_out:
        print_json(_jsonable(pools))
        return
    table = Table("Name", "Type", "Limit", "Paused")
    for p in pools:
        table.add_row(p["name"], p["type"], str(p["concurrency_limit"] or "-"),
                      "yes" if p["is_paused"] else "no")
    console().print(table)


@pool_app.command("inspect")
@handles_errors
def inspect_pool(name: str) -> None:
    """Show a work pool."""
    print_json(_jsonable(_client().read_work_pool(name)))


@pool_app.command("pause")
@handles_errors
def pause_pool(name: str) -> None:
    """Pause a work pool: none of its runs are handed out."""
    _client().update_work_pool(name, is_paused=True)
    console().print(f"Work pool {name!r} paused.")


@pool_app.command("resume")
@handles_errors
def resume_pool(name: str) -> None:
    """Resume a work pool."""
    _client().update_work_pool(name, is_paused=False)
    console().print(f"Work pool {name!r} resumed.")


@pool_app.command("set-concurrency-limit")
@handles_errors
def set_pool_limit(name: str, limit: Annotated[int, typer.Argument(min=0)]) -> None:
    """At most LIMIT runs of the pool at once."""
    _client().update_work_pool(name, concurrency_limit=limit)
    console().print(f"Work pool {name!r}: at most {limit} run(s) at once.")


@pool_app.command("delete")
@handles_errors
def delete_pool(name: str) -> None:
    """Delete a work pool and its queues."""
    _client().delete_work_pool(name)
    console().print(f"Deleted work pool {name!r}.")
