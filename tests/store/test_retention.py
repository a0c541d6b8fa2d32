"""History retention (legato.store.retention.prune) on SQLite and PostgreSQL: what goes, what
stays, and that a prune is batched, idempotent and exactly predicted by a dry run."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from legato import flow, get_run_logger, task
from legato.runtime import flow_run as current_flow_run
from legato.store import models
from legato.store.retention import PruneResult, prune

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
fr, tr, frs, trs, log = (
    models.flow_run,
    models.task_run,
    models.flow_run_state,
    models.task_run_state,
    models.log,
)


@task
def step(x: int) -> int:
    get_run_logger().info("step %d", x)
    return x + 1


@flow(name="retention-etl")
def etl(n: int = 2) -> str:
    get_run_logger().info("etl starts")
    for i in range(n):
        step(i)
    return current_flow_run.id


@flow(name="retention-child")
def child() -> str:
    step(10)
    return current_flow_run.id


@flow(name="retention-parent")
def parent() -> tuple[str, str]:
    step(0)
    return current_flow_run.id, child()


# -- helpers ------------------------------------------------------------------------------------
def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def scalar(db: Any, q: Any) -> Any:
    with db.read() as conn:
        return conn.execute(q).scalar()


def count(db: Any, table: sa.Table, *where: Any) -> int:
    return int(scalar(db, sa.select(sa.func.count()).select_from(table).where(*where)))


def task_ids(db: Any, flow_run_id: str) -> list[str]:
    with db.read() as conn:
        return [str(i) for i in conn.scalars(sa.select(tr.c.id).where(tr.c.flow_run_id == flow_run_id))]


def footprint(db: Any, flow_run_id: str) -> dict[str, int]:
    """Every row a flow run owns in the history."""
    tids = sa.select(tr.c.id).where(tr.c.flow_run_id == flow_run_id)
    return {
        "flow_run": count(db, fr, fr.c.id == flow_run_id),
        "task_runs": count(db, tr, tr.c.flow_run_id == flow_run_id),
        "flow_run_states": count(db, frs, frs.c.flow_run_id == flow_run_id),
        "task_run_states": count(db, trs, trs.c.task_run_id.in_(tids)),
        "logs": count(db, log, sa.or_(log.c.flow_run_id == flow_run_id, log.c.task_run_id.in_(tids))),
    }


def totals(db: Any) -> dict[str, int]:
    return {t.name: count(db, t) for t in (fr, tr, frs, trs, log, models.cache_entry)}


def age(
    db: Any,
    flow_run_id: str,
    days: float,
    *,
    state_type: str | None = None,
    tasks: bool = True,
    logs: bool = True,
    end_time: Any = "same",
) -> None:
    """Make a flow run (and its task runs and log lines) look ``days`` old."""
    when = now() - dt.timedelta(days=days)
    values: dict[str, Any] = {"created": when - dt.timedelta(seconds=5)}
    values["end_time"] = when if end_time == "same" else end_time
    if state_type is not None:
        values["state_type"] = state_type
        if state_type not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            values["end_time"] = None
    with db.write() as conn:
        conn.execute(sa.update(fr).where(fr.c.id == flow_run_id).values(**values))
        if tasks:
            conn.execute(
                sa.update(tr)
                .where(tr.c.flow_run_id == flow_run_id)
                .values(created=when - dt.timedelta(seconds=4), end_time=when)
            )
        if logs:
            conn.execute(sa.update(log).where(log.c.flow_run_id == flow_run_id).values(timestamp=when))


def orphans(db: Any) -> dict[str, int]:
    """Rows whose owner is gone: none may ever be left by a prune."""
    return {
        "task_runs": count(
            db, tr, tr.c.flow_run_id.is_not(None), tr.c.flow_run_id.not_in(sa.select(fr.c.id))
        ),
        "task_run_states": count(db, trs, trs.c.task_run_id.not_in(sa.select(tr.c.id))),
        "flow_run_states": count(db, frs, frs.c.flow_run_id.not_in(sa.select(fr.c.id))),
    }


def prune_days(db: Any, flow_runs=None, task_runs=None, logs=None, **kw: Any) -> PruneResult:
    def td(v: float | None) -> dt.timedelta | None:
        return None if v is None else dt.timedelta(days=v)

    return prune(
        db,
        flow_runs_older_than=td(flow_runs),
        task_runs_older_than=td(task_runs),
        logs_older_than=td(logs),
        **kw,
    )


# -- flow runs ----------------------------------------------------------------------------------
def test_old_finished_flow_runs_go_with_their_task_runs_states_and_logs(history, store_db) -> None:
    db = store_db
    old, recent = etl(3), etl(3)
    age(db, old, 40)
    age(db, recent, 10)
    before_old, before_recent = footprint(db, old), footprint(db, recent)
    assert before_old["task_runs"] == 3 and before_old["logs"] >= 4
    assert before_old["task_run_states"] >= 9 and before_old["flow_run_states"] >= 3

    result = prune_days(db, flow_runs=30)

    assert footprint(db, old) == dict.fromkeys(before_old, 0)
    assert footprint(db, recent) == before_recent
    assert result.flow_runs == 1
    assert result.task_runs == 3
    assert result.states == before_old["flow_run_states"] + before_old["task_run_states"]
    assert result.logs == before_old["logs"]
    assert orphans(db) == dict.fromkeys(orphans(db), 0)


def test_only_finished_runs_are_deleted_whatever_their_age(history, store_db) -> None:
    db = store_db
    finished = {t: etl(1) for t in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")}
    unfinished = {t: etl(1) for t in ("RUNNING", "SCHEDULED", "PENDING", "PAUSED", "CANCELLING")}
    for state_type, run in {**finished, **unfinished}.items():
        age(db, run, 400, state_type=state_type)
    kept = {t: footprint(db, r) for t, r in unfinished.items()}

    result = prune_days(db, flow_runs=1)

    assert result.flow_runs == 4
    for run in finished.values():
        assert footprint(db, run)["flow_run"] == 0
    # an unfinished run keeps everything, its (finished) task runs and its logs included
    assert {t: footprint(db, r) for t, r in unfinished.items()} == kept


def test_age_is_judged_by_end_time_and_by_created_without_one(history, store_db) -> None:
    db = store_db
    ended_long_ago = etl(1)  # created recently (e.g. imported), ended long ago: old
    age(db, ended_long_ago, 0)
    with db.write() as conn:
        conn.execute(
            sa.update(fr).where(fr.c.id == ended_long_ago).values(end_time=now() - 90 * DAY)
        )
    long_running = etl(1)  # created long ago, ended yesterday: recent
    age(db, long_running, 90, end_time=now() - DAY)
    no_end_old, no_end_recent = etl(1), etl(1)  # cancelled before it started: no end time
    age(db, no_end_old, 90, end_time=None, state_type="CANCELLED")
    age(db, no_end_recent, 2, end_time=None, state_type="CANCELLED")

    prune_days(db, flow_runs=30)

    assert footprint(db, ended_long_ago)["flow_run"] == 0
    assert footprint(db, no_end_old)["flow_run"] == 0
    assert footprint(db, long_running)["flow_run"] == 1
    assert footprint(db, no_end_recent)["flow_run"] == 1


def test_subflows_go_as_flow_runs_of_their_own_and_leave_no_dangling_task_runs(
    history, store_db
) -> None:
    db = store_db
    p1, c1 = parent()
    p2, c2 = parent()
    for run in (p1, c1, p2, c2):
        age(db, run, 60)
    # the second child never finished (its process died): it stays, its parent goes
    age(db, c2, 60, state_type="RUNNING")
    c2_before = footprint(db, c2)

    result = prune_days(db, flow_runs=30)

    assert result.flow_runs == 3
    for run in (p1, c1, p2):
        assert footprint(db, run) == dict.fromkeys(c2_before, 0)
    assert footprint(db, c2) == c2_before
    assert orphans(db) == dict.fromkeys(orphans(db), 0)


def test_a_prune_is_idempotent(history, store_db) -> None:
    db = store_db
    for _ in range(3):
        age(db, etl(2), 45)
    recent = etl(2)
    first = prune_days(db, flow_runs=30, task_runs=30, logs=30)
    after_first = totals(db)
    second = prune_days(db, flow_runs=30, task_runs=30, logs=30)

    assert first.flow_runs == 3 and first.task_runs == 6
    assert second == PruneResult()
    assert totals(db) == after_first
    assert footprint(db, recent)["task_runs"] == 2


def test_batches_are_bounded_and_each_is_its_own_transaction(history, store_db) -> None:
    db = store_db
    runs = [etl(3) for _ in range(5)]
    for run in runs:
        age(db, run, 100)
    statements: list[tuple[str, int]] = []
    commits: list[int] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE"):
            n = len(parameters) if isinstance(parameters, (tuple, list, dict)) else 0
            statements.append((statement, n))

    def on_commit(conn):
        commits.append(1)

    sa.event.listen(db.engine, "before_cursor_execute", on_execute)
    sa.event.listen(db.engine, "commit", on_commit)
    try:
        result = prune_days(db, flow_runs=30, batch_size=2)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", on_execute)
        sa.event.remove(db.engine, "commit", on_commit)

    assert (result.flow_runs, result.task_runs) == (5, 15)
    assert count(db, fr) == 0 and count(db, tr) == 0 and count(db, log) == 0
    # no statement names more than batch_size ids (plus the cutoff and the state types)
    assert statements and max(n for _, n in statements) <= 2 + 8
    # 5 flow runs in batches of 2, 15 task runs in chunks of 2: many short transactions
    assert len(commits) >= 10


@pytest.mark.parametrize("history", ["sqlite"], indirect=True)  # PostgreSQL always enforces them
def test_explicit_deletes_do_not_rely_on_foreign_key_cascades(history, store_db) -> None:
    from legato.store.database import Database

    run = etl(2)
    age(store_db, run, 90)
    db = Database(store_db.url)  # like a history another tool opened without foreign keys

    @sa.event.listens_for(db.engine, "connect")
    def _no_fks(dbapi_conn, _record):
        dbapi_conn.execute("PRAGMA foreign_keys = OFF")

    try:
        result = prune_days(db, flow_runs=30)
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    finally:
        db.dispose()
    assert result.flow_runs == 1 and result.task_runs == 2
    assert footprint(store_db, run) == dict.fromkeys(footprint(store_db, run), 0)
    assert orphans(store_db) == dict.fromkeys(orphans(store_db), 0)


# -- task runs and logs on their own ------------------------------------------------------------
def test_task_run_retention_keeps_flow_runs_logs_and_unfinished_flows(history, store_db) -> None:
    db = store_db
    done = etl(2)
    age(db, done, 20)
    unfinished_flow = etl(2)
    age(db, unfinished_flow, 20, state_type="RUNNING")
    fresh = etl(2)
    stuck_task = etl(1)  # a finished flow run whose task run never finished (killed)
    age(db, stuck_task, 20)
    with db.write() as conn:
        conn.execute(
            sa.update(tr)
            .where(tr.c.flow_run_id == stuck_task)
            .values(state_type="RUNNING", end_time=None)
        )
    done_before = footprint(db, done)
    kept = {r: footprint(db, r) for r in (unfinished_flow, fresh, stuck_task)}

    result = prune_days(db, task_runs=7)

    assert (result.flow_runs, result.task_runs) == (0, 2)
    assert result.states == done_before["task_run_states"]
    assert result.logs == 0
    after = footprint(db, done)
    assert after["task_runs"] == 0 and after["task_run_states"] == 0
    # the flow run, its own states and every log line (its task runs' included) stay
    assert after["flow_run"] == 1 and after["flow_run_states"] == done_before["flow_run_states"]
    assert count(db, log, log.c.flow_run_id == done) == done_before["logs"]
    assert {r: footprint(db, r) for r in kept} == kept


def test_task_run_retention_keeps_the_task_run_of_a_subflow_still_in_the_history(
    history, store_db
) -> None:
    db = store_db
    p, c = parent()
    age(db, p, 20)
    age(db, c, 20)
    link = scalar(db, sa.select(fr.c.parent_task_run_id).where(fr.c.id == c))

    result = prune_days(db, task_runs=7)

    # the parent's own task run and the subflow's went; the one standing for the subflow
    # stays while the subflow run is in the history, so the subflow still finds its parent
    assert result.task_runs == 2
    assert task_ids(db, p) == [str(link)]
    assert task_ids(db, c) == []
    prune_days(db, flow_runs=10)
    assert count(db, fr) == 0 and count(db, tr) == 0


def test_log_retention_deletes_old_lines_only(history, store_db) -> None:
    db = store_db
    old, recent = etl(2), etl(2)
    age(db, old, 40, logs=True)
    age(db, recent, 40, logs=False, state_type="RUNNING")  # old but running, its lines are new
    old_before, recent_before = footprint(db, old), footprint(db, recent)

    result = prune_days(db, logs=30)

    assert result.logs == old_before["logs"] > 0
    assert (result.flow_runs, result.task_runs, result.states) == (0, 0, 0)
    assert footprint(db, old) == {**old_before, "logs": 0}
    assert footprint(db, recent) == recent_before


def test_each_kind_acts_independently(history, store_db) -> None:
    db = store_db
    run = etl(2)
    age(db, run, 40)
    before = footprint(db, run)

    assert prune_days(db, flow_runs=50, task_runs=50, logs=50).total == 0
    assert footprint(db, run) == before
    prune_days(db, logs=30)
    assert footprint(db, run) == {**before, "logs": 0}
    prune_days(db, task_runs=30)
    assert footprint(db, run) == {**before, "logs": 0, "task_runs": 0, "task_run_states": 0}
    prune_days(db, flow_runs=30)
    assert footprint(db, run) == dict.fromkeys(before, 0)


# -- cache, dry run, arguments -----------------------------------------------------------------
def test_expired_cache_entries_go_and_others_stay(history, store_db) -> None:
    db = store_db
    run = etl(1)
    age(db, run, 40)
    [tid] = task_ids(db, run)
    t = now()
    rows = [
        {"key": "expired", "task_run_id": tid, "expiration": t - DAY},
        {"key": "live", "task_run_id": tid, "expiration": t + DAY},
        {"key": "forever", "task_run_id": tid, "expiration": None},
    ]
    with db.write() as conn:
        conn.execute(
            sa.insert(models.cache_entry),
            [{**r, "result": {"storage_key": r["key"]}, "created": t - 40 * DAY} for r in rows],
        )

    result = prune_days(db, flow_runs=30)

    assert result.cache_entries == 1
    with db.read() as conn:
        keys = set(conn.scalars(sa.select(models.cache_entry.c.key)))
    # their task run is gone, but a cache entry lives by its key and its result on disk
    assert keys == {"live", "forever"}
    assert prune_days(db, expired_cache_entries=False).cache_entries == 0


def test_a_dry_run_counts_exactly_what_a_prune_deletes_and_deletes_nothing(
    history, store_db
) -> None:
    db = store_db
    gone = etl(2)
    age(db, gone, 60)
    p, c = parent()
    age(db, p, 60)
    age(db, c, 60)
    tasks_only = etl(3)
    age(db, tasks_only, 20, logs=False)
    logs_only = etl(1)
    age(db, logs_only, 5, state_type="RUNNING")
    etl(1)  # recent
    t = now()
    with db.write() as conn:
        conn.execute(
            sa.insert(models.cache_entry),
            [{"key": "x", "task_run_id": None, "result": {}, "expiration": t - DAY, "created": t}],
        )
    before = totals(db)
    ages = {"flow_runs": 30, "task_runs": 10, "logs": 3}

    predicted = prune_days(db, **ages, dry_run=True)
    assert totals(db) == before
    actual = prune_days(db, **ages)

    assert predicted.dry_run and not actual.dry_run
    assert dataclass_counts(predicted) == dataclass_counts(actual)
    assert actual.flow_runs == 3 and actual.task_runs == 2 + 2 + 1 + 3
    assert actual.cache_entries == 1
    after = totals(db)
    assert before["flow_run"] - after["flow_run"] == actual.flow_runs
    assert before["task_run"] - after["task_run"] == actual.task_runs
    assert before["log"] - after["log"] == actual.logs
    assert (
        before["flow_run_state"] + before["task_run_state"]
        - after["flow_run_state"] - after["task_run_state"]
    ) == actual.states


def dataclass_counts(r: PruneResult) -> dict[str, int]:
    d = r.as_dict()
    d.pop("dry_run")
    return d


def test_bad_arguments_are_refused_before_anything_is_deleted(history, store_db) -> None:
    db = store_db
    age(db, etl(1), 40)
    before = totals(db)
    with pytest.raises(ValueError, match="must not be negative"):
        prune(db, flow_runs_older_than=-DAY, task_runs_older_than=None, logs_older_than=None)
    with pytest.raises(ValueError, match="batch_size"):
        prune_days(db, flow_runs=1, batch_size=0)
    assert totals(db) == before
