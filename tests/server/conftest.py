"""Server fixtures: the API in-process (fast), and real `legato server start` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

LEGATO = str(Path(sys.executable).parent / "legato")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A `legato server start` subprocess on a free port, with its own environment."""

    def __init__(self, env: dict[str, str], port: int | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def start(self, log_path: Path, timeout: float = 20.0) -> ServerProcess:
        self.log_path = log_path
        out = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [LEGATO, "server", "start", "--port", str(self.port), *self.args],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        headers = {}
        if self.env.get("LEGATO_SERVER_API_KEYS"):
            headers["Authorization"] = "Bearer " + self.env["LEGATO_SERVER_API_KEYS"].split(",")[0]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {log_path.read_text()}")
            try:
                if httpx.get(f"{self.api_url}/health", headers=headers, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"the server did not answer in {timeout} s: {log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path else ""


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()}
    env.update(extra)
    return env


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Start real servers on the test's history (stopped at the end of the test)."""
    started: list[ServerProcess] = []

    def start(*args: str, port: int | None = None, **env: str) -> ServerProcess:
        srv = ServerProcess(server_env(**env), port=port, args=args)
        started.append(srv)
        return srv.start(tmp_path / f"server-{len(started)}.log")

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def server(history: str, start_server: Any) -> ServerProcess:
    """One real server on the test's history (SQLite, then PostgreSQL)."""
    return start_server()


@pytest.fixture
def api(history: str) -> Iterator[Any]:
    """The API in-process (FastAPI's test client over the ASGI app), on the test's history."""
    from fastapi.testclient import TestClient

    from legato.server.app import create_app
    from legato.settings import get_settings

    with TestClient(create_app(get_settings(), services=False), base_url="http://t/api") as client:
        yield client
