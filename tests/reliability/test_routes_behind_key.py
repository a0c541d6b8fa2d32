"""With API keys set, every route the server's app has - its own and the ones FastAPI and
Starlette add (the docs, the OpenAPI document, Swagger's OAuth2 redirect, static mounts) - answers
nothing without a key: 401 under /api, a redirect to the sign-in page (or 401 for a non-GET) for
the UI. The exceptions are the explicit public list (server/middleware.py: PUBLIC_PATHS,
PUBLIC_PREFIXES).

The routes are walked from ``app.routes`` (into included routers and mounts), not from the
OpenAPI document, so a route that is not documented is checked too."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount
from tests.server.test_auth import K1, K2, assert_no_key, bearer, keyed_app

from legato.server.middleware import PUBLIC_PATHS, PUBLIC_PREFIXES

UUID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def dummy(match: re.Match[str]) -> str:
    convertor = (match.group(2) or ":str")[1:]
    return {"int": "1", "float": "1.5", "path": "some/where", "uuid": UUID}.get(convertor, UUID)


def walk(routes: Sequence[Any], prefix: str = "") -> Iterator[tuple[str, str, set[str]]]:
    """(kind, path, methods) of every route: "http" routes with their methods, "mount" for a
    mounted app without routes of its own (a static folder: any path under it)."""
    for ctx in iter_route_contexts(routes):
        route = ctx.original_route
        path = prefix + (ctx.path or "")
        if isinstance(route, Mount):
            inner = list(route.routes or [])
            if inner:
                yield from walk(inner, path)
            else:
                yield "mount", path, {"GET", "HEAD", "POST"}
        elif ctx.methods:
            yield "http", path, set(ctx.methods)
        else:
            yield "other", path, set()  # a websocket route: there is none yet


def fill(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", dummy, path)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or any(path.startswith(p) for p in PUBLIC_PREFIXES)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Any:
    return keyed_app(monkeypatch, LEGATO_SERVER_API_KEYS=f"{K1}, {K2}")


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://t", follow_redirects=False) as c:
        yield c


def every_call(app: Any) -> list[tuple[str, str]]:
    routes = list(walk(app.app.routes))  # app.app: the FastAPI app inside the middleware
    kinds = {kind for kind, _, _ in routes}
    assert kinds <= {"http", "mount"}, [r for r in routes if r[0] == "other"]
    # the framework's own routes are among those walked (so the walk really reaches them)
    api = app.app
    framework = {api.openapi_url, api.docs_url, api.swagger_ui_oauth2_redirect_url, "/static"}
    assert None not in framework
    assert framework <= {path for _, path, _ in routes}
    calls = []
    for kind, path, methods in routes:
        target = fill(path) + ("/legato.css" if kind == "mount" else "")
        calls += [(method, target) for method in sorted(methods)]
    assert len(calls) > 100, calls
    return calls


def test_every_route_without_a_key_is_refused_but_the_public_list(client: Any, app: Any) -> None:
    refused, public = [], []
    for method, path in every_call(app):
        body = {} if method in ("POST", "PUT", "PATCH") else None
        r = client.request(method, path, json=body)
        assert_no_key(r.text)
        if is_public(path):
            public.append((method, path))
            continue
        if path == "/api" or path.startswith("/api/"):
            ok = r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer"
        elif method in ("GET", "HEAD"):
            ok = r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        else:
            ok = r.status_code == 401
        if not ok:
            refused.append((method, path, r.status_code, r.text[:80]))
        assert r.status_code < 500, (method, path, r.text)
    assert not refused, f"answered without a key: {refused}"
    # the public list is short, and only the sign-in page, the sign-out and static assets
    assert {p for _, p in public} <= {"/login", "/logout", "/static/legato.css"}, public


def test_the_public_list_is_what_it_says(client: Any) -> None:
    assert set(PUBLIC_PATHS) == {"/login", "/logout"}
    assert tuple(PUBLIC_PREFIXES) == ("/static/",)
    assert client.get("/login").status_code == 200
    assert client.get("/static/legato.css").status_code == 200
    # health is not public: a load balancer's check sends a key
    assert client.get("/api/health").status_code == 401
    # nothing outside the list: not a path the app does not have, not one that escapes /static
    for path in ("/no-such-page", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect",
                 "/static/../api/health", "/staticx", "/login/../runs"):
        r = client.get(path)
        assert r.status_code in (303, 401, 404), (path, r.status_code)
        if r.status_code == 303:
            assert r.headers["location"].startswith("/login?next=")


def test_with_a_key_or_a_session_the_framework_routes_answer(client: Any) -> None:
    assert client.get("/api/docs/oauth2-redirect", headers=bearer(K1)).status_code == 200
    assert client.get("/api/docs", headers=bearer(K2)).status_code == 200
    signed = client.post("/login", data={"key": K1, "next": "/"},
                         headers={"Origin": "http://t"})
    assert signed.status_code == 303
    assert client.get("/runs").status_code == 200
