"""Pure ASGI middleware: API keys, request size, and the API version header."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..schemas.api import API_VERSION, API_VERSION_HEADER
from .security import KeyChecker

log = logging.getLogger("legato.server")

_VERSION_HEADER = API_VERSION_HEADER.lower().encode()


async def _send_json(send: Any, status: int, body: dict[str, Any],
                     extra: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (_VERSION_HEADER, API_VERSION.encode()), *extra]})
    await send({"type": "http.response.body", "body": data})


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class LegatoMiddleware:
    """Every request: the API key (when keys are configured; API routes), a bounded body, and
    the answer stamped with the API version. Runs before routing, so an unauthenticated caller
    learns nothing about which API routes exist."""

    def __init__(self, app: Any, *, keys: KeyChecker, max_body: int) -> None:
        self.app = app
        self.keys = keys
        self.max_body = max_body
        self._warned_versions: set[str] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        # the API checks the key of every request; the UI's pages check their session cookie
        # themselves (server/ui/auth.py) and send a browser without one to sign in
        if self.keys.enabled and _is_api(scope.get("path", "")):
            raw = headers.get(b"authorization")
            problem = self.keys.check(raw.decode("latin-1") if raw is not None else None)
            if problem is not None:
                await _send_json(send, 401, {"detail": problem},
                                 [(b"www-authenticate", b"Bearer")])
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
