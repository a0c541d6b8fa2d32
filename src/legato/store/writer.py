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

import threading
from typing import TYPE_CHECKING, Any

from ..exceptions import DatabaseCorruptError, DatabaseLockedError, HomeNotWritableError

if TYPE_CHECKING:
    from .database import Database
    from .statements import FastStatements

# The database modules (SQLAlchemy: ~0.25 s to import) are loaded by the writers that write to a
# database; the HTTP client's writer, which sends its batches to a server, never needs them.


class WritePolicy:
    """Decides when buffered rows are written."""

    name = "base"
    #: how often a background thread flushes (None: only when the engine asks)
    background_interval: float | None = None

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
        self.interval = self.background_interval = interval
        self.max_rows = max_rows
        self._threshold = max_rows
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
        # a full buffer is written by the engine's thread (back-pressure); if that fails (the
        # history locked by another program for a while), the rows stay buffered and the flow
        # goes on: its final flush reports the problem. Retried after the buffer doubles.
        if writer.pending_rows >= self._threshold:
            try:
                writer.flush()
            except Exception:  # noqa: BLE001 - kept buffered; the flow's own flush reports it
                self._threshold = 2 * max(writer.pending_rows, self.max_rows)
            else:
                self._threshold = self.max_rows

    def stop(self) -> None:
        self._stop.set()


def policy_for(mode: str, interval: float = 0.5) -> WritePolicy:
    if mode == "durable":
        return DurablePolicy()
    return BatchedPolicy(interval=interval)


class Buffer:
    """Rows waiting to be written, by table (coalesced per run). The HTTP client sends one
    as a batch (:meth:`to_payload`); the server writes it back with the same writer."""

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

    def to_payload(self) -> dict[str, Any]:
        """The buffer as the API's HistoryBatch (JSON-ready but for datetimes)."""
        return {
            "flows": self.flows,
            "flow_run_inserts": list(self.flow_run_inserts.values()),
            "flow_run_updates": self.flow_run_updates,
            "task_run_inserts": list(self.task_run_inserts.values()),
            "task_run_updates": self.task_run_updates,
            "flow_run_states": self.flow_run_states,
            "task_run_states": self.task_run_states,
            "logs": self.logs,
            "cache": list(self.cache.values()),
        }

    def row_count(self) -> int:
        return (
            len(self.flows) + len(self.flow_run_inserts) + len(self.flow_run_updates)
            + len(self.task_run_inserts) + len(self.task_run_updates)
            + len(self.flow_run_states) + len(self.task_run_states) + len(self.logs)
            + len(self.cache)
        )


class HistoryWriter:
    """Buffers history rows and writes them in one transaction per flush."""

    def __init__(self, db: Database | None, policy: WritePolicy | None = None) -> None:
        self.db = db
        self.policy = policy or BatchedPolicy()
        self._buf = Buffer()
        self._lock = threading.Lock()  # guards the buffer
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        self.pending_rows = 0
        self._started = False
        # (the HTTP client's writer has no database: it sends its batches to the server)
        self._fast: FastStatements | None = None
        if db is not None:
            from .statements import FastStatements

            self._fast = FastStatements(db.engine.dialect)

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
                return
            upd = self._buf.flow_run_updates.get(run_id)
            if upd is not None:
                upd.update(fields)
            else:
                self._buf.flow_run_updates[run_id] = dict(fields)
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
                return
            upd = self._buf.task_run_updates.get(run_id)
            if upd is not None:
                upd.update(fields)
            else:
                self._buf.task_run_updates[run_id] = dict(fields)
                self.pending_rows += 1

    def flow_run_transition(self, run_id: str, fields: dict[str, Any],
                            state_row: dict[str, Any],
                            insert: dict[str, Any] | None = None) -> None:
        """A flow run's new state: its row's fields (and the row itself, for a new run) with
        the state row, under one lock, so that no flush can hold one without the other."""
        self._transition("flow_run", run_id, fields, state_row, insert)

    def task_run_transition(self, run_id: str, fields: dict[str, Any],
                            state_row: dict[str, Any],
                            insert: dict[str, Any] | None = None) -> None:
        """Like :meth:`flow_run_transition`, for a task run (the hot path: one lock a state)."""
        if insert is not None and not self._started:
            self._ensure_started()
        self._transition("task_run", run_id, fields, state_row, insert)

    def _transition(self, kind: str, run_id: str, fields: dict[str, Any],
                    state_row: dict[str, Any], insert: dict[str, Any] | None) -> None:
        with self._lock:
            buf = self._buf
            if kind == "task_run":
                inserts, updates, states = (
                    buf.task_run_inserts, buf.task_run_updates, buf.task_run_states)
            else:
                inserts, updates, states = (
                    buf.flow_run_inserts, buf.flow_run_updates, buf.flow_run_states)
            if insert is not None:
                insert.update(fields)
                inserts[run_id] = insert
                self.pending_rows += 2
            else:
                row = inserts.get(run_id)
                if row is not None:
                    row.update(fields)
                else:
                    upd = updates.get(run_id)
                    if upd is not None:
                        upd.update(fields)
                    else:
                        updates[run_id] = dict(fields)
                        self.pending_rows += 1
                self.pending_rows += 1
            states.append(state_row)

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
            cache = self._buf.cache
            if row["key"] not in cache:
                self.pending_rows += 1
            cache[row["key"]] = row

    def after_terminal_state(self) -> None:
        self.policy.after_terminal_state(self)

    def flush_within(self, seconds: float) -> None:
        """Have what is buffered written within ``seconds``: by the background flush when it
        runs that often, else now (a heartbeat rides on the next flush where it can)."""
        interval = self.policy.background_interval
        if interval is not None and interval <= seconds:
            self._ensure_started()
        else:
            self.flush()

    # -- flush ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write everything buffered so far, in one transaction. Raises StoreError on failure,
        with the rows put back so a later flush can still write them."""
        with self._flush_lock:
            with self._lock:
                buf, self._buf = self._buf, Buffer()
                count, self.pending_rows = self.pending_rows, 0
            if not count:
                return
            try:
                self.write_buffer(buf)
            except BaseException:
                self._restore(buf, count)
                raise

    def write_buffer(self, buf: Buffer) -> None:
        """Write ``buf`` in one transaction, now (the server writes a client's batch so)."""
        try:
            self._write(buf)
        except (DatabaseLockedError, DatabaseCorruptError, HomeNotWritableError):
            raise
        except Exception as exc:
            # A value the database cannot store (a NUL character or a NaN on PostgreSQL, a
            # lone surrogate from a surrogateescape'd file name...) would otherwise stay in
            # the buffer and fail every later flush. Clean such values and try once more;
            # the hot path pays nothing for this.
            from .cleaning import is_data_error

            if not is_data_error(exc) or not _sanitize(buf):
                raise
            self._write(buf)

    def discard_flow_run(self, run_id: str) -> bool:
        """Drop a flow run that never started from the buffer: its row, states and logs, and
        its task runs with theirs. True if its row was still buffered (so nothing of it is in
        the database); False if an earlier flush had already written it."""
        with self._flush_lock, self._lock:
            buf = self._buf
            found = buf.flow_run_inserts.pop(run_id, None) is not None
            buf.flow_run_updates.pop(run_id, None)
            buf.flow_run_states[:] = [r for r in buf.flow_run_states
                                      if r["flow_run_id"] != run_id]
            tasks = {k for k, r in buf.task_run_inserts.items() if r["flow_run_id"] == run_id}
            for k in tasks:
                del buf.task_run_inserts[k]
                buf.task_run_updates.pop(k, None)
            if tasks:
                buf.task_run_states[:] = [r for r in buf.task_run_states
                                          if r["task_run_id"] not in tasks]
            buf.logs[:] = [r for r in buf.logs if r["flow_run_id"] != run_id]
            self.pending_rows = buf.row_count()
            return found

    def _restore(self, old: Buffer, count: int) -> None:
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
            # recounted: rows of the failed flush and later ones for the same run merged
            self.pending_rows = old.row_count()

    def _write(self, buf: Buffer) -> None:
        fast = self._fast
        fast.begin_flush()
        try:
            self._write_tables(buf, fast)
        finally:
            fast.begin_flush()  # drop the memo's strings

    def _write_tables(self, buf: Buffer, fast: FastStatements) -> None:
        from . import models

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


def _sanitize(buf: Buffer) -> bool:
    """Clean every buffered value in place; True if anything changed."""
    from .cleaning import clean_rows

    return clean_rows([*buf.flows, *buf.flow_run_inserts.values(),
                       *buf.flow_run_updates.values(), *buf.task_run_inserts.values(),
                       *buf.task_run_updates.values(), *buf.flow_run_states,
                       *buf.task_run_states, *buf.logs, *buf.cache.values()])
