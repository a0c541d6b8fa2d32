"""Pre-compiled INSERT/UPDATE statements for the history writer, and the per-column value
converters they use (UTC timestamps, JSON)."""

from __future__ import annotations

import datetime as dt
import json
import operator
from typing import Any

import sqlalchemy as sa

from . import models

_UTC = dt.timezone.utc
_TS = "timestamp"
_JSON = "json"


def _sqlite_ts(v: Any) -> Any:
    # the text form SQLAlchemy's SQLite DateTime reads back (UTC, naive)
    if v is None:
        return None
    if v.tzinfo is not _UTC:
        if v.tzinfo is None:  # astimezone() would silently take it as local time
            raise ValueError(f"naive datetime {v!r} given to the history; use UTC-aware times")
        v = v.astimezone(_UTC)
    return v.isoformat(" ", "microseconds")[:26]  # drop the "+00:00"


def _aware_ts(v: Any) -> Any:
    if v is not None and v.tzinfo is None:
        raise ValueError(f"naive datetime {v!r} given to the history; use UTC-aware times")
    return v


def _json(v: Any) -> Any:
    if v is None:
        return None
    if not v:
        return "{}" if type(v) is dict else "[]" if type(v) is list else json.dumps(v)
    # NaN/Infinity are not JSON (PostgreSQL and SQLite's JSON functions refuse them): raise,
    # and the flush cleans them (see _sanitize) and retries
    return json.dumps(v, default=str, allow_nan=False)


class FastStatements:
    """Pre-compiled INSERT/UPDATE statements run with the driver's executemany.

    SQLAlchemy's per-row parameter processing costs several times more than SQLite's own insert
    on the hot path, so rows are converted here with one small function per column type
    (timestamps and JSON) and handed to the DBAPI directly. The statements themselves are
    compiled by SQLAlchemy from the table definitions, so they cannot drift from the schema.
    """

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect
        self.sqlite = dialect.name == "sqlite"
        self._cache: dict[Any, Any] = {}
        # per flush: id(datetime) -> its SQLite text. One task run's few timestamps fill ten
        # columns (created = updated = expected start = the Pending time, ...), and formatting
        # a datetime costs more than the rest of its row. The rows keep the datetimes alive
        # for the whole flush, so their ids cannot be reused meanwhile.
        self._ts_memo: dict[int, str] = {}

    def begin_flush(self) -> None:
        self._ts_memo = {}

    def _kind(self, col: sa.Column) -> Any:
        t = col.type
        if isinstance(t, models.Timestamp):
            return _TS
        if isinstance(t, (sa.JSON, models.JSONDoc)):
            return _JSON
        return None

    def _compile(self, key: Any, stmt: Any, table: sa.Table, names_to_cols: dict[str, str]) -> Any:
        compiled = stmt.compile(dialect=self.dialect)
        order = compiled.positiontup
        positional = order is not None
        names = tuple(order) if positional else tuple(compiled.binds)
        kinds = [self._kind(table.c[names_to_cols[n]]) for n in names]
        convs = tuple((i, k) for i, k in enumerate(kinds) if k is not None)
        if len(names) == 1:
            only = names[0]

            def get(r: dict[str, Any]) -> tuple[Any, ...]:
                return (r[only],)
        else:
            get = operator.itemgetter(*names)
        entry = (compiled.string, names, positional, get, convs)
        self._cache[key] = entry
        return entry

    def _params(self, entry: Any, rows: list[dict[str, Any]]) -> list[Any]:
        _, names, positional, get, convs = entry
        if not convs:
            if positional:
                return [get(r) for r in rows]
            return [dict(zip(names, get(r), strict=True)) for r in rows]
        out: list[Any] = []
        append = out.append
        memo = self._ts_memo
        sqlite = self.sqlite
        for r in rows:
            vals = list(get(r))
            for i, kind in convs:
                v = vals[i]
                if v is None:
                    continue
                if kind is _TS:
                    if sqlite:
                        s = memo.get(id(v))
                        if s is None:
                            s = memo[id(v)] = _sqlite_ts(v)
                        vals[i] = s
                    elif v.tzinfo is None:
                        _aware_ts(v)  # raises
                else:
                    vals[i] = _json(v)
            append(tuple(vals) if positional else dict(zip(names, vals, strict=True)))
        return out

    def insert(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        optional = table.info.get("optional_columns")
        if optional:  # columns a row may leave out (NULL): a deployment's run has them
            rows = [r if optional <= r.keys() else {**dict.fromkeys(optional), **r} for r in rows]
        key = ("insert", table.name)
        entry = self._cache.get(key)
        if entry is None:
            cols = {c.key: c.key for c in table.c}
            stmt = table.insert().values({c.key: sa.bindparam(c.key) for c in table.c})
            entry = self._compile(key, stmt, table, cols)
        conn.exec_driver_sql(entry[0], self._params(entry, rows))

    def update(
        self, conn: sa.Connection, table: sa.Table, updates: dict[str, dict[str, Any]]
    ) -> None:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for run_id, fields in updates.items():
            keys = tuple(sorted(fields))
            row = {f"v_{k}": v for k, v in fields.items()}
            row["b_id"] = run_id
            groups.setdefault(keys, []).append(row)
        for keys, rows in groups.items():
            key = ("update", table.name, keys)
            entry = self._cache.get(key)
            if entry is None:
                stmt = (
                    table.update()
                    .where(table.c.id == sa.bindparam("b_id"))
                    .values({k: sa.bindparam(f"v_{k}") for k in keys})
                )
                names = {f"v_{k}": k for k in keys}
                names["b_id"] = "id"
                entry = self._compile(key, stmt, table, names)
            conn.exec_driver_sql(entry[0], self._params(entry, rows))
