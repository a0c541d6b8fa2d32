"""Shared fixtures: every test gets its own LEGATO_HOME; history tests run on SQLite and on
PostgreSQL (a database created for this test session and dropped after it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_DSN = os.environ.get("LEGATO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True)
def legato_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh LEGATO_HOME (and no stray LEGATO_* settings from the developer's shell)."""
    from legato import redaction
    from legato.client.factory import close_clients
    from legato.settings import reset_settings_cache

    for var in list(os.environ):
        if var.startswith("LEGATO_") and not var.startswith("LEGATO_TEST_"):
            monkeypatch.delenv(var)
    home = tmp_path / "legato-home"
    monkeypatch.setenv("LEGATO_HOME", str(home))
    monkeypatch.setenv("LEGATO_LOGGING_TO_CONSOLE", "false")
    reset_settings_cache()
    yield home
    close_clients()
    reset_settings_cache()
    redaction._forget_all()  # the secrets a test's blocks registered are that test's alone


def _pg_admin():
    import psycopg

    return psycopg.connect(PG_ADMIN_DSN.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, dropped at the end."""
    name = f"legato_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = _pg_admin()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_DSN} ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    from legato.client.factory import close_clients

    close_clients()
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate(url: str) -> None:
    import sqlalchemy as sa

    from legato.store import models

    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            names = ", ".join(t.name for t in models.metadata.sorted_tables)
            insp = sa.inspect(conn)
            if insp.has_table("flow_run"):
                conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    finally:
        eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def history(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, legato_home: Path) -> Iterator[str]:
    """Run the test once on the default SQLite history and once on PostgreSQL.

    Yields the backend's name; LEGATO_DATABASE_URL is set for the PostgreSQL run."""
    from legato.settings import reset_settings_cache

    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        _truncate(url)
        monkeypatch.setenv("LEGATO_DATABASE_URL", url)
        reset_settings_cache()
    yield request.param


class ThreadServer:
    """A real uvicorn server on a free loopback port, in a thread of this process, over the
    test's history (for running the engine's tests through the HTTP client)."""

    def __init__(self) -> None:
        import socket
        import threading

        import uvicorn

        from legato.server.app import create_app
        from legato.settings import get_settings

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(create_app(get_settings(), services=False), host="127.0.0.1",
                                port=self.port, log_level="error", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the in-thread server did not start")
            time.sleep(0.005)
        self.api_url = f"http://127.0.0.1:{self.port}/api"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "server"])
def history_or_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                      legato_home: Path) -> Iterator[str]:
    """Like ``history``, and a third time through a real server (LEGATO_API_URL set: the HTTP
    client), so one test shows the same behaviour through both doors."""
    from legato.client.factory import close_clients
    from legato.settings import reset_settings_cache

    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        _truncate(url)
        monkeypatch.setenv("LEGATO_DATABASE_URL", url)
        reset_settings_cache()
    server = None
    if request.param == "server":
        server = ThreadServer()
        monkeypatch.setenv("LEGATO_API_URL", server.api_url)
        reset_settings_cache()
    yield request.param
    if server is not None:
        close_clients()  # flush the HTTP client while its server still answers
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The server-outage tests wait out outages of up to 5 minutes: they go first, so that
    ``-n 2`` runs the rest of the suite beside them instead of after them (xdist hands the
    first tests out in turn, one to each worker)."""
    items.sort(key=lambda item: "reliability/test_server_outage.py" not in item.nodeid)
