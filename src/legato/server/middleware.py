"""Pure ASGI middleware: API keys, request size, and the API version header."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

from starlette.requests import cookie_parser

from ..schemas.api import API_VERSION, API_VERSION_HEADER
from .security import KeyChecker
from .ui.auth import COOKIE, Sessions

log = logging.getLogger("legato.server")

_VERSION_HEADER = API_VERSION_HEADER.lower().encode()


async def _send_json(send: Any, status: int, body: dict[str, Any],
                     extra: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (_VERSION_HEADER, API_VERSION.encode()), *extra]})
    await send({"type": "http.response.body", "body": data})


# With API keys set, the only routes answered without a key or a UI session: the sign-in page,
# signing out, and the UI's stylesheet and script. Everything else - the API, the UI's pages,
# and whatever FastAPI or Starlette add on their own (docs, OpenAPI, static mounts) - is refused:
# 401 under /api; elsewhere a browser is sent to sign in (GET) or answered 401.
PUBLIC_PATHS = ("/login", "/logout")
PUBLIC_PREFIXES = ("/static/",)


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def is_public(path: str) -> bool:
    if ".." in path.split("/"):
        return False  # never a way out of the public list
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _fragment(scope: Any) -> bool:
    return any(k == b"x-legato-fragment" for k, _ in scope.get("headers") or [])


class LegatoMiddleware:
    """Every request: the API key (when keys are configured; API routes), a bounded body, and
    the answer stamped with the API version. Runs before routing, so an unauthenticated caller
    learns nothing about which API routes exist."""

    def __init__(self, app: Any, *, keys: KeyChecker, max_body: int,
                 sessions: Sessions | None = None) -> None:
        self.app = app
        self.keys = keys
        self.sessions = sessions or Sessions(keys)
        self.max_body = max_body
        self._warned_versions: set[str] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        path = scope.get("path", "")
        if self.keys.enabled and not is_public(path):
            # deny by default: the API wants a key; any other route a key or a UI session
            # (the UI's pages check their session again themselves: server/ui/auth.py)
            raw = headers.get(b"authorization")
            problem = self.keys.check(raw.decode("latin-1") if raw is not None else None)
            if problem is not None and (_is_api(path) or not self._has_session(headers)):
                await self._refuse(scope, send, path, problem)
                return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        client_version = headers.get(_VERSION_HEADER)
        if client_version is not None:
            self._check_version(client_version.decode("latin-1"))
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                await _send_json(send, 400, {"detail": "The Content-Length header is not a number."})
                return
            if too_big:
                await _send_json(send, 413, {"detail": self._too_large_message()})
                return
        elif scope.get("method") in ("POST", "PUT", "PATCH"):
            # a body without a length (chunked): read it here, bounded, then hand it on
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    await _send_json(send, 413, {"detail": self._too_large_message()})
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            replayed = False

            async def replay() -> Any:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            receive = replay

        async def stamped_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []),
                                      (_VERSION_HEADER, API_VERSION.encode())]
            await send(message)

        await self.app(scope, receive, stamped_send)

    def _has_session(self, headers: dict[bytes, bytes]) -> bool:
        raw = headers.get(b"cookie")
        if raw is None:
            return False
        return self.sessions.valid(cookie_parser(raw.decode("latin-1")).get(COOKIE))

    async def _refuse(self, scope: Any, send: Any, path: str, problem: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        elif _is_api(path):
            await _send_json(send, 401, {"detail": problem}, [(b"www-authenticate", b"Bearer")])
        elif scope.get("method") in ("GET", "HEAD") and not _fragment(scope):
            query = scope.get("query_string", b"").decode("latin-1")
            target = quote(path + (f"?{query}" if query else ""))
            await send({"type": "http.response.start", "status": 303, "headers": [
                (b"location", f"/login?next={target}".encode("latin-1")),
                (b"content-length", b"0"), (_VERSION_HEADER, API_VERSION.encode())]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _send_json(send, 401, {"detail": "Sign in first: this server requires an API "
                                         "key or a signed-in session (/login)."})

    def _too_large_message(self) -> str:
        return (f"The request body is larger than this server accepts ({self.max_body} bytes); "
                "send less at once, or raise LEGATO_SERVER_MAX_BODY_BYTES on the server.")

    def _check_version(self, version: str) -> None:
        if version == API_VERSION or version in self._warned_versions:
            return
        self._warned_versions.add(version)
        if version.split(".")[:1] != API_VERSION.split(".")[:1]:
            log.warning("A client speaks API version %s; this server speaks %s. Calls may "
                        "fail: upgrade the older side.", version[:32], API_VERSION)
