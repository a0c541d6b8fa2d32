"""SqlWarehouse against real databases: the default DuckDB file in LEGATO_HOME, and the machine's
PostgreSQL server (a database this module creates and drops), through the same tests."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from legato.blocks.warehouse import SqlWarehouse
from legato.exceptions import BlockError, MissingExtraError

PG_ADMIN = os.environ.get("LEGATO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin():
    import psycopg

    return psycopg.connect(PG_ADMIN.replace("postgresql+psycopg://", "postgresql://"),
                           autocommit=True)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A database of this module's own on the local PostgreSQL, dropped at the end."""
    name = f"legato_wh_{uuid.uuid4().hex[:10]}"
    try:
        admin = _admin()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN} ({exc}); start it with "
                    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The module's database, emptied for this test (every schema but the system ones)."""
    import psycopg

    with psycopg.connect(pg_database.replace("+psycopg", ""), autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(
            "select nspname from pg_namespace where nspname not like 'pg\\_%' "
            "and nspname <> 'information_schema'")]
        for schema in schemas:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.execute("CREATE SCHEMA public")
    return pg_database


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest) -> Iterator[SqlWarehouse]:
    """The default warehouse (DuckDB in this test's LEGATO_HOME), then PostgreSQL."""
    if request.param == "duckdb":
        block = SqlWarehouse()
    else:
        block = SqlWarehouse(url=request.getfixturevalue("pg_url"))
    yield block
    block.close()


@pytest.fixture
def chunk_log() -> Iterator[list[str]]:
    """The warehouse logger's messages (DEBUG and up) while the test runs."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("legato.blocks.warehouse")
    handler, old_level = Collect(level=logging.DEBUG), log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield records
    log.removeHandler(handler)
    log.setLevel(old_level)


def trips(n: int, start: int = 0) -> pd.DataFrame:
    ids = range(start, start + n)
    return pd.DataFrame({
        "trip_id": list(ids),
        "fare": [i * 1.25 for i in ids],
        "vendor": [f"v{i % 3}" for i in ids],
        "pickup": pd.date_range("2024-01-01", periods=n, freq="min") + pd.Timedelta(minutes=start),
    })


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the block type ------------------------------------------------------------------------------
def test_block_type_and_secret_url() -> None:
    assert SqlWarehouse.get_block_type_name() == "SQL Warehouse"
    assert SqlWarehouse.get_block_type_slug() == "sql-warehouse"
    assert SqlWarehouse.get_block_schema()["secret_fields"] == ["url"]
    block = SqlWarehouse(url="postgresql+psycopg://me:hunter2@db.example.com/analytics")
    assert "hunter2" not in repr(block) and "hunter2" not in str(block.model_dump())
    assert block.safe_url() == "postgresql+psycopg://me:***@db.example.com/analytics"
    with pytest.raises(ValidationError) as info:
        SqlWarehouse(url=["hunter2"])
    assert "hunter2" not in str(info.value)


def test_default_is_a_duckdb_file_in_legato_home(legato_home: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    block = SqlWarehouse()
    assert block.resolved_url() == f"duckdb:///{legato_home / 'warehouse.duckdb'}"
    assert block.write_dataframe(trips(3), "trips") == 3
    assert (legato_home / "warehouse.duckdb").is_file()
    # resolved when used: a script that moves LEGATO_HOME gets the new home's file
    other = tmp_path / "other-home"
    monkeypatch.setenv("LEGATO_HOME", str(other))
    assert block.fetch_all("select count(*) from information_schema.tables") == [(0,)]
    assert (other / "warehouse.duckdb").is_file()


def test_duckdb_url_to_a_file_and_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "wh.duckdb"
    SqlWarehouse(url=f"duckdb:///{path}").write_dataframe(trips(4), "trips")
    assert SqlWarehouse(url=f"duckdb:///{path}").fetch_one("select count(*) from trips") == (4,)
    memory = SqlWarehouse(url="duckdb:///:memory:")
    memory.write_dataframe(trips(2), "trips")
    assert memory.fetch_all("select trip_id from trips order by 1") == [(0,), (1,)]


# -- writing -------------------------------------------------------------------------------------
def test_append_twice_adds_the_rows(warehouse: SqlWarehouse) -> None:
    assert warehouse.write_dataframe(trips(10), "trips") == 10
    assert warehouse.write_dataframe(trips(15, start=10), "trips", if_exists="append") == 15
    assert warehouse.fetch_one("select count(*), min(trip_id), max(trip_id) from trips") == (
        25, 0, 24)


def test_chunks_are_honoured(warehouse: SqlWarehouse, chunk_log: list[str]) -> None:
    assert warehouse.write_dataframe(trips(1050), "trips", chunksize=500) == 1050
    chunks = [m for m in chunk_log if m.startswith("Wrote chunk")]
    assert chunks == ["Wrote chunk 1 (500 rows) to trips", "Wrote chunk 2 (500 rows) to trips",
                      "Wrote chunk 3 (50 rows) to trips"]
    assert warehouse.fetch_one(
        "select count(*), count(distinct trip_id), sum(trip_id) from trips") == (
        1050, 1050, sum(range(1050)))


def test_column_types_round_trip(warehouse: SqlWarehouse) -> None:
    df = pd.DataFrame({
        "n": [1, -2, 2**40],
        "x": [0.5, -1.25, 1e10],
        "s": ["a", "é ü", ""],
        "t": pd.to_datetime(["2024-01-01 00:00:00", "2024-02-29 12:34:56.789012",
                             "1999-12-31 23:59:59"], format="ISO8601"),
        "tz": pd.to_datetime(["2024-06-01 08:00:00+02:00"] * 3, utc=True),
        "b": [True, False, True],
        "maybe": ["x", None, "z"],
    })
    warehouse.write_dataframe(df, "typed")
    rows = warehouse.fetch_all("select n, x, s, t, tz, b, maybe from typed order by t")
    assert rows == [
        (2**40, 1e10, "", dt.datetime(1999, 12, 31, 23, 59, 59),
         dt.datetime(2024, 6, 1, 6, tzinfo=dt.timezone.utc), True, "z"),
        (1, 0.5, "a", dt.datetime(2024, 1, 1), dt.datetime(2024, 6, 1, 6, tzinfo=dt.timezone.utc),
         True, "x"),
        (-2, -1.25, "é ü", dt.datetime(2024, 2, 29, 12, 34, 56, 789012),
         dt.datetime(2024, 6, 1, 6, tzinfo=dt.timezone.utc), False, None),
    ]
    assert all(isinstance(r[0], int) and isinstance(r[1], float) for r in rows)


def test_replace_starts_the_table_again(warehouse: SqlWarehouse) -> None:
    warehouse.write_dataframe(trips(5), "trips")
    fresh = pd.DataFrame({"other": ["only", "these"]})
    assert warehouse.write_dataframe(fresh, "trips", if_exists="replace") == 2
    assert warehouse.fetch_all("select * from trips order by 1") == [("only",), ("these",)]


def test_fail_refuses_an_existing_table_and_creates_a_missing_one(
        warehouse: SqlWarehouse) -> None:
    assert warehouse.write_dataframe(trips(3), "trips", if_exists="fail") == 3
    with pytest.raises(BlockError, match=r"table trips already exists and if_exists='fail'"):
        warehouse.write_dataframe(trips(3), "trips", if_exists="fail")
    assert warehouse.fetch_one("select count(*) from trips") == (3,)


def test_schema_dot_table(warehouse: SqlWarehouse) -> None:
    assert warehouse.write_dataframe(trips(7), "staging.trips") == 7
    warehouse.write_dataframe(trips(1), "trips")
    assert warehouse.fetch_one("select count(*) from staging.trips") == (7,)
    assert warehouse.fetch_one("select count(*) from trips") == (1,)


def test_an_empty_frame_creates_the_table(warehouse: SqlWarehouse) -> None:
    assert warehouse.write_dataframe(trips(0), "empty") == 0
    assert warehouse.fetch_all("select * from empty") == []


def test_a_failed_write_writes_nothing(warehouse: SqlWarehouse) -> None:
    warehouse.write_dataframe(trips(4), "trips")
    bad = trips(1200).assign(surprise=1)  # a column the table does not have
    with pytest.raises(BlockError, match="writing to trips failed, nothing was written") as info:
        warehouse.write_dataframe(bad, "trips", chunksize=500)
    assert "surprise" in str(info.value) and len(str(info.value)) < 800
    assert warehouse.fetch_one("select count(*) from trips") == (4,)


@pytest.mark.parametrize("name", ["", "1trips", "a.b.c", "trips; drop table x", 'tr"ips',
                                  "my trips", None])
def test_bad_table_names(name: object) -> None:
    with pytest.raises(BlockError, match="is not a table name"):
        SqlWarehouse().write_dataframe(trips(1), name)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    block = SqlWarehouse()
    with pytest.raises(BlockError, match="if_exists must be"):
        block.write_dataframe(trips(1), "t", if_exists="upsert")  # type: ignore[arg-type]
    with pytest.raises(BlockError, match="chunksize must be a positive"):
        block.write_dataframe(trips(1), "t", chunksize=0)
    with pytest.raises(BlockError, match="takes a pandas DataFrame"):
        block.write_dataframe([{"a": 1}], "t")


# -- queries -------------------------------------------------------------------------------------
def test_named_parameters_work_alike(warehouse: SqlWarehouse) -> None:
    warehouse.execute("create table kv (k varchar, v integer)")
    warehouse.execute("insert into kv values (:k, :v)", [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    warehouse.execute("insert into kv values (:k, :v)", {"k": "c", "v": 3})
    assert warehouse.fetch_all("select k, v from kv where v >= :low order by v",
                               {"low": 2}) == [("b", 2), ("c", 3)]
    assert warehouse.fetch_one("select k from kv where k = :k", {"k": "zz"}) is None
    # casts and times are not binds
    assert warehouse.fetch_one(
        "select cast(v as varchar), '10:30', 'a::b' from kv where k = :k", {"k": "a"}) == (
        "1", "10:30", "a::b")
    assert warehouse.fetch_many("select k from kv order by k", size=2) == [("a",), ("b",)]
    with pytest.raises(BlockError, match="pass parameters as a dict"):
        warehouse.fetch_all("select * from kv where v = ?", [1])  # type: ignore[arg-type]


# -- errors that name what is wrong ----------------------------------------------------------------
@pytest.mark.postgres
def test_unreachable_database_names_the_server_not_the_password() -> None:
    port = _free_port()  # nothing listens there
    block = SqlWarehouse(url=f"postgresql+psycopg://me:hunter2@127.0.0.1:{port}/analytics")
    with pytest.raises(BlockError) as info:
        block.fetch_all("select 1")
    message = str(info.value)
    assert f"cannot connect to postgresql+psycopg://me:***@127.0.0.1:{port}/analytics" in message
    assert "refused" in message.lower() and "hunter2" not in message


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://me:hunter2@db:notaport/analytics",
    "hunter2 is not a url",
])
def test_unparseable_url_is_not_echoed(url: str) -> None:
    with pytest.raises(BlockError, match="not a database URL SQLAlchemy can read") as info:
        SqlWarehouse(url=url).fetch_all("select 1")
    assert "hunter2" not in str(info.value)


def test_unknown_dialect() -> None:
    with pytest.raises(BlockError, match="no dialect 'nosuchdb' installed") as info:
        SqlWarehouse(url="nosuchdb://me:hunter2@h/d").fetch_all("select 1")
    assert "hunter2" not in str(info.value)


def test_missing_duckdb_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)
    with pytest.raises(MissingExtraError, match=r"legato\[duckdb\]"):
        SqlWarehouse().write_dataframe(trips(1), "trips")


def test_a_file_open_in_another_process(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(BlockError, match="DuckDB lets one process write a file at a time"):
            SqlWarehouse(url=f"duckdb:///{path}").fetch_all("select 1")
    finally:
        holder.communicate("", timeout=30)


# -- saved and loaded ------------------------------------------------------------------------------
@pytest.mark.postgres
def test_save_load_and_write(pg_url: str) -> None:
    SqlWarehouse(url=pg_url).save("wh")
    loaded = SqlWarehouse.load("wh")
    assert loaded.url is not None and loaded.url.get_secret_value() == pg_url
    try:
        assert loaded.write_dataframe(trips(12), "loaded", chunksize=5) == 12
        assert loaded.fetch_one("select count(*) from loaded") == (12,)
    finally:
        loaded.close()


def test_save_load_the_default(legato_home: Path) -> None:
    SqlWarehouse().save("local")
    loaded = SqlWarehouse.load("local")
    assert loaded.url is None
    loaded.write_dataframe(trips(2), "trips")
    assert SqlWarehouse().fetch_one("select count(*) from trips") == (2,)


def test_sqlite_through_sqlalchemy_and_pickling_a_used_block(tmp_path: Path) -> None:
    import pickle

    block = SqlWarehouse(url=f"sqlite:///{tmp_path / 'wh.db'}")
    assert block.write_dataframe(trips(30), "trips", chunksize=7) == 30
    assert block.fetch_one("select count(*), sum(trip_id) from trips") == (30, sum(range(30)))
    # a used block (holding an engine) still goes to another process, and reconnects there
    copy = pickle.loads(pickle.dumps(block))
    assert copy.url is not None and copy.url.get_secret_value() == f"sqlite:///{tmp_path / 'wh.db'}"
    assert copy.fetch_one("select count(*) from trips") == (30,)
    memory = SqlWarehouse(url="duckdb:///:memory:")
    memory.fetch_all("select 1")
    assert pickle.loads(pickle.dumps(memory)).fetch_one("select 42") == (42,)
    for b in (block, copy, memory):
        b.close()
