"""The SQL warehouse block: load data frames into a database table and query it.

With no URL it is a DuckDB file in LEGATO_HOME (``warehouse.duckdb``), so a pipeline's "load into
the warehouse" step works offline with nothing to set up. Any SQLAlchemy URL (PostgreSQL,
SQLite, ...) works too::

    from legato.blocks.warehouse import SqlWarehouse

    warehouse = SqlWarehouse()                                  # LEGATO_HOME/warehouse.duckdb
    warehouse.write_dataframe(df, "trips", if_exists="append")  # -> rows written
    warehouse.fetch_all("select count(*) from trips")           # -> [(1050,)]

Statements take named parameters the same way on every database: write ``:name`` in the SQL and
pass ``{"name": value}``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr

from ..exceptions import BlockError
from ..logging import get_logger
from ._extras import require
from .core import Block

__all__ = ["SqlWarehouse"]

logger = get_logger("legato.blocks.warehouse")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TABLE_RE = re.compile(rf"^({_IDENT})(?:\.({_IDENT}))?$")
# ":name" binds, the way SQLAlchemy's text() finds them (not "::casts" nor "\:escaped")
_BIND_RE = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
# one INSERT ... VALUES (...), (...) holds at most this many bound values (PostgreSQL's
# protocol allows 65,535; SQLite 32,766; SQL Server 2,100)
_MAX_PARAMS = {"mssql": 2000}
_DEFAULT_MAX_PARAMS = 30000


def _split_table(table: str) -> tuple[str | None, str]:
    match = _TABLE_RE.match(table) if isinstance(table, str) else None
    if not match:
        raise BlockError(
            f"SqlWarehouse: {table!r} is not a table name: use letters, digits and '_' "
            "(not starting with a digit), optionally after a schema: 'trips' or "
            "'staging.trips'.")
    first, second = match.groups()
    return (first, second) if second else (None, first)


def _quote(*parts: str | None) -> str:
    return ".".join(f'"{p}"' for p in parts if p)


class SqlWarehouse(Block):
    """A SQL database to load data frames into and to query: a DuckDB file in LEGATO_HOME by
    default, or any database SQLAlchemy reaches (PostgreSQL, SQLite, ...)."""

    _block_type_name = "SQL Warehouse"
    _code_example = (
        "from legato.blocks.warehouse import SqlWarehouse\n\n"
        'warehouse = SqlWarehouse.load("BLOCK_NAME")\n'
        'warehouse.write_dataframe(df, "trips")\n'
        'warehouse.fetch_all("select count(*) from trips")'
    )


    url: SecretStr | None = Field(
        default=None, title="Database URL",
        description="A SQLAlchemy URL (dialect+driver://user:password@host:port/database), or "
        "duckdb:///path/to/file.duckdb. Empty: the DuckDB file LEGATO_HOME/warehouse.duckdb.")

    _engine: Any = PrivateAttr(default=None)
    _memory_db: Any = PrivateAttr(default=None)

    # -- the URL -----------------------------------------------------------------------------------
    def resolved_url(self) -> str:
        """The URL in use (the default DuckDB file when ``url`` is empty)."""
        if self.url is not None and self.url.get_secret_value().strip():
            return self.url.get_secret_value().strip()
        from ..settings import get_settings  # lazy: settings read LEGATO_HOME at use time

        return f"duckdb:///{Path(get_settings().home) / 'warehouse.duckdb'}"

    def _parsed(self) -> Any:
        from sqlalchemy.engine import make_url  # lazy: SQLAlchemy costs ~0.1 s to import

        try:
            return make_url(self.resolved_url())
        except Exception:  # noqa: BLE001 - the URL may hold a password: never echo it
            raise BlockError(
                "SqlWarehouse: the url is not a database URL SQLAlchemy can read; write it as "
                "dialect+driver://user:password@host:port/database (for example "
                "postgresql+psycopg://me@db.example.com:5432/analytics) or "
                "duckdb:///path/to/file.duckdb.") from None

    def safe_url(self) -> str:
        """The URL with its password hidden (for messages and logs)."""
        return self._parsed().render_as_string(hide_password=True)

    def is_duckdb(self) -> bool:
        return self._parsed().drivername.split("+")[0] == "duckdb"

    # -- DuckDB --------------------------------------------------------------------------------------
    @contextmanager
    def _duckdb(self) -> Iterator[Any]:
        """A DuckDB connection: the file is opened per call (DuckDB lets one process write a
        file at a time, so holding it would lock other flows out); ``:memory:`` is kept."""
        duckdb = require("duckdb", "duckdb", "SqlWarehouse")
        url = self._parsed()
        database = url.database or ":memory:"
        config = {k: v for k, v in url.query.items() if isinstance(v, str)}
        if database == ":memory:":
            if self._memory_db is None:
                self._memory_db = duckdb.connect(":memory:", config=config)
            yield self._memory_db
            return
        path = Path(database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(path), config=config)
        except duckdb.IOException as exc:
            raise BlockError(
                f"SqlWarehouse: cannot open the DuckDB file {path} ({exc}). DuckDB lets one "
                "process write a file at a time: close the other program using it.") from None
        try:
            yield con
        finally:
            con.close()

    @staticmethod
    def _duck_sql(statement: str, parameters: Any) -> tuple[str, Any]:
        if parameters is None:
            return statement, None
        return _BIND_RE.sub(r"$\1", statement), parameters

    # -- SQLAlchemy ------------------------------------------------------------------------------------
    def _get_engine(self) -> Any:
        if self._engine is None:
            import sqlalchemy as sa  # lazy: SQLAlchemy costs ~0.1 s to import

            url = self._parsed()
            try:
                self._engine = sa.create_engine(url, pool_pre_ping=True)
            except sa.exc.NoSuchModuleError:
                raise BlockError(
                    f"SqlWarehouse: SQLAlchemy has no dialect {url.drivername!r} installed. "
                    "Check the URL's scheme (e.g. postgresql+psycopg://...).") from None
            except ImportError as exc:
                raise BlockError(
                    f"SqlWarehouse: the database driver for {url.drivername!r} is not installed "
                    f"({exc.name or exc}). Install it, e.g. pip install 'legato[postgres]' for "
                    "postgresql+psycopg.") from None
        return self._engine

    @contextmanager
    def _connect(self, begin: bool = True) -> Iterator[Any]:
        import sqlalchemy as sa  # lazy: SQLAlchemy costs ~0.1 s to import

        engine = self._get_engine()
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            password = self._parsed().password
            if password:
                reason = reason.replace(str(password), "***")
            raise BlockError(
                f"SqlWarehouse: cannot connect to {self.safe_url()} ({reason}). Check that the "
                "database is up and reachable, and the URL's host, port, user and "
                "database.") from None
        with conn:
            if begin:
                with conn.begin():
                    yield conn
            else:
                yield conn

    # -- queries ---------------------------------------------------------------------------------------
    def execute(self, statement: str, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]]
                | None = None) -> None:
        """Run one statement (DDL, INSERT, UPDATE, ...) and commit it. ``parameters`` is a dict
        for the statement's ``:name`` binds, or a list of dicts to run it once per dict."""
        many = _check_parameters(parameters)
        if self.is_duckdb():
            with self._duckdb() as con:
                sql, params = self._duck_sql(statement, parameters)
                if many:
                    con.executemany(sql, [dict(p) for p in params])
                else:
                    _done(con.execute(sql, dict(params) if params is not None else None))
            return
        import sqlalchemy as sa  # lazy: SQLAlchemy costs ~0.1 s to import

        with self._connect() as conn:
            if many:
                conn.execute(sa.text(statement), [dict(p) for p in parameters])  # type: ignore[union-attr]
            else:
                conn.execute(sa.text(statement), dict(parameters or {}))

    def fetch_all(self, query: str, parameters: Mapping[str, Any] | None = None
                  ) -> list[tuple[Any, ...]]:
        """Every row the query returns, as tuples."""
        return self._fetch(query, parameters, None)

    def fetch_many(self, query: str, parameters: Mapping[str, Any] | None = None,
                   size: int = 1000) -> list[tuple[Any, ...]]:
        """At most ``size`` rows of the query, as tuples."""
        return self._fetch(query, parameters, size)

    def fetch_one(self, query: str, parameters: Mapping[str, Any] | None = None
                  ) -> tuple[Any, ...] | None:
        """The query's first row as a tuple, or None when it returns no rows."""
        rows = self._fetch(query, parameters, 1)
        return rows[0] if rows else None

    def _fetch(self, query: str, parameters: Any, size: int | None) -> list[tuple[Any, ...]]:
        if _check_parameters(parameters):
            raise BlockError("SqlWarehouse: a query takes one dict of parameters, not a list.")
        if self.is_duckdb():
            with self._duckdb() as con:
                sql, params = self._duck_sql(query, parameters)
                cur = con.execute(sql, dict(params) if params is not None else None)
                rows = cur.fetchall() if size is None else cur.fetchmany(size)
                if size is not None and hasattr(cur, "abort"):
                    cur.abort()  # DuckDB 2 keeps a half-read result open until told
                return [tuple(r) for r in rows]
        import sqlalchemy as sa  # lazy: SQLAlchemy costs ~0.1 s to import

        with self._connect() as conn:
            result = conn.execute(sa.text(query), dict(parameters or {}))
            rows = result.fetchall() if size is None else result.fetchmany(size)
            return [tuple(r) for r in rows]

    # -- loading data frames ---------------------------------------------------------------------------
    def write_dataframe(self, df: Any, table: str,
                        if_exists: Literal["append", "replace", "fail"] = "append",
                        chunksize: int = 500_000) -> int:
        """Write the frame's rows (not its index) into ``table`` (``schema.table`` allowed) and
        return how many were written. A missing table (and schema) is created from the frame's
        columns; an existing one is appended to, replaced, or refused (``if_exists``). The rows
        go ``chunksize`` at a time, all in one transaction: a failure writes none of them."""
        schema, name = _split_table(table)
        if if_exists not in ("append", "replace", "fail"):
            raise BlockError(f"SqlWarehouse: if_exists must be 'append', 'replace' or 'fail', "
                             f"not {if_exists!r}.")
        if not isinstance(chunksize, int) or chunksize < 1:
            raise BlockError(f"SqlWarehouse: chunksize must be a positive whole number of rows, "
                             f"not {chunksize!r}.")
        if not hasattr(df, "iloc") or not hasattr(df, "columns"):
            raise BlockError(f"SqlWarehouse: write_dataframe takes a pandas DataFrame, not "
                             f"{type(df).__name__}.")
        started = time.perf_counter()
        if self.is_duckdb():
            chunks = self._write_duckdb(df, schema, name, if_exists, chunksize)
        else:
            chunks = self._write_sqlalchemy(df, schema, name, if_exists, chunksize)
        logger.info("Wrote %d rows to %s in %d chunk(s) in %.2f s", len(df), table, chunks,
                    time.perf_counter() - started)
        return len(df)

    def _refuse_existing(self, table: str) -> BlockError:
        return BlockError(
            f"SqlWarehouse: the table {table} already exists and if_exists='fail'. Use "
            "if_exists='append' to add the rows, or 'replace' to drop it and start again.")

    def _write_duckdb(self, df: Any, schema: str | None, name: str, if_exists: str,
                      chunksize: int) -> int:
        duckdb = require("duckdb", "duckdb", "SqlWarehouse")
        target = _quote(schema, name)
        label = f"{schema}.{name}" if schema else name
        view = f"__legato_chunk_{id(df):x}"
        with self._duckdb() as con:
            con.begin()
            try:
                exists = con.execute(
                    "select count(*) from information_schema.tables where table_name = $n "
                    "and table_schema = coalesce($s, current_schema())",
                    {"n": name, "s": schema}).fetchall()[0][0] > 0
                if exists and if_exists == "fail":
                    raise self._refuse_existing(label)
                if schema:
                    _done(con.execute(f"create schema if not exists {_quote(schema)}"))
                if exists and if_exists == "replace":
                    _done(con.execute(f"drop table {target}"))
                    exists = False
                chunks = 0
                for start in range(0, max(len(df), 1), chunksize):
                    con.register(view, df.iloc[start:start + chunksize])
                    try:
                        if not exists:
                            _done(con.execute(
                                f'create table {target} as select * from "{view}" limit 0'))
                            exists = True
                        if len(df):
                            _done(con.execute(
                                f'insert into {target} by name select * from "{view}"'))
                            chunks += 1
                            logger.debug("Wrote chunk %d (%d rows) to %s", chunks,
                                         min(chunksize, len(df) - start), label)
                    finally:
                        with suppress(duckdb.Error):  # an aborted transaction refuses it
                            con.unregister(view)
                con.commit()
                return chunks
            except BlockError:
                con.rollback()
                raise
            except duckdb.Error as exc:
                con.rollback()
                with suppress(duckdb.Error):
                    con.unregister(view)
                raise BlockError(
                    f"SqlWarehouse: writing to {label} failed, nothing was written: {exc}"
                ) from None

    def _write_sqlalchemy(self, df: Any, schema: str | None, name: str, if_exists: str,
                          chunksize: int) -> int:
        import sqlalchemy as sa  # lazy: SQLAlchemy costs ~0.1 s to import

        label = f"{schema}.{name}" if schema else name
        engine = self._get_engine()
        max_params = _MAX_PARAMS.get(engine.dialect.name, _DEFAULT_MAX_PARAMS)
        # rows per INSERT statement: within a chunk, under the database's limit of bound values
        per_statement = max(1, min(chunksize, max_params // max(len(df.columns), 1)))
        with self._connect() as conn:
            try:
                if schema and engine.dialect.name == "postgresql":
                    conn.execute(sa.text(f"create schema if not exists {_quote(schema)}"))
                exists = sa.inspect(conn).has_table(name, schema=schema)
                if exists and if_exists == "fail":
                    raise self._refuse_existing(label)
                mode = "replace" if if_exists == "replace" else "append"
                chunks = 0
                for start in range(0, max(len(df), 1), chunksize):
                    part = df.iloc[start:start + chunksize]
                    part.to_sql(name, conn, schema=schema, if_exists=mode, index=False,
                                chunksize=per_statement, method="multi")
                    mode = "append"
                    if len(part):
                        chunks += 1
                        logger.debug("Wrote chunk %d (%d rows) to %s", chunks, len(part), label)
                return chunks
            except Exception as exc:
                # pandas wraps the database's error in its own DatabaseError (quoting the whole
                # INSERT with every value): report the database's own words
                cause = exc if isinstance(exc, sa.exc.DBAPIError) else exc.__cause__
                if not isinstance(cause, sa.exc.DBAPIError):
                    raise
                reason = str(cause.orig or cause).strip().splitlines()[0]
                raise BlockError(
                    f"SqlWarehouse: writing to {label} failed, nothing was written: "
                    f"{reason[:500]}") from None

    # -- lifetime ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections this block holds (it reconnects when used again)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._memory_db is not None:
            with suppress(Exception):
                self._memory_db.close()
            self._memory_db = None

    def __getstate__(self) -> dict[Any, Any]:
        # a copy sent to another process (a task runner, a cache) reconnects on first use
        state = super().__getstate__()
        state["__pydantic_private__"] = {**(state.get("__pydantic_private__") or {}),
                                         "_engine": None, "_memory_db": None}
        return state

    def __enter__(self) -> SqlWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _done(result: Any) -> None:
    """Read a DuckDB statement's result to its end (DuckDB 2 refuses other work on the
    connection while a result is unread)."""
    result.fetchall()


def _check_parameters(parameters: Any) -> bool:
    """True for a list of dicts (run once per dict); a dict or None is one run."""
    if parameters is None or isinstance(parameters, Mapping):
        return False
    if isinstance(parameters, Sequence) and not isinstance(parameters, (str, bytes)) and all(
            isinstance(p, Mapping) for p in parameters):
        return True
    raise BlockError(
        "SqlWarehouse: pass parameters as a dict and write :name in the SQL, for example "
        "fetch_all('select * from trips where vendor = :v', {'v': 2}).")
