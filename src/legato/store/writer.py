"""Batched writes to the run history.

The engine hands rows to a :class:`HistoryWriter`; a :class:`WritePolicy` decides when they go to
the database. Rows for one run are coalesced while still in the buffer (a task run created Pending,
then Running, then Completed becomes one INSERT), and each flush is one transaction, so the
database never holds half of a flush.

Policies:

* :class:`BatchedPolicy` (default): a background thread flushes every ``interval`` seconds or
  when the buffer grows past ``max_rows``; a flow call flushes before it returns.
* :class:`DurablePolicy`: every terminal task state is flushed before the engine moves on, so a
  crashed flow loses nothing it finished.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import sqlalchemy as sa

from . import models
from .database import Database


class WritePolicy:
    """Decides when buffered rows are written."""

    name = "base"

    def start(self, writer: HistoryWriter) -> None:  # noqa: B027 - optional hook
        pass

    def after_terminal_state(self, writer: HistoryWriter) -> None:  # noqa: B027
        pass

    def stop(self) -> None:  # noqa: B027
        pass


class DurablePolicy(WritePolicy):
    name = "durable"

    def after_terminal_state(self, writer: HistoryWriter) -> None:
        writer.flush()


class BatchedPolicy(WritePolicy):
    name = "batched"

    def __init__(self, interval: float = 0.5, max_rows: int = 20_000) -> None:
        self.interval = interval
        self.max_rows = max_rows
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._writer: HistoryWriter | None = None

    def start(self, writer: HistoryWriter) -> None:
        self._writer = writer
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="legato-history-writer", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        writer = self._writer
        assert writer is not None
        while not self._stop.wait(self.interval):
            if writer.pending_rows:
                try:
                    writer.flush()
                except Exception:  # noqa: BLE001 - kept buffered; the flow's own flush reports it
                    pass

    def after_terminal_state(self, writer: HistoryWriter) -> None:
        if writer.pending_rows >= self.max_rows:
            writer.flush()

    def stop(self) -> None:
        self._stop.set()


def policy_for(mode: str, interval: float = 0.5) -> WritePolicy:
    if mode == "durable":
        return DurablePolicy()
    return BatchedPolicy(interval=interval)


class _Buffer:
    __slots__ = (
        "flows",
        "flow_run_inserts",
        "flow_run_updates",
        "task_run_inserts",
        "task_run_updates",
        "flow_run_states",
        "task_run_states",
        "logs",
        "cache",
    )

    def __init__(self) -> None:
        self.flows: list[dict[str, Any]] = []
        self.flow_run_inserts: dict[str, dict[str, Any]] = {}
        self.flow_run_updates: dict[str, dict[str, Any]] = {}
        self.task_run_inserts: dict[str, dict[str, Any]] = {}
        self.task_run_updates: dict[str, dict[str, Any]] = {}
        self.flow_run_states: list[dict[str, Any]] = []
        self.task_run_states: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.cache: dict[str, dict[str, Any]] = {}


class HistoryWriter:
    """Buffers history rows and writes them in one transaction per flush."""

    def __init__(self, db: Database, policy: WritePolicy | None = None) -> None:
        self.db = db
        self.policy = policy or BatchedPolicy()
        self._buf = _Buffer()
        self._lock = threading.Lock()  # guards the buffer
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        self.pending_rows = 0
        self._started = False
        self._fast = _FastStatements(db.engine.dialect)

    def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            self.policy.start(self)

    # -- enqueue -----------------------------------------------------------------------------
    def add_flow(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buf.flows.append(row)
            self.pending_rows += 1

    def insert_flow_run(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buf.flow_run_inserts[row["id"]] = row
            self.pending_rows += 1

    def update_flow_run(self, run_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            row = self._buf.flow_run_inserts.get(run_id)
            if row is not None:
                row.update(fields)
            else:
                self._buf.flow_run_updates.setdefault(run_id, {}).update(fields)
                self.pending_rows += 1

    def insert_task_run(self, row: dict[str, Any]) -> None:
        self._ensure_started()
        with self._lock:
            self._buf.task_run_inserts[row["id"]] = row
            self.pending_rows += 1

    def update_task_run(self, run_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            row = self._buf.task_run_inserts.get(run_id)
            if row is not None:
                row.update(fields)
            else:
                self._buf.task_run_updates.setdefault(run_id, {}).update(fields)
                self.pending_rows += 1

    def add_flow_run_state(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buf.flow_run_states.append(row)
            self.pending_rows += 1

    def add_task_run_state(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buf.task_run_states.append(row)
            self.pending_rows += 1

    def add_log(self, row: dict[str, Any]) -> None:
        self._ensure_started()
        with self._lock:
            self._buf.logs.append(row)
            self.pending_rows += 1

    def put_cache(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buf.cache[row["key"]] = row
            self.pending_rows += 1

    def after_terminal_state(self) -> None:
        self.policy.after_terminal_state(self)

    # -- flush ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write everything buffered so far, in one transaction. Raises StoreError on failure,
        with the rows put back so a later flush can still write them."""
        with self._flush_lock:
            with self._lock:
                buf, self._buf = self._buf, _Buffer()
                count, self.pending_rows = self.pending_rows, 0
            if not count:
                return
            try:
                self._write(buf)
            except BaseException:
                self._restore(buf, count)
                raise

    def _restore(self, old: _Buffer, count: int) -> None:
        with self._lock:
            new = self._buf
            old.flows.extend(new.flows)
            old.flow_run_inserts.update(new.flow_run_inserts)
            for k, v in new.flow_run_updates.items():
                old.flow_run_updates.setdefault(k, {}).update(v)
            old.task_run_inserts.update(new.task_run_inserts)
            for k, v in new.task_run_updates.items():
                old.task_run_updates.setdefault(k, {}).update(v)
            old.flow_run_states.extend(new.flow_run_states)
            old.task_run_states.extend(new.task_run_states)
            old.logs.extend(new.logs)
            old.cache.update(new.cache)
            self._buf = old
            self.pending_rows += count

    def _write(self, buf: _Buffer) -> None:
        fast = self._fast
        with self.db.write() as conn:
            if buf.flows:
                fast.insert(conn, models.flow, buf.flows)
            if buf.flow_run_inserts:
                fast.insert(conn, models.flow_run, list(buf.flow_run_inserts.values()))
            if buf.flow_run_updates:
                fast.update(conn, models.flow_run, buf.flow_run_updates)
            if buf.task_run_inserts:
                fast.insert(conn, models.task_run, list(buf.task_run_inserts.values()))
            if buf.task_run_updates:
                fast.update(conn, models.task_run, buf.task_run_updates)
            if buf.flow_run_states:
                fast.insert(conn, models.flow_run_state, buf.flow_run_states)
            if buf.task_run_states:
                fast.insert(conn, models.task_run_state, buf.task_run_states)
            if buf.logs:
                fast.insert(conn, models.log, buf.logs)
            if buf.cache:
                keys = list(buf.cache)
                t = models.cache_entry
                for i in range(0, len(keys), 500):
                    conn.execute(t.delete().where(t.c.key.in_(keys[i : i + 500])))
                fast.insert(conn, t, list(buf.cache.values()))

    def close(self) -> None:
        self.policy.stop()
        self.flush()


_UTC = dt.timezone.utc


def _sqlite_ts(v: Any) -> Any:
    # the text form SQLAlchemy's SQLite DateTime reads back (UTC, naive)
    if v is None:
        return None
    if v.tzinfo is not _UTC:
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
    return json.dumps(v, default=str)


class _FastStatements:
    """Pre-compiled INSERT/UPDATE statements run with the driver's executemany.

    SQLAlchemy's per-row parameter processing costs several times more than SQLite's own insert
    on the hot path, so rows are converted here with one small function per column type
    (timestamps and JSON) and handed to the DBAPI directly. The statements themselves are
    compiled by SQLAlchemy from the table definitions, so they cannot drift from the schema.
    """

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect
        self.sqlite = dialect.name == "sqlite"
        self._cache: dict[Any, tuple[str, list[tuple[str, Any]], bool]] = {}

    def _converter(self, col: sa.Column) -> Any:
        t = col.type
        if isinstance(t, models.Timestamp):
            return _sqlite_ts if self.sqlite else _aware_ts
        if isinstance(t, sa.JSON):
            return _json
        return None

    def _compile(self, key: Any, stmt: Any, table: sa.Table, names_to_cols: dict[str, str]) -> Any:
        compiled = stmt.compile(dialect=self.dialect)
        order = compiled.positiontup
        positional = order is not None
        names = list(order) if positional else list(compiled.binds)
        convs = [(n, self._converter(table.c[names_to_cols[n]])) for n in names]
        entry = (compiled.string, convs, positional)
        self._cache[key] = entry
        return entry

    def _params(self, entry: Any, rows: list[dict[str, Any]]) -> list[Any]:
        _, convs, positional = entry
        if positional:
            return [tuple(c(r[n]) if c else r[n] for n, c in convs) for r in rows]
        return [{n: (c(r[n]) if c else r[n]) for n, c in convs} for r in rows]

    def insert(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
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
