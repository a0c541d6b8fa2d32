"""Helpers for the history-store tests: a second, independent connection to the history.

Reads through the client flush the writer first, so tests that check what is *in the database*
use :class:`RawDB` instead: its own engine (no pool), its own connection, plain SQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

PG_ADMIN_DSN = os.environ.get(
    "LEGATO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _plain(v: Any) -> Any:
    return str(v) if isinstance(v, uuid.UUID) else v


class RawDB:
    """A separate connection to a history database, for checking what was committed."""

    def __init__(self, url: str) -> None:
        from legato.store.database import normalize_url

        self.url = normalize_url(url)
        self.engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows as dicts; PostgreSQL's uuid values as the strings Legato uses."""
        with self.engine.connect() as conn:
            return [
                {k: _plain(v) for k, v in r.items()}
                for r in conn.execute(sa.text(sql), params).mappings()
            ]

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return _plain(conn.execute(sa.text(sql), params).scalar())

    def count(self, table: str, where: str = "", **params: Any) -> int:
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(self.scalar(sql, **params) or 0)

    def has_table(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table(name)

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def history_url(history: str) -> str:
    """The SQLAlchemy URL of the history the current test uses (SQLite file or PostgreSQL)."""
    from legato.settings import get_settings

    return get_settings().resolved_database_url


@pytest.fixture
def raw(history_url: str) -> Iterator[RawDB]:
    db = RawDB(history_url)
    yield db
    db.close()


@pytest.fixture
def store_db(history_url: str):
    """The Database object Legato itself uses for the current history, schema ready."""
    from legato.settings import get_settings
    from legato.store.database import get_database

    db = get_database(history_url, get_settings().database_busy_timeout)
    db.ensure_ready()
    return db


def _pg_admin():
    import psycopg

    return psycopg.connect(
        PG_ADMIN_DSN.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )


@pytest.fixture
def new_pg_database() -> Iterator[Any]:
    """A factory of brand-new, empty PostgreSQL databases (all dropped after the test)."""
    names: list[str] = []
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")

    def make() -> str:
        name = f"legato_empty_{uuid.uuid4().hex[:10]}"
        with _pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return f"{base}/{name}"

    try:
        yield make
    finally:
        from legato.client.factory import close_clients

        close_clients()
        with _pg_admin() as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_pg_url(new_pg_database: Any) -> str:
    """A brand-new, empty PostgreSQL database of this test's own."""
    return new_pg_database()
