"""A history that cannot be used: locked, corrupt, unwritable, unreachable. Each gives one clear
Legato error (never a raw sqlite3/SQLAlchemy one) and leaves no half-written run behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from legato import flow, task
from legato.exceptions import (
    DatabaseCorruptError,
    DatabaseLockedError,
    HomeNotWritableError,
    LegatoError,
    StoreError,
)
from legato.settings import reset_settings_cache


@task
def inc(x: int) -> int:
    return x + 1


@flow(name="robust-flow")
def robust_flow(n: int = 3) -> int:
    s = 0
    for _ in range(n):
        s = inc(s)
    return s


def history_counts(db_path: Path) -> dict[str, int]:
    conn = sqlite3.connect(db_path)
    try:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("flow_run", "task_run", "flow_run_state", "task_run_state", "log")
        }
    finally:
        conn.close()


def run_states(db_path: Path) -> list[str]:
    conn = sqlite3.connect(db_path)
    try:
        return [r[0] for r in conn.execute("SELECT state_type FROM flow_run")]
    finally:
        conn.close()


def assert_not_raw(exc: BaseException) -> None:
    """A Legato error, with the driver's error not chained into what the user sees."""
    assert isinstance(exc, LegatoError)
    assert not isinstance(exc, (sa.exc.SQLAlchemyError, sqlite3.Error))
    assert exc.__cause__ is None and exc.__suppress_context__


# -- (a) a database locked by another process ----------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.readline()  # hold the lock until the test says so
    conn.execute("ROLLBACK")
    conn.close()
    print("released", flush=True)
    """
)


class LockHolder:
    """Another process holding an exclusive lock on the database file."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()  # blocks until the lock is held
        assert line.strip() == "locked", self.proc.stderr.read()

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "released"
            self.proc.wait(30)


@pytest.fixture
def lock_holder() -> Iterator[type[LockHolder]]:
    holders: list[LockHolder] = []

    def make(path: Path) -> LockHolder:
        h = LockHolder(path)
        holders.append(h)
        return h

    yield make  # type: ignore[misc]
    for h in holders:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait()


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_DATABASE_BUSY_TIMEOUT", "0.5")
    reset_settings_cache()


def test_locked_database_on_first_use(legato_home: Path, lock_holder, short_busy_timeout) -> None:
    """The other process made the file and holds it: the very first open fails clearly."""
    legato_home.mkdir(parents=True)
    db_path = legato_home / "legato.db"
    holder = lock_holder(db_path)
    with pytest.raises(DatabaseLockedError) as info:
        robust_flow()
    msg = str(info.value)
    assert str(db_path) in msg
    assert "locked" in msg and "LEGATO_DATABASE_BUSY_TIMEOUT" in msg
    assert_not_raw(info.value)
    holder.release()
    assert robust_flow() == 3
    assert history_counts(db_path) == {
        "flow_run": 1, "task_run": 3, "flow_run_state": 3, "task_run_state": 9,
        "log": history_counts(db_path)["log"],
    }
    assert run_states(db_path) == ["COMPLETED"]


def test_locked_database_leaves_no_half_written_run(
    legato_home: Path, lock_holder, short_busy_timeout
) -> None:
    """The history is in use (client warm, flow known) when another process locks it: the
    flow call fails before the flow's code runs, and the run it began is not written later as
    a run stuck in Running."""
    calls = []

    @flow(name="robust-flow")
    def counting_flow() -> int:
        calls.append(1)
        return robust_flow.fn(3)

    assert counting_flow() == 3
    db_path = legato_home / "legato.db"
    before = history_counts(db_path)
    holder = lock_holder(db_path)
    with pytest.raises(DatabaseLockedError) as info:
        counting_flow()
    assert str(db_path) in str(info.value)
    assert_not_raw(info.value)
    assert len(calls) == 1  # the user's code did not start
    holder.release()
    assert counting_flow() == 3
    after = history_counts(db_path)
    assert after["flow_run"] == before["flow_run"] + 1
    assert after["flow_run_state"] == before["flow_run_state"] * 2
    assert run_states(db_path) == ["COMPLETED", "COMPLETED"]


def test_locked_subflow_start_fails_the_parent_cleanly(
    legato_home: Path, lock_holder, short_busy_timeout
) -> None:
    """A subflow that cannot start: the task run standing for it in the parent ends Failed,
    the parent fails, and once the lock is gone every recorded run is final."""
    db_path = legato_home / "legato.db"
    holders = []

    @flow
    def child() -> int:
        return 1

    @flow
    def parent() -> int:
        holders.append(lock_holder(db_path))  # lock the history from inside the parent
        return child()

    assert robust_flow() == 3  # history and client warm
    with pytest.raises(StoreError):
        parent()
    holders[0].release()
    assert robust_flow() == 3  # the next flush writes what the failed one kept
    conn = sqlite3.connect(db_path)
    try:
        runs = dict(conn.execute("SELECT name, state_type FROM flow_run").fetchall())
        tasks = conn.execute("SELECT task_key, state_type FROM task_run").fetchall()
    finally:
        conn.close()
    assert "RUNNING" not in runs.values() and "PENDING" not in runs.values()
    assert sorted(runs.values()).count("FAILED") == 1  # the parent
    assert all(state in {"COMPLETED", "FAILED"} for _, state in tasks)
    assert ("subflow:child", "FAILED") in tasks


def test_lock_taken_while_a_flow_runs(legato_home: Path, lock_holder, short_busy_timeout) -> None:
    """The lock appears mid-flow: the flow's final flush fails with DatabaseLockedError, its
    rows stay buffered, and they are written whole once the lock is gone."""
    db_path = legato_home / "legato.db"
    holders = []

    @task
    def lock_now() -> None:
        holders.append(lock_holder(db_path))

    @flow(name="locked-midway")
    def midway() -> int:
        s = inc(0)
        lock_now()
        return inc(s)

    assert robust_flow() == 3
    with pytest.raises(DatabaseLockedError):
        midway()
    holders[0].release()
    assert robust_flow() == 3
    assert run_states(db_path) == ["COMPLETED", "COMPLETED", "COMPLETED"]
    assert history_counts(db_path)["task_run"] == 3 + 3 + 3


def test_the_history_can_be_read_while_another_process_writes(
    legato_home: Path, lock_holder, short_busy_timeout
) -> None:
    """WAL mode: `legato flow-run ls` in one terminal while a flow writes in another. Opening
    the history (its schema check included) takes no write lock."""
    from legato.client import get_client
    from legato.client.factory import close_clients

    assert robust_flow() == 3
    close_clients()  # a new process, as the CLI would be
    holder = lock_holder(legato_home / "legato.db")
    runs = get_client().read_flow_runs()
    assert [r.state_type.value for r in runs] == ["COMPLETED"]
    holder.release()


# -- (b) a corrupt database file -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(64 * 1024),
        b"this is a text file, not a database\n" * 100,
        b"SQLite format 3\x00" + os.urandom(8192),  # the right magic, garbage after it
    ],
    ids=["random", "text", "bad-header"],
)
def test_corrupt_database_file(legato_home: Path, content: bytes) -> None:
    legato_home.mkdir(parents=True)
    db_path = legato_home / "legato.db"
    db_path.write_bytes(content)
    with pytest.raises(DatabaseCorruptError) as info:
        robust_flow()
    msg = str(info.value)
    assert str(db_path) in msg
    assert "mv " in msg and "LEGATO_DATABASE_URL" in msg  # how to recover
    assert_not_raw(info.value)
    assert db_path.read_bytes() == content  # left exactly as it was
    assert sorted(p.name for p in legato_home.iterdir() if p.name.startswith("legato.db")) == [
        "legato.db"
    ]
    # and the advice works
    db_path.rename(legato_home / "legato.db.broken")
    assert robust_flow() == 3


def test_database_damaged_after_creation(legato_home: Path) -> None:
    """A real history whose pages were overwritten later: a clear error, not a raw one."""
    assert robust_flow() == 3
    from legato.client.factory import close_clients

    close_clients()  # the process lets go of the file (as a new process would start)
    db_path = legato_home / "legato.db"
    assert not (legato_home / "legato.db-wal").exists()  # checkpointed into the file
    data = bytearray(db_path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    assert len(data) >= 2 * page
    data[page : len(data)] = os.urandom(len(data) - page)  # every page after the first
    db_path.write_bytes(bytes(data))
    before = db_path.read_bytes()
    with pytest.raises(DatabaseCorruptError) as info:
        robust_flow()
    assert str(db_path) in str(info.value)
    assert_not_raw(info.value)
    assert db_path.read_bytes() == before


# -- (c) a LEGATO_HOME that cannot be written -------------------------------------------------------


def test_home_under_a_regular_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("I am a file")
    home = blocker / "home"
    monkeypatch.setenv("LEGATO_HOME", str(home))
    reset_settings_cache()
    with pytest.raises(HomeNotWritableError) as info:
        robust_flow()
    msg = str(info.value)
    assert str(home) in msg
    assert "LEGATO_HOME" in msg
    assert isinstance(info.value, LegatoError)
    assert not isinstance(info.value, OSError)
    assert blocker.read_text() == "I am a file"


def test_store_refuses_a_database_folder_under_a_file(tmp_path: Path) -> None:
    from legato.store.database import Database

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HomeNotWritableError) as info:
        Database(f"sqlite:///{blocker / 'sub' / 'legato.db'}")
    assert str(blocker / "sub") in str(info.value)


def test_database_path_is_a_folder(legato_home: Path) -> None:
    (legato_home / "legato.db").mkdir(parents=True)
    with pytest.raises((StoreError, HomeNotWritableError)) as info:
        robust_flow()
    assert str(legato_home / "legato.db") in str(info.value)
    assert_not_raw(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes to read-only folders anyway")
def test_read_only_home(legato_home: Path) -> None:
    legato_home.mkdir(parents=True)
    legato_home.chmod(0o500)
    try:
        with pytest.raises(HomeNotWritableError) as info:
            robust_flow()
        assert str(legato_home) in str(info.value)
        assert_not_raw(info.value)
    finally:
        legato_home.chmod(0o700)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes to read-only files anyway")
def test_read_only_database_file(legato_home: Path) -> None:
    assert robust_flow() == 3
    from legato.client.factory import close_clients

    close_clients()
    for p in legato_home.glob("legato.db*"):
        p.chmod(0o400)
    legato_home.chmod(0o500)
    try:
        with pytest.raises(HomeNotWritableError) as info:
            robust_flow()
        assert_not_raw(info.value)
    finally:
        legato_home.chmod(0o700)


# -- (d) an unreachable PostgreSQL --------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://legato:hunter2secret@127.0.0.1:1/history",
        "postgresql://legato:hunter2secret@127.0.0.1:1/history",
        "postgresql+asyncpg://legato:hunter2secret@127.0.0.1:1/history",
    ],
)
def test_unreachable_postgres(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_DATABASE_URL", url)
    reset_settings_cache()
    with pytest.raises(StoreError) as info:
        robust_flow()
    msg = str(info.value)
    assert "hunter2secret" not in msg
    assert "hunter2secret" not in repr(info.value)
    assert "127.0.0.1" in msg and ":1" in msg
    assert "Cannot connect" in msg and "LEGATO_DATABASE_URL" in msg
    assert_not_raw(info.value)


@pytest.mark.postgres
def test_postgres_database_that_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://postgres:hunter2secret@127.0.0.1:5432/legato_no_such_database"
    monkeypatch.setenv("LEGATO_DATABASE_URL", url)
    reset_settings_cache()
    with pytest.raises(StoreError) as info:
        robust_flow()
    msg = str(info.value)
    assert "hunter2secret" not in msg
    assert "legato_no_such_database" in msg
    assert_not_raw(info.value)


def test_a_bad_database_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_DATABASE_URL", "nosuchdialect://user:hunter2secret@host/db")
    reset_settings_cache()
    with pytest.raises(LegatoError) as info:
        robust_flow()
    assert "hunter2secret" not in str(info.value)
    assert_not_raw(info.value)


def test_a_full_buffer_meeting_a_locked_history_does_not_fail_the_task(
    legato_home: Path, lock_holder, short_busy_timeout
) -> None:
    """Batched mode writes a full buffer from the engine's thread. If the history is locked
    right then, the task goes on (rows kept), and everything is written once it is free."""
    from legato.client import get_client
    from legato.store.writer import BatchedPolicy

    assert robust_flow() == 3
    client = get_client()
    client.writer.policy.stop()
    client.writer.policy = BatchedPolicy(interval=3600, max_rows=5)  # no background flushes
    holders = []

    @task
    def lock_history() -> None:
        holders.append(lock_holder(legato_home / "legato.db"))

    @flow(name="full-buffer")
    def full_buffer() -> int:
        lock_history()
        s = 0
        for _ in range(20):
            s = inc(s)  # each one fills the buffer past max_rows while the history is locked
        holders[0].release()
        return s

    assert full_buffer() == 20
    db_path = legato_home / "legato.db"
    assert run_states(db_path) == ["COMPLETED", "COMPLETED"]
    assert history_counts(db_path)["task_run"] == 3 + 21
