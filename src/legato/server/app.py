"""The server's ASGI application: the REST API under /api (its OpenAPI document at
/api/openapi.json, interactive docs at /api/docs), the web UI at / (server/ui), background
services."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..exceptions import (
    BlockError,
    ConfigurationError,
    ConflictError,
    DatabaseLockedError,
    InvalidStateTransition,
    LegatoError,
    ObjectNotFound,
    ParameterError,
    StoreError,
)
from ..schemas.api import API_VERSION
from .middleware import LegatoMiddleware
from .security import KeyChecker, load_key_digests

log = logging.getLogger("legato.server")


def _status_for(exc: LegatoError) -> int:
    if isinstance(exc, ObjectNotFound):
        return 404
    if isinstance(exc, (BlockError, ParameterError, ValueError)):
        return 422  # the request's content is wrong (a schedule, a parameter, a document)
    if isinstance(exc, ConfigurationError):
        return 500
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
        if err.get("type") == "json_invalid":  # loc is ("body", character offset)
            why = (err.get("ctx") or {}).get("error") or "malformed"
            at = err.get("loc", ("body", "?"))[-1]
            parts.append(f"The request body is not valid JSON: {why} (at character {at}).")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def create_app(settings: Any = None, *, services: bool | None = None) -> Any:
    """The whole server as one ASGI app (wrapped in the key/size/version middleware)."""
    from ..blocks.builtin import register_builtin_block_types
    from ..core.blocks import BlockCore
    from ..core.run_control import Deployments
    from ..core.server_core import ServerCore
    from ..settings import get_settings
    from ..store.database import get_database
    from ..store.encryption import get_cipher

    s = settings or get_settings()
    keys = KeyChecker(load_key_digests(s))
    db = get_database(s.resolved_database_url, s.database_busy_timeout)
    run_services = s.server_services_enabled if services is None else services

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.ensure_ready()  # migrations run on start
        register_builtin_block_types(api.state.blocks)
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
        # FastAPI's default is /docs/oauth2-redirect, outside /api: keep every API page under it
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        redoc_url=None,
        lifespan=lifespan,
    )
    api.state.db = db
    api.state.core = ServerCore(db, slot_wait=s.concurrency_slot_wait_seconds)
    api.state.settings = s
    api.state.blocks = BlockCore(db, get_cipher(s))
    api.state.deployments = Deployments(db, slot_wait=s.concurrency_slot_wait_seconds)

    from .api import admin, blocks, concurrency, deployments, flows, logs, notifications, runs

    api.state.runs_changed = deployments.RunsChanged()
    for router in (admin.router, flows.router, runs.flow_runs, runs.task_runs, logs.router,
                   concurrency.router, blocks.router, deployments.router,
                   notifications.router):
        api.include_router(router, prefix="/api")

    @api.exception_handler(LegatoError)
    async def _legato_error(request: Request, exc: LegatoError) -> JSONResponse:
        status = _status_for(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        # ``error``: the exception's class, so the client raises the same one
        return JSONResponse(status_code=status, content={"detail": str(exc),
                                                         "error": type(exc).__name__})

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={
            "detail": _validation_message(exc),
            "errors": _jsonable_errors(exc),
        })

    @api.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @api.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Any:
        unreadable = _unreadable_body(exc)
        if unreadable is not None:
            return JSONResponse(status_code=422, content={"detail": unreadable})
        return await http_exception_handler(request, exc)

    _document_errors(api, keys.enabled)

    from .ui import mount_ui

    mount_ui(api, keys)  # the web UI at /

    return LegatoMiddleware(api, keys=keys, max_body=s.server_max_body_bytes,
                            sessions=api.state.ui_sessions)


def _unreadable_body(exc: HTTPException) -> str | None:
    """FastAPI answers a body it cannot decode at all (not UTF-8, nested past Python's
    recursion limit) with a bare 400 "There was an error parsing the body"; say what is wrong,
    as for any other malformed JSON (422)."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, UnicodeDecodeError):
        return (f"The request body is not valid JSON: it is not UTF-8 text ({cause.reason} at "
                f"byte {cause.start}).")
    if isinstance(cause, RecursionError):
        return "The request body is not valid JSON this server accepts: it is nested too deeply."
    return f"The request body could not be read as JSON ({type(cause).__name__})."


_ERROR = {"$ref": "#/components/schemas/ErrorBody"}


def _document_errors(api: FastAPI, keys_enabled: bool) -> None:
    """Add to the OpenAPI document the error answers every route may give (the key check, the
    size limit, validation, a busy database), all with the one error body; the routes document
    their own 404s and 409s."""
    from ..schemas.api import ErrorBody

    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        error = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in error.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas.setdefault("ErrorBody", error)
        # FastAPI describes its own validation error body; this server answers with ErrorBody
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        if keys_enabled:
            components["securitySchemes"] = {"APIKey": {
                "type": "http", "scheme": "bearer",
                "description": "A key of LEGATO_SERVER_API_KEYS: 'Authorization: Bearer KEY'."}}
            schema["security"] = [{"APIKey": []}]
        for operations in schema.get("paths", {}).values():
            for op in operations.values():
                responses = op.setdefault("responses", {})
                has_body = "requestBody" in op
                generic = {
                    "400": "The request is malformed (e.g. a Content-Length that is no number).",
                    "401": "An API key is needed and was missing or not accepted.",
                    "503": "The history database is busy or unreachable: try again shortly.",
                }
                if has_body or op.get("parameters"):
                    generic["422"] = ("Invalid input: malformed JSON, or a field out of bounds; "
                                      "`detail` names it.")
                if has_body:
                    generic["413"] = "The request body is larger than the server accepts."
                for code, description in generic.items():
                    responses[code] = {"description": description,
                                       "content": {"application/json": {"schema": _ERROR}}}
        return schema

    api.openapi = openapi  # type: ignore[method-assign]


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
