"""The HistoryWriter on both backends: coalescing, flushes, atomicity, the write policies."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from legato.exceptions import StoreError
from legato.ids import new_id
from legato.store.writer import BatchedPolicy, DurablePolicy, HistoryWriter, WritePolicy

UTC = dt.timezone.utc


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


# -- row builders (every column, as the orchestrator builds them) -------------------------------


def flow_row(name: str = "writer-flow") -> dict[str, Any]:
    t = now()
    return {"id": new_id(), "name": name, "created": t, "updated": t}


def flow_run_row(flow_id: str, **kw: Any) -> dict[str, Any]:
    t = now()
    row = {
        "id": new_id(), "flow_id": flow_id, "name": "a-run", "state_type": "PENDING",
        "state_name": "Pending", "state_message": None, "state_timestamp": t,
        "parameters": {}, "tags": [], "parent_task_run_id": None, "run_count": 0,
        "expected_start_time": t, "start_time": None, "end_time": None,
        "total_run_time": 0.0, "version": None, "empirical_policy": {}, "created": t,
        "updated": t,
    }
    row.update(kw)
    return row


def task_run_row(flow_run_id: str | None, **kw: Any) -> dict[str, Any]:
    t = now()
    row = {
        "id": new_id(), "flow_run_id": flow_run_id, "task_key": "mod.task", "name": "task-0",
        "dynamic_key": "0", "cache_key": None, "cache_expiration": None,
        "state_type": "PENDING", "state_name": "Pending", "state_message": None,
        "state_timestamp": t, "task_inputs": {}, "tags": [], "run_count": 0,
        "expected_start_time": t, "start_time": None, "end_time": None,
        "total_run_time": 0.0, "empirical_policy": {}, "created": t, "updated": t,
    }
    row.update(kw)
    return row


def state_row(owner: str, run_id: str, type_: str = "PENDING", name: str = "Pending",
              **kw: Any) -> dict[str, Any]:
    row = {"id": new_id(), f"{owner}_id": run_id, "type": type_, "name": name, "message": None,
           "timestamp": now(), "result": None, "details": {}}
    row.update(kw)
    return row


def log_row(flow_run_id: str | None, task_run_id: str | None = None, **kw: Any) -> dict[str, Any]:
    row = {"id": new_id(), "flow_run_id": flow_run_id, "task_run_id": task_run_id,
           "name": "legato.test", "level": 20, "message": "hello", "timestamp": now()}
    row.update(kw)
    return row


class Manual(WritePolicy):
    """Writes only when the test says flush()."""

    name = "manual"


@pytest.fixture
def writer(store_db) -> Iterator[HistoryWriter]:
    w = HistoryWriter(store_db, Manual())
    yield w
    w.policy.stop()


@pytest.fixture
def flow_id(writer: HistoryWriter) -> str:
    row = flow_row()
    writer.add_flow(row)
    writer.flush()
    return row["id"]


ALL_TABLES = ["flow_run", "task_run", "flow_run_state", "task_run_state", "log", "cache_entry"]


def counts(raw) -> dict[str, int]:
    return {t: raw.count(t) for t in ALL_TABLES}


# -- coalescing ------------------------------------------------------------------------------


def test_insert_then_updates_before_a_flush_is_one_row_with_the_final_state(
    writer: HistoryWriter, flow_id: str, raw
) -> None:
    fr = flow_run_row(flow_id)
    tr = task_run_row(fr["id"])
    writer.insert_flow_run(fr)
    writer.insert_task_run(tr)
    t1 = now()
    writer.update_task_run(tr["id"], {"state_type": "RUNNING", "state_name": "Running",
                                      "run_count": 1, "start_time": t1, "state_timestamp": t1})
    t2 = t1 + dt.timedelta(seconds=2)
    writer.update_task_run(tr["id"], {"state_type": "COMPLETED", "state_name": "Completed",
                                      "end_time": t2, "state_timestamp": t2,
                                      "total_run_time": 2.0})
    writer.update_flow_run(fr["id"], {"state_type": "RUNNING", "state_name": "Running"})
    # coalesced: two inserts are pending, the updates folded into them
    assert writer.pending_rows == 2
    writer.flush()
    assert writer.pending_rows == 0
    rows = raw.rows("SELECT * FROM task_run")
    assert len(rows) == 1
    row = rows[0]
    assert (row["state_type"], row["state_name"], row["run_count"]) == (
        "COMPLETED", "Completed", 1
    )
    assert row["total_run_time"] == 2.0
    assert raw.rows("SELECT state_type FROM flow_run") == [{"state_type": "RUNNING"}]


def test_updates_after_a_flush_update_the_written_row(
    writer: HistoryWriter, flow_id: str, raw
) -> None:
    fr = flow_run_row(flow_id)
    tr = task_run_row(fr["id"])
    writer.insert_flow_run(fr)
    writer.insert_task_run(tr)
    writer.flush()
    assert raw.rows("SELECT state_type FROM task_run") == [{"state_type": "PENDING"}]

    writer.update_task_run(tr["id"], {"state_type": "RUNNING", "run_count": 1})
    writer.update_task_run(tr["id"], {"state_type": "COMPLETED", "state_name": "Completed"})
    writer.update_flow_run(fr["id"], {"state_type": "COMPLETED", "tags": ["x", "y"]})
    # two runs with updates pending; the task run's two updates merged into one
    assert writer.pending_rows == 2
    writer.flush()
    row = raw.rows("SELECT state_type, state_name, run_count FROM task_run")[0]
    assert row == {"state_type": "COMPLETED", "state_name": "Completed", "run_count": 1}
    assert raw.count("task_run") == 1
    assert raw.scalar("SELECT state_type FROM flow_run") == "COMPLETED"


def test_updates_with_different_columns_in_one_flush(
    writer: HistoryWriter, flow_id: str, raw
) -> None:
    fr = flow_run_row(flow_id)
    writer.insert_flow_run(fr)
    trs = [task_run_row(fr["id"], name=f"t-{i}") for i in range(3)]
    for tr in trs:
        writer.insert_task_run(tr)
    writer.flush()
    exp = now() + dt.timedelta(days=1)
    writer.update_task_run(trs[0]["id"], {"state_type": "RUNNING"})
    writer.update_task_run(trs[1]["id"], {"cache_key": "k1", "cache_expiration": exp})
    writer.update_task_run(trs[2]["id"], {"state_type": "FAILED", "state_message": "boom"})
    writer.flush()
    got = {r["name"]: r for r in raw.rows("SELECT * FROM task_run")}
    assert got["t-0"]["state_type"] == "RUNNING"
    assert got["t-1"]["cache_key"] == "k1" and got["t-1"]["state_type"] == "PENDING"
    assert got["t-2"]["state_message"] == "boom"


def test_an_empty_flush_touches_nothing(writer: HistoryWriter, flow_id: str, raw) -> None:
    writer.flush()
    writer.flush()
    assert counts(raw) == dict.fromkeys(ALL_TABLES, 0)


def test_cache_entries_replace_by_key(writer: HistoryWriter, flow_id: str, raw) -> None:
    def entry(v: int) -> dict[str, Any]:
        return {"key": "k", "task_run_id": None, "result": {"v": v}, "expiration": None,
                "created": now()}

    writer.put_cache(entry(1))
    writer.put_cache(entry(2))  # same flush: the later one wins
    writer.flush()
    writer.put_cache(entry(3))  # later flush: replaces the stored one
    writer.flush()
    rows = raw.rows("SELECT key, result FROM cache_entry")
    assert len(rows) == 1
    result = rows[0]["result"]
    if isinstance(result, str):  # SQLite hands JSON back as text to plain SQL
        import json

        result = json.loads(result)
    assert result == {"v": 3}


# -- values round-trip through the fast statements ----------------------------------------------


def test_timestamps_and_json_read_back_exactly(writer: HistoryWriter, flow_id: str,
                                               store_db) -> None:
    from legato.store import queries

    t = dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)
    other_zone = dt.datetime(2024, 3, 1, 1, 0, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    params = {"s": "ünïcode ✓", "n": 1, "f": 1.5, "nested": {"l": [1, {"a": None}]},
              "empty": {}, "b": False}
    fr = flow_run_row(flow_id, parameters=params, tags=["b", "a"], start_time=t,
                      end_time=other_zone, state_timestamp=t)
    writer.insert_flow_run(fr)
    writer.flush()
    got = queries.read_flow_run(store_db, fr["id"])
    assert got.parameters == params
    assert got.tags == ["b", "a"]
    assert got.start_time == t and got.start_time.tzinfo is not None
    assert got.end_time == other_zone  # same instant, returned in UTC
    assert got.end_time.utcoffset() == dt.timedelta(0)
    assert got.empirical_policy == {}


def test_a_naive_timestamp_is_refused_not_guessed(writer: HistoryWriter, flow_id: str,
                                                  raw) -> None:
    fr = flow_run_row(flow_id, start_time=dt.datetime(2024, 1, 1, 12, 0))
    writer.insert_flow_run(fr)
    with pytest.raises((ValueError, StoreError), match="naive"):
        writer.flush()
    assert raw.count("flow_run") == 0


def test_values_a_database_refuses_are_cleaned_not_stuck(writer: HistoryWriter, flow_id: str,
                                                          raw) -> None:
    """NaN/Infinity in JSON, NUL in text (PostgreSQL), lone surrogates (a file name decoded
    with surrogateescape): the flush cleans them and writes the rows, instead of failing every
    flush from then on."""
    name = b"caf\xe9.csv".decode("utf-8", "surrogateescape")
    fr = flow_run_row(flow_id, parameters={"x": float("nan"), "y": [float("-inf")],
                                           "path": name, "k\x00": "v"},
                      state_message="nul \x00 here")
    writer.insert_flow_run(fr)
    writer.add_log(log_row(fr["id"], message=f"reading {name}"))
    writer.add_log(log_row(fr["id"], message="lone \ud800 surrogate"))
    writer.flush()
    assert writer.pending_rows == 0
    params = raw.rows("SELECT parameters FROM flow_run")[0]["parameters"]
    if isinstance(params, str):
        import json

        params = json.loads(params)
    assert params["x"] == "NaN" and params["y"] == ["-Infinity"]
    assert params["path"] == "caf\\xe9.csv"
    msgs = sorted(r["message"] for r in raw.rows("SELECT message FROM log"))
    assert msgs == ["lone \\ud800 surrogate", "reading caf\\xe9.csv"]
    assert raw.scalar("SELECT state_message FROM flow_run") in ("nul \ufffd here", "nul \x00 here")


# -- atomic flushes -------------------------------------------------------------------------


def _fill(writer: HistoryWriter, flow_id: str) -> dict[str, Any]:
    """A flow run with two task runs, their states and logs, buffered."""
    fr = flow_run_row(flow_id)
    trs = [task_run_row(fr["id"], name=f"t-{i}") for i in range(2)]
    writer.insert_flow_run(fr)
    writer.add_flow_run_state(state_row("flow_run", fr["id"]))
    for tr in trs:
        writer.insert_task_run(tr)
        writer.add_task_run_state(state_row("task_run", tr["id"]))
        writer.add_log(log_row(fr["id"], tr["id"]))
    writer.put_cache({"key": f"k-{fr['id']}", "task_run_id": trs[0]["id"], "result": {},
                      "expiration": None, "created": now()})
    return {"flow_run": fr, "task_runs": trs}


def test_a_failing_flush_writes_nothing_and_keeps_every_row(
    writer: HistoryWriter, flow_id: str, raw
) -> None:
    made = _fill(writer, flow_id)
    bad = log_row(made["flow_run"]["id"], message=None)  # NOT NULL column: the last table
    writer.add_log(bad)
    pending = writer.pending_rows
    before = counts(raw)
    with pytest.raises(StoreError) as info:
        writer.flush()
    assert "message" in str(info.value).lower() or "null" in str(info.value).lower()
    assert counts(raw) == before  # the flow run and task runs inserted first were rolled back
    assert writer.pending_rows == pending
    # the rows are still buffered: repair the bad one and everything lands in the next flush
    bad["message"] = "repaired"
    writer.flush()
    assert writer.pending_rows == 0
    assert counts(raw) == {"flow_run": 1, "task_run": 2, "flow_run_state": 1,
                           "task_run_state": 2, "log": 3, "cache_entry": 1}


def test_a_foreign_key_violation_rolls_back_the_whole_flush(
    writer: HistoryWriter, flow_id: str, raw
) -> None:
    made = _fill(writer, flow_id)
    orphan = state_row("task_run", new_id())  # no such task run
    writer.add_task_run_state(orphan)
    pending = writer.pending_rows
    with pytest.raises(StoreError):
        writer.flush()
    assert counts(raw) == dict.fromkeys(ALL_TABLES, 0)
    assert writer.pending_rows == pending
    orphan["task_run_id"] = made["task_runs"][0]["id"]
    writer.flush()
    assert raw.count("task_run_state") == 3


def test_rows_added_during_a_failing_flush_are_kept_with_it(
    writer: HistoryWriter, flow_id: str, raw, store_db
) -> None:
    """While a flush runs, the engine keeps adding rows (to a fresh buffer). When the flush
    fails, the failed rows go back in front of them, and an update made meanwhile to a run
    whose insert was in the failed flush still applies after that insert."""
    made = _fill(writer, flow_id)
    tr = made["task_runs"][0]
    bad = log_row(made["flow_run"]["id"], message=None)
    writer.add_log(bad)
    late_log = log_row(made["flow_run"]["id"], message="added during the flush")
    fired = []

    def during_flush(conn, cursor, statement, params, context, executemany):
        if not fired and statement.lstrip().upper().startswith("INSERT INTO TASK_RUN "):
            fired.append(True)
            writer.update_task_run(tr["id"], {"state_type": "COMPLETED",
                                              "state_name": "Completed"})
            writer.add_log(late_log)

    event.listen(store_db.engine, "before_cursor_execute", during_flush)
    try:
        with pytest.raises(StoreError):
            writer.flush()
    finally:
        event.remove(store_db.engine, "before_cursor_execute", during_flush)
    assert fired
    assert counts(raw) == dict.fromkeys(ALL_TABLES, 0)
    bad["message"] = "repaired"
    writer.flush()
    assert writer.pending_rows == 0
    assert raw.count("log") == 4
    assert raw.scalar("SELECT state_type FROM task_run WHERE id = :i", i=tr["id"]) == "COMPLETED"


def test_rows_added_during_a_successful_flush_go_in_the_next(
    writer: HistoryWriter, flow_id: str, raw, store_db
) -> None:
    made = _fill(writer, flow_id)
    tr = made["task_runs"][1]
    fired = []

    def during_flush(conn, cursor, statement, params, context, executemany):
        if not fired and statement.lstrip().upper().startswith("INSERT INTO LOG"):
            fired.append(True)
            writer.update_task_run(tr["id"], {"state_type": "FAILED"})

    event.listen(store_db.engine, "before_cursor_execute", during_flush)
    try:
        writer.flush()
    finally:
        event.remove(store_db.engine, "before_cursor_execute", during_flush)
    assert fired
    assert raw.scalar("SELECT state_type FROM task_run WHERE id = :i", i=tr["id"]) == "PENDING"
    assert writer.pending_rows == 1
    writer.flush()
    assert raw.scalar("SELECT state_type FROM task_run WHERE id = :i", i=tr["id"]) == "FAILED"


def test_discard_flow_run_drops_exactly_that_run(writer: HistoryWriter, flow_id: str,
                                                 raw) -> None:
    """What the client does when a flow run cannot start: its rows leave the buffer, the
    other runs' rows stay."""
    a = _fill(writer, flow_id)
    b = _fill(writer, flow_id)
    writer.add_log(log_row(None))  # a log line of no flow run
    assert writer.discard_flow_run(a["flow_run"]["id"]) is True
    # b's flow run, its state, 2 x (task run, state, log), both cache entries (a cache entry
    # outlives its run), the other log line
    assert writer.pending_rows == 1 + 1 + 2 * 3 + 2 + 1
    writer.flush()
    assert raw.rows("SELECT id FROM flow_run") == [{"id": b["flow_run"]["id"]}]
    assert raw.count("task_run") == 2 and raw.count("task_run_state") == 2
    assert raw.count("log") == 3 and raw.count("flow_run_state") == 1
    # a run already written cannot be taken back: the caller is told so
    assert writer.discard_flow_run(b["flow_run"]["id"]) is False


def test_a_transition_is_never_split_across_flushes(writer: HistoryWriter, flow_id: str,
                                                    raw, store_db) -> None:
    """A run's new fields and its state row are enqueued together: a flush that runs while
    another thread records states holds both or neither."""
    fr = flow_run_row(flow_id)
    writer.insert_flow_run(fr)
    writer.flush()
    import threading

    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            writer.flush()

    t = threading.Thread(target=flusher)
    t.start()
    try:
        for i in range(300):
            tr = task_run_row(fr["id"], name=f"t-{i}")
            writer.task_run_transition(tr["id"], {"state_type": "PENDING"},
                                       state_row("task_run", tr["id"]), insert=tr)
            writer.task_run_transition(tr["id"], {"state_type": "RUNNING"},
                                       state_row("task_run", tr["id"], "RUNNING", "Running"))
            writer.task_run_transition(tr["id"], {"state_type": "COMPLETED"},
                                       state_row("task_run", tr["id"], "COMPLETED", "Completed"))
    finally:
        stop.set()
        t.join()
    writer.flush()
    assert raw.count("task_run", "state_type = 'COMPLETED'") == 300
    assert raw.count("task_run_state") == 900


# -- policies ---------------------------------------------------------------------------------


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def test_durable_policy_writes_at_each_terminal_state(store_db, raw) -> None:
    w = HistoryWriter(store_db, DurablePolicy())
    f = flow_row("durable-flow")
    w.add_flow(f)
    fr = flow_run_row(f["id"])
    tr = task_run_row(fr["id"])
    w.insert_flow_run(fr)
    w.insert_task_run(tr)
    w.update_task_run(tr["id"], {"state_type": "RUNNING"})
    assert raw.count("task_run") == 0  # nothing terminal yet: still buffered
    w.update_task_run(tr["id"], {"state_type": "COMPLETED"})
    w.after_terminal_state()  # what the orchestrator calls after a terminal task state
    assert w.pending_rows == 0
    assert raw.scalar("SELECT state_type FROM task_run") == "COMPLETED"
    w.close()


def test_batched_policy_flushes_in_the_background(store_db, raw) -> None:
    policy = BatchedPolicy(interval=0.05)
    w = HistoryWriter(store_db, policy)
    try:
        f = flow_row("batched-flow")
        w.add_flow(f)
        fr = flow_run_row(f["id"])
        w.insert_flow_run(fr)
        trs = [task_run_row(fr["id"], name=f"t-{i}") for i in range(10)]
        for tr in trs:
            w.insert_task_run(tr)  # the first task run starts the background thread
        wait_until(lambda: raw.count("task_run") == 10, what="a background flush")
        assert w.pending_rows == 0
        # and again for rows added later
        w.update_task_run(trs[3]["id"], {"state_type": "COMPLETED"})
        w.add_log(log_row(fr["id"], trs[3]["id"]))
        wait_until(lambda: raw.count("log") == 1, what="the second background flush")
        assert raw.scalar("SELECT state_type FROM task_run WHERE id = :i",
                          i=trs[3]["id"]) == "COMPLETED"
    finally:
        w.close()
    assert policy._thread is not None
    policy._thread.join(5)
    assert not policy._thread.is_alive()


def test_batched_policy_keeps_rows_when_a_background_flush_fails(store_db, raw) -> None:
    w = HistoryWriter(store_db, BatchedPolicy(interval=0.02))
    try:
        f = flow_row("batched-fail")
        w.add_flow(f)
        fr = flow_run_row(f["id"])
        w.insert_flow_run(fr)
        tr = task_run_row(fr["id"])
        bad = log_row(fr["id"], message=None)
        w.insert_task_run(tr)
        w.add_log(bad)
        # the background thread keeps failing; the rows stay buffered and nothing is written
        attempts: list[int] = []

        def on_rollback(conn) -> None:
            attempts.append(1)

        event.listen(store_db.engine, "rollback", on_rollback)
        try:
            wait_until(lambda: len(attempts) >= 2, what="two failed background flushes")
        finally:
            event.remove(store_db.engine, "rollback", on_rollback)
        assert raw.count("flow_run") == 0
        # the rows were kept: once the bad one is repaired, the background thread writes all
        bad["message"] = "repaired"
        wait_until(lambda: raw.count("log") == 1, what="the repaired flush")
        assert raw.count("task_run") == 1
        assert raw.count("flow_run") == 1
    finally:
        bad["message"] = "repaired"
        w.close()


def test_batched_policy_flushes_when_the_buffer_is_full(store_db, raw) -> None:
    w = HistoryWriter(store_db, BatchedPolicy(interval=3600, max_rows=10))
    try:
        f = flow_row("full-buffer")
        w.add_flow(f)
        fr = flow_run_row(f["id"])
        w.insert_flow_run(fr)
        for i in range(4):
            tr = task_run_row(fr["id"], name=f"t-{i}")
            w.insert_task_run(tr)
            w.add_task_run_state(state_row("task_run", tr["id"]))
            w.after_terminal_state()
        # 2 + 8 rows reached max_rows at the 4th terminal state: written without a flush call
        assert w.pending_rows == 0
        assert raw.count("task_run") == 4
    finally:
        w.close()


def test_close_flushes_what_is_left(store_db, raw) -> None:
    w = HistoryWriter(store_db, BatchedPolicy(interval=3600))
    f = flow_row("close-flow")
    w.add_flow(f)
    w.insert_flow_run(flow_run_row(f["id"]))
    w.close()
    assert raw.count("flow_run") == 1


def test_the_writer_uses_one_transaction_per_flush(writer: HistoryWriter, flow_id: str,
                                                   store_db) -> None:
    begins: list[int] = []

    def on_begin(conn) -> None:
        begins.append(1)

    _fill(writer, flow_id)
    event.listen(store_db.engine, "begin", on_begin)
    try:
        writer.flush()
    finally:
        event.remove(store_db.engine, "begin", on_begin)
    assert len(begins) == 1


def test_writes_from_many_threads_all_land(store_db, raw) -> None:
    """Eight threads adding task runs while a background thread flushes: nothing lost."""
    import threading

    w = HistoryWriter(store_db, BatchedPolicy(interval=0.01))
    f = flow_row("threads")
    w.add_flow(f)
    fr = flow_run_row(f["id"])
    w.insert_flow_run(fr)
    w.flush()

    def work(k: int) -> None:
        for i in range(200):
            tr = task_run_row(fr["id"], name=f"t-{k}-{i}")
            w.insert_task_run(tr)
            w.update_task_run(tr["id"], {"state_type": "RUNNING"})
            w.add_task_run_state(state_row("task_run", tr["id"]))
            w.update_task_run(tr["id"], {"state_type": "COMPLETED"})
            w.after_terminal_state()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    assert raw.count("task_run") == 1600
    assert raw.count("task_run", "state_type = 'COMPLETED'") == 1600
    assert raw.count("task_run_state") == 1600


def test_flush_translates_database_errors(writer: HistoryWriter, flow_id: str) -> None:
    writer.insert_flow_run(flow_run_row(flow_id, name=None))
    with pytest.raises(StoreError) as info:
        writer.flush()
    assert not isinstance(info.value, sa.exc.SQLAlchemyError)
