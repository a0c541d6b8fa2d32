"""Opening the run history: engines, SQLite pragmas, migrations on first use, error translation.

A fresh database is created from the table definitions and stamped with the Alembic head in one
transaction (Alembic itself is not imported on that path: it costs ~0.4 s). A database at an older
revision is upgraded with Alembic. Either way the work happens under a lock (``BEGIN IMMEDIATE`` on
SQLite, an advisory lock on PostgreSQL), so processes starting together do not race.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from ..exceptions import (
    ConfigurationError,
    ConflictError,
    DatabaseCorruptError,
    DatabaseLockedError,
    HomeNotWritableError,
    StoreError,
)
from . import models

#: The newest migration's revision. A test checks it matches the migrations folder.
HEAD_REVISION = "0007_run_process"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_engines: dict[tuple[str, float], Database] = {}
_engines_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """Accept Prefect-style async URLs; the history engine is synchronous (psycopg 3)."""
    if url.startswith("postgresql+asyncpg://"):
        return "postgresql+psycopg://" + url[len("postgresql+asyncpg://") :]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    return url


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return "<database URL>"


#: words of driver errors that mean "could not reach or log in to the database server"
_CONNECT_FAILURES = (
    "connection refused",
    "could not connect",
    "connection failed",
    "failed to resolve host",
    "could not translate host name",
    "name or service not known",
    "timeout expired",
    "server closed the connection",
    "connection is closed",
)


class Database:
    """One engine plus what we know about the database behind it."""

    def __init__(self, url: str, busy_timeout: float = 30.0) -> None:
        self.url = normalize_url(url)
        self.busy_timeout = busy_timeout
        self.is_sqlite = self.url.startswith("sqlite")
        self.display = describe_url(self.url)
        self.path: Path | None = None
        if self.is_sqlite:
            db = sa.engine.make_url(self.url).database
            if db and db != ":memory:":
                self.path = Path(db)
        self.engine = self._create_engine()
        self._ready = False
        self._ready_lock = threading.Lock()
        self._on_open: dict[str, Callable[[], None]] = {}  # hooks waiting for the first use
        self._opened: set[str] = set()  # hooks' keys that ran (or wait)

    # -- engine ------------------------------------------------------------------------------
    def _create_engine(self) -> sa.Engine:
        if self.is_sqlite:
            if self.path is not None:
                _ensure_dir(self.path.parent)
            engine = sa.create_engine(
                self.url,
                connect_args={"timeout": self.busy_timeout, "check_same_thread": False},
                pool_size=5,
                max_overflow=10,
                poolclass=sa.pool.QueuePool if self.path is not None else sa.pool.StaticPool,
            )
            busy_ms = int(self.busy_timeout * 1000)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                # we issue BEGIN ourselves (below): pysqlite's implicit BEGIN is DEFERRED, and a
                # deferred transaction that later writes can fail at once with "locked".
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
                _set_wal(cur, busy_ms / 1000)
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.execute("PRAGMA foreign_keys = ON")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: sa.Connection) -> None:
                if conn.get_execution_options().get("legato_write"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.exec_driver_sql("BEGIN")

            return engine
        try:
            return sa.create_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"The database driver for {self.display} is not installed ({exc.name}). "
                "Install it with: pip install 'legato[postgres]'"
            ) from None
        except sa_exc.ArgumentError as exc:
            raise StoreError(f"LEGATO_DATABASE_URL {self.display!r} is not usable: {exc}") from None

    # -- connections ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite), committed on exit."""
        self.ensure_ready()
        with self.translate_errors():
            with self.engine.connect().execution_options(legato_write=True) as conn:
                with conn.begin():
                    yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        self.ensure_ready()
        with self.translate_errors():
            with self.engine.connect() as conn:
                yield conn

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        try:
            yield
        except sa_exc.OperationalError as exc:
            raise self._translate(exc) from None
        except sa_exc.DatabaseError as exc:
            raise self._translate(exc) from None
        except sqlite3.DatabaseError as exc:  # raised outside SQLAlchemy's wrapping (pragmas)
            raise self._translate(exc) from None

    def _translate(self, exc: BaseException) -> StoreError:
        text = str(getattr(exc, "orig", exc) or exc)
        where = str(self.path) if self.path else self.display
        low = text.lower()
        if "database is locked" in low or "database table is locked" in low:
            return DatabaseLockedError(
                f"The run history {where} is locked by another process and stayed locked for "
                f"{self.busy_timeout:g} s. Close the program holding it (a DB browser, a stuck "
                "script) or raise LEGATO_DATABASE_BUSY_TIMEOUT. Nothing was written."
            )
        if "file is not a database" in low or "malformed" in low or "not a database" in low:
            return DatabaseCorruptError(
                f"The run history {where} is not a readable SQLite database ({text}). Move it "
                "aside (e.g. `mv legato.db legato.db.broken`) and Legato will start a new one, "
                "or point LEGATO_DATABASE_URL at another database."
            )
        if self.is_sqlite and (
            "unable to open database file" in low or "readonly" in low or "read-only" in low
        ):
            return HomeNotWritableError(
                f"Cannot write the run history {where} ({text}). Make its folder writable or "
                "set LEGATO_HOME to a folder you can write."
            )
        if isinstance(exc, sa_exc.IntegrityError):
            return ConflictError(
                f"The history refused the data: {_first_line(text)}. A run with that id may "
                "exist already, or a run it points at may not exist."
            )
        if any(w in low for w in _CONNECT_FAILURES):
            return StoreError(
                f"Cannot connect to the run history database {self.display}: {text.strip()}. "
                "Check that the server is running and LEGATO_DATABASE_URL is right."
            )
        return StoreError(f"The run history database {where} refused an operation: {text.strip()}")

    # -- schema --------------------------------------------------------------------------------
    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with self.translate_errors():
                migrate(self)
            self._ready = True
            hooks, self._on_open = list(self._on_open.values()), {}
        for hook in hooks:
            hook()

    def on_open(self, key: str, hook: Callable[[], None]) -> None:
        """Call ``hook`` once, when this process first uses the database (now if it has
        already); a second hook of the same ``key`` is not added."""
        with self._ready_lock:
            if key in self._opened:
                return
            self._opened.add(key)
            if not self._ready:
                self._on_open[key] = hook
                return
        hook()

    def dispose(self) -> None:
        self.engine.dispose()


def _set_wal(cur: Any, timeout: float) -> None:
    """Switch a SQLite file to WAL. On a fresh file that other processes are opening at the same
    moment, the switch can answer "database is locked" at once, without waiting on the busy
    timeout (it needs the file to itself): try again until the timeout."""
    import time

    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeNotWritableError(
            f"Cannot create the folder {path} for the run history ({exc.strerror}). Set "
            "LEGATO_HOME to a folder you can write, or LEGATO_DATABASE_URL to another database."
        ) from None
    import os

    if not os.access(path, os.W_OK):
        raise HomeNotWritableError(
            f"The folder {path} is not writable, so the run history cannot be kept there. Set "
            "LEGATO_HOME to a folder you can write, or LEGATO_DATABASE_URL to another database."
        )


def _current_revision(conn: sa.Connection) -> str | None:
    insp = sa.inspect(conn)
    if not insp.has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _known_revisions() -> set[str]:
    """The revisions this Legato's migrations define (their files' names)."""
    folder = Path(__file__).parent / "migrations" / "versions"
    return {p.stem for p in folder.glob("0*.py")}


def migrate(db: Database) -> None:
    """Bring the schema to HEAD_REVISION: create it fresh, or upgrade it with Alembic."""
    if db.is_sqlite and db.path is not None:
        # cheap check without a write lock (a plain BEGIN: WAL readers never wait for a
        # writer): most opens find the schema current
        with db.engine.connect() as conn, conn.begin():
            try:
                rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa_exc.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                rev = None
        if rev == HEAD_REVISION:
            return
    with db.engine.connect().execution_options(legato_write=True) as conn:
        with conn.begin():
            if not db.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7415001)"))
            rev = _current_revision(conn)
            if rev == HEAD_REVISION:
                return
            if rev is not None and rev not in _known_revisions():
                raise ConfigurationError(
                    f"The history database {describe_url(db.url)} was upgraded by a newer "
                    f"Legato (schema revision {rev!r}; this Legato knows up to "
                    f"{HEAD_REVISION!r}). Upgrade Legato here (pip install -U legato), or use "
                    "another database.")
            insp = sa.inspect(conn)
            if rev is None and not insp.has_table("flow_run"):
                models.metadata.create_all(conn)
                if insp.has_table("alembic_version"):
                    # left empty by `alembic downgrade base`
                    conn.execute(sa.text("DELETE FROM alembic_version"))
                else:
                    conn.execute(
                        sa.text(
                            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
                        )
                    )
                conn.execute(
                    sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                    {"v": HEAD_REVISION},
                )
                return
            run_alembic_upgrade(conn)


def alembic_config(conn: sa.Connection | None = None) -> Any:
    from alembic.config import Config  # lazy: alembic costs ~0.4 s to import

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def run_alembic_upgrade(conn: sa.Connection, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(conn), revision)


def get_database(url: str, busy_timeout: float = 30.0) -> Database:
    key = (normalize_url(url), busy_timeout)
    db = _engines.get(key)
    if db is None:
        with _engines_lock:
            db = _engines.get(key)
            if db is None:
                db = Database(url, busy_timeout)
                _engines[key] = db
    return db


def dispose_all() -> None:
    with _engines_lock:
        for db in _engines.values():
            db.dispose()
        _engines.clear()
