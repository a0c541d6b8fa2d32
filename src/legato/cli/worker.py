"""`legato agent start` (Prefect 2) and `legato worker start` (Prefect 3): run deployments'
flow runs from work queues / a work pool until stopped (Ctrl-C hands back what was claimed and
not started; started flow runs finish in their own processes)."""

from __future__ import annotations

import os
import signal
import socket
from typing import Annotated, Any

import typer

from ._common import console, handles_errors

agent_app = typer.Typer(help="Agents: poll work queues and run their flow runs.",
                        no_args_is_help=True)
worker_app = typer.Typer(help="Workers: poll a work pool and run its flow runs.",
                         no_args_is_help=True)


def _serve(runner: Any) -> None:
    from ..workers.runner import StopWaiting  # lazy: the runner loads the infrastructure blocks

    def stop(signum: int, frame: Any) -> None:
        console().print("Stopping: no new flow runs are claimed.")
        runner.stop()
        if runner.waiting:  # in a long poll (up to its cap): end it now
            raise StopWaiting()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        runner.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _runner(name: str | None, pool: str | None, queues: list[str] | None, limit: int | None,
            kind: str) -> Any:
    # lazy: the client, the store and the infrastructure blocks load only here
    from ..client.factory import get_client
    from ..settings import get_settings
    from ..workers import Runner

    s = get_settings()
    name = name or f"{kind}-{socket.gethostname()}-{os.getpid()}"
    return Runner(get_client(s), name, pool_name=pool, queue_names=queues, limit=limit,
                  api_url=s.api_url, api_key=s.api_key)


@agent_app.command("start")
@handles_errors
def agent_start(
    queue: Annotated[list[str], typer.Option("--work-queue", "-q", help="A queue to poll "
                                             "(repeatable).")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Flow runs at once.")] = None,
) -> None:
    """Poll work queues of the agents' pool and run their flow runs."""
    runner = _runner(name, None, queue, limit, "agent")
    console().print(f"Agent {runner.name!r} started, polling queue(s) {', '.join(queue)}.")
    _serve(runner)


@worker_app.command("start")
@handles_errors
def worker_start(
    pool: Annotated[str, typer.Option("--pool", "-p", help="The work pool to poll.")],
    queue: Annotated[list[str] | None, typer.Option("--work-queue", "-q", help="Only these "
                                                    "queues of the pool.")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Flow runs at once.")] = None,
) -> None:
    """Poll a work pool and run its flow runs."""
    runner = _runner(name, pool, queue, limit, "worker")
    console().print(f"Worker {runner.name!r} started, polling pool {pool!r}.")
    _serve(runner)
