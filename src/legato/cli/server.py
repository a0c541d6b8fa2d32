"""`legato server start` (alias `legato orion start`) and `legato server hash-key`."""

from __future__ import annotations

from typing import Annotated

import typer

from ..settings import get_settings
from ._common import console, handles_errors, warn

app = typer.Typer(help="Run the Legato server (the API and the web UI).", no_args_is_help=True)
orion_app = typer.Typer(help="Prefect 2's name for `legato server`.", no_args_is_help=True)


# on SIGTERM, requests in flight get this long to finish: an agent's claim long poll (which
# may wait its whole cap, even for an agent that is gone) must not hold the shutdown up
GRACEFUL_SHUTDOWN_SECONDS = 3


@handles_errors
def _start(host: str | None, port: int | None, allow_unauthenticated: bool, log_level: str,
           access_log: bool, workers: int = 1) -> None:
    # lazy: the server stack (FastAPI, SQLAlchemy), for CLI start-up time
    from ..server.app import check_bind, create_app
    from ..server.security import load_key_digests

    s = get_settings()
    host = host or s.server_api_host
    port = port if port is not None else s.server_api_port
    keys = load_key_digests(s)
    check_bind(host, bool(keys), allow_unauthenticated)
    if not keys:
        warn("No API keys are set (LEGATO_SERVER_API_KEYS): any program that can reach "
             f"{host}:{port} can read and change every run.")
    import uvicorn  # lazy: only the server needs it

    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    out = console()
    out.print(f"Legato server starting on http://{host}:{port}")
    out.print(f"  API:  http://{shown}:{port}/api   (docs: http://{shown}:{port}/api/docs)")
    out.print(f"  Use it:  legato config set LEGATO_API_URL=http://{shown}:{port}/api")
    _tune_gc()
    if workers > 1:
        # each worker process builds the app from the same settings (the environment and
        # profile); background services elect one leader among them, as among replicas
        s.resolved_database_url  # noqa: B018 - a bad setting fails here, once, not per worker
        uvicorn.run("legato.server.app:create_app", factory=True, workers=workers, host=host,
                    port=port, log_level=log_level.lower(), access_log=access_log, lifespan="on",
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
        return
    uvicorn.run(create_app(s), host=host, port=port, log_level=log_level.lower(),
                access_log=access_log, lifespan="on",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)


def _tune_gc() -> None:
    """A server holds many long-lived objects (routes, models, the schema): freeze them out of
    the cyclic collector and collect the young generation less often. A page of 1,000 runs
    otherwise pays a collection pause (p95 ~3x its p50 in bench/scale_api.py)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _start_command(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 4200).")] = None,
    allow_unauthenticated: Annotated[bool, typer.Option(
        "--allow-unauthenticated",
        help="Listen beyond this machine without API keys (a proxy checks access).")] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    workers: Annotated[int, typer.Option(
        min=1, help="Server processes on this port (use more than 1 with PostgreSQL).")] = 1,
) -> None:
    """Start the server: the REST API under /api, on the history database (migrated on start)."""
    _start(host, port, allow_unauthenticated, log_level, access_log, workers)


app.command("start")(_start_command)
orion_app.command("start")(_start_command)


@app.command("hash-key")
def hash_key(key: Annotated[str, typer.Argument(help="The API key to hash.")]) -> None:
    """Print a key's SHA-256 digest, for a LEGATO_SERVER_API_KEYS_FILE line."""
    from ..server.security import hash_key as digest  # lazy, as in _start

    typer.echo(digest(key))
