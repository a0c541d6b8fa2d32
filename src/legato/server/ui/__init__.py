"""The web UI: server-rendered pages at ``/`` (Jinja2 templates, one stylesheet, one small
script for the live parts), served by the API's own process. Nothing to build or install
beyond the package.

Every page is one request whose answer the server renders from a few indexed queries, so a
page view makes one call (plus the cached stylesheet and script), and a running run's page
polls one small fragment for its live tail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ...version import legato_version
from ..security import KeyChecker
from .auth import COOKIE, SESSION_SECONDS, Sessions, safe_next, same_origin
from .render import build_environment

_STATIC = Path(__file__).parent / "static"


class SignInNeeded(Exception):
    """A request without a valid session where keys are required."""


class ForgedRequest(Exception):
    """A POST that did not come from a page of this server."""


def page_context(request: Request, nav: str, **extra: Any) -> dict[str, Any]:
    return {"request": request, "nav": nav, "version": request.app.state.ui_version,
            "signed_in": request.app.state.ui_sessions.required,
            "notice": request.query_params.get("notice"),
            "problem": request.query_params.get("problem"), **extra}


def render(request: Request, template: str, nav: str, status: int = 200,
           **context: Any) -> HTMLResponse:
    env = request.app.state.ui_env
    html = env.get_template(template).render(page_context(request, nav, **context))
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def back(path: str, notice: str | None = None, problem: str | None = None) -> RedirectResponse:
    """After an action: back to a page, with a line saying what happened (303: a GET)."""
    sep = "&" if "?" in path else "?"
    if notice:
        path += f"{sep}notice={quote(notice)}"
    elif problem:
        path += f"{sep}problem={quote(problem)}"
    return RedirectResponse(path, status_code=303)


async def with_form(request: Request, handle: Any, *args: Any) -> Any:
    """Read a POSTed form, then ``handle(request, form, *args)`` in a worker thread (the store
    is synchronous; the event loop must not wait on it)."""
    form = await request.form()
    return await run_in_threadpool(handle, request, form, *args)


def signed_in(request: Request) -> None:
    """Every UI route's dependency: a session where keys are required, and POSTs from our own
    pages only."""
    if not request.app.state.ui_sessions.valid(request.cookies.get(COOKIE)):
        raise SignInNeeded()
    if request.method == "POST" and not same_origin(request.headers):
        raise ForgedRequest()


def mount_ui(api: FastAPI, keys: KeyChecker) -> None:
    # the views import this package's helpers (render, back, with_form): loaded after it
    from . import views_blocks, views_deployments, views_runs, views_work

    api.state.ui_env = build_environment()
    api.state.ui_version = legato_version()
    api.state.ui_sessions = Sessions(keys)
    api.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")

    @api.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        if request.method != "GET" or request.headers.get("x-legato-fragment"):
            return Response("Sign in again: this page's session has ended.", status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @api.exception_handler(ForgedRequest)
    async def _forged(request: Request, exc: ForgedRequest) -> Response:
        return Response("Refused: this action must be sent from a page of this Legato server.",
                        status_code=403)

    auth = APIRouter(include_in_schema=False)

    @auth.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        if not request.app.state.ui_sessions.required:
            return RedirectResponse(safe_next(next), status_code=303)
        return render(request, "login.html", "login", next=safe_next(next), error=None)

    @auth.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await request.form()
        target = safe_next(str(form.get("next") or "/"))
        if not same_origin(request.headers):
            return Response("Refused: sign in from this server's own page.", status_code=403)
        cookie = request.app.state.ui_sessions.sign_in(str(form.get("key") or ""))
        if cookie is None:
            return render(request, "login.html", "login", status=401, next=target,
                          error="That key is not accepted by this server.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @auth.post("/logout")
    def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    api.include_router(auth)
    guarded = [Depends(signed_in)]
    for module in (views_runs, views_deployments, views_blocks, views_work):
        api.include_router(module.router, dependencies=guarded, include_in_schema=False)
