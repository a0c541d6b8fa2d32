"""The server's ASGI application: the REST API under /api (its OpenAPI document at
/api/openapi.json, interactive docs at /api/docs), room for the UI at /, background services."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..exceptions import (
    ConfigurationError,
    ConflictError,
    DatabaseLockedError,
    InvalidStateTransition,
    LegatoError,
    ObjectNotFound,
    StoreError,
)
from ..schemas.api import API_VERSION
from .middleware import LegatoMiddleware
from .security import KeyChecker, load_key_digests

log = logging.getLogger("legato.server")


def _status_for(exc: LegatoError) -> int:
    if isinstance(exc, ObjectNotFound):
        return 404
    if isinstance(exc, (ConflictError, InvalidStateTransition)):
        return 409
    if isinstance(exc, DatabaseLockedError):
        return 503
    if isinstance(exc, StoreError):
        return 503
    return 400


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def create_app(settings: Any = None, *, services: bool | None = None) -> Any:
    """The whole server as one ASGI app (wrapped in the key/size/version middleware)."""
    from ..core.server_core import ServerCore
    from ..settings import get_settings
    from ..store.database import get_database

    s = settings or get_settings()
    keys = KeyChecker(load_key_digests(s))
    db = get_database(s.resolved_database_url, s.database_busy_timeout)
    run_services = s.server_services_enabled if services is None else services

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.ensure_ready()  # migrations run on start
        runner = None
        if run_services:
            runner = _start_services(db, s)
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()

    api = FastAPI(
        title="Legato API",
        version=API_VERSION,
        description="The Legato orchestration server: flows, runs, states, logs and more.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    api.state.db = db
    api.state.core = ServerCore(db, slot_wait=s.concurrency_slot_wait_seconds)
    api.state.settings = s

    from .api import admin, concurrency, flows, logs, runs

    for router in (admin.router, flows.router, runs.flow_runs, runs.task_runs, logs.router,
                   concurrency.router):
        api.include_router(router, prefix="/api")

    @api.exception_handler(LegatoError)
    async def _legato_error(request: Request, exc: LegatoError) -> JSONResponse:
        status = _status_for(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={
            "detail": _validation_message(exc),
            "errors": _jsonable_errors(exc),
        })

    @api.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @api.get("/", include_in_schema=False)
    def _root() -> JSONResponse:
        return JSONResponse({"name": "Legato server", "api": "/api", "docs": "/api/docs",
                             "api_version": API_VERSION})

    return LegatoMiddleware(api, keys=keys, max_body=s.server_max_body_bytes)


def _jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:20]:
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg")),
                    "type": str(err.get("type"))})
    return out


def _start_services(db: Any, settings: Any) -> Any:
    try:
        from .services import default_services
        from .services.base import ServiceRunner
    except ImportError:  # pragma: no cover - the services package is part of the server
        return None
    services = default_services(settings)
    if not services:
        return None
    runner = ServiceRunner(db, services, settings)
    runner.start()
    return runner


def check_bind(host: str, keys_enabled: bool, allow_open: bool) -> str | None:
    """None if the server may listen on ``host``; else why not. Without API keys the server
    listens on this machine only, unless told to open up."""
    local = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    if keys_enabled or local or allow_open:
        return None
    raise ConfigurationError(
        f"Refusing to listen on {host} with no API keys: anyone who can reach it could read and "
        "change every run. Set LEGATO_SERVER_API_KEYS (or LEGATO_SERVER_API_KEYS_FILE), or pass "
        "--allow-unauthenticated if a proxy in front of the server checks access."
    )
