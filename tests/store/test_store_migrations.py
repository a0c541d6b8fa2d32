"""Schema creation: the Alembic migrations, the fast create_all + stamp path, and races."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from legato.store import models
from legato.store.database import (
    HEAD_REVISION,
    MIGRATIONS_DIR,
    Database,
    alembic_config,
    run_alembic_upgrade,
)

# SQLite cannot reflect the expression indexes (coalesce(start_time, created)): the comparisons
# below check them on PostgreSQL, and say so on SQLite in a warning we expect
pytestmark = [
    pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index"),
    pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based"),
]

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("empty_pg_url")


def _diff(conn: sa.Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(ctx, models.metadata)


def _schema(url: str) -> dict[str, Any]:
    """Everything the inspector reports about the history tables, in a comparable form."""
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as conn:
            insp = sa.inspect(conn)
            out: dict[str, Any] = {}
            for t in sorted(insp.get_table_names()):
                out[t] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)
                    ],
                    "pk": insp.get_pk_constraint(t)["constrained_columns"],
                    "fks": sorted(
                        (tuple(f["constrained_columns"]), f["referred_table"],
                         tuple(f["referred_columns"]), (f.get("options") or {}).get("ondelete"))
                        for f in insp.get_foreign_keys(t)
                    ),
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                        for i in insp.get_indexes(t)
                    ),
                    "unique": sorted(
                        tuple(u["column_names"]) for u in insp.get_unique_constraints(t)
                    ),
                }
            return out
    finally:
        eng.dispose()


def _version(url: str) -> list[str]:
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    finally:
        eng.dispose()


def _upgrade(url: str) -> None:
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.begin() as conn:
            run_alembic_upgrade(conn)
    finally:
        eng.dispose()


def test_alembic_migration_on_an_empty_database_matches_the_models(empty_url: str) -> None:
    _upgrade(empty_url)
    eng = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as conn:
            assert _diff(conn) == []
            assert set(sa.inspect(conn).get_table_names()) == {
                *models.metadata.tables, "alembic_version"
            }
    finally:
        eng.dispose()
    assert _version(empty_url) == [HEAD_REVISION]


def test_fast_path_creates_the_models_schema_stamped_at_head(empty_url: str) -> None:
    db = Database(empty_url)
    try:
        db.ensure_ready()
        with db.engine.connect() as conn:
            assert _diff(conn) == []
    finally:
        db.dispose()
    assert _version(empty_url) == [HEAD_REVISION]


def test_fast_path_and_migration_give_the_same_schema(
    empty_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Beyond compare_metadata: tables, columns, keys, indexes, ON DELETE rules all equal."""
    db = Database(empty_url)
    try:
        db.ensure_ready()
    finally:
        db.dispose()
    fast = _schema(empty_url)
    if empty_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        other = request.getfixturevalue("new_pg_database")()
    _upgrade(other)
    assert _schema(other) == fast


def test_opening_a_database_at_head_changes_nothing(empty_url: str) -> None:
    _upgrade(empty_url)
    before = _schema(empty_url)
    db = Database(empty_url)
    try:
        db.ensure_ready()
        db.ensure_ready()
    finally:
        db.dispose()
    assert _schema(empty_url) == before
    assert _version(empty_url) == [HEAD_REVISION]


def test_a_migrated_database_takes_history_rows(empty_url: str, monkeypatch, tmp_path) -> None:
    """A database made by Alembic (not the fast path) works for a real flow."""
    _upgrade(empty_url)
    monkeypatch.setenv("LEGATO_DATABASE_URL", empty_url)
    from legato import flow, task

    @task
    def inc(x: int) -> int:
        return x + 1

    @flow
    def migrated_flow() -> int:
        return inc(inc(0))

    assert migrated_flow() == 2
    eng = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM task_run")).scalar() == 2
    finally:
        eng.dispose()


def test_downgrade_to_base_then_reopen(tmp_path: Path) -> None:
    """After `alembic downgrade base` (empty alembic_version table, no history tables), opening
    the database builds the schema again."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'down.db'}"
    _upgrade(url)
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        with eng.connect() as conn:
            assert not sa.inspect(conn).has_table("flow_run")
    finally:
        eng.dispose()
    db = Database(url)
    try:
        db.ensure_ready()
    finally:
        db.dispose()
    assert _version(url) == [HEAD_REVISION]
    assert "flow_run" in _schema(url)


def _revisions() -> dict[str, str | None]:
    """revision -> down_revision of every file in migrations/versions (read, not imported)."""
    out: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        values: dict[str, Any] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    values[target.id] = ast.literal_eval(node.value)
        assert "revision" in values, f"{path.name} declares no revision"
        out[values["revision"]] = values.get("down_revision")
    return out


def test_head_revision_is_the_newest_migration() -> None:
    revs = _revisions()
    assert revs, "no migration files"
    # one linear chain: exactly one root, exactly one head
    assert sum(1 for down in revs.values() if down is None) == 1
    referenced = {down for down in revs.values() if down is not None}
    assert referenced <= set(revs), "a migration revises one that does not exist"
    heads = set(revs) - referenced
    assert heads == {HEAD_REVISION}


def test_head_revision_agrees_with_alembic() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD_REVISION]


def test_fast_path_does_not_import_alembic(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from legato.store.database import Database
        db = Database("sqlite:///{tmp_path / 'x.db'}")
        db.ensure_ready()
        print("alembic" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- processes opening a fresh history at once --------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, sys, time
    go = sys.argv[1]
    from legato import flow, task

    @task
    def inc(x):
        return x + 1

    @flow(name="race-flow")
    def race_flow(n: int):
        s = 0
        for _ in range(n):
            s = inc(s)
        return s

    # every child is loaded and waiting before any of them touches the history
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.001)
    assert race_flow(5) == 5
    print("done", flush=True)
    """
)


def _race(env: dict[str, str], tmp_path: Path, n: int) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(go)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(n)
    ]
    try:
        for p in procs:
            line = p.stdout.readline()  # blocks until the child is ready (or died)
            assert line.strip() == "ready", p.communicate()[1]
        go.touch()
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert "done" in out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _child_env(home: Path, url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(home)
    env["LEGATO_LOGGING_TO_CONSOLE"] = "false"
    if url:
        env["LEGATO_DATABASE_URL"] = url
    return env


@pytest.mark.parametrize("n", [2, 4])
def test_processes_opening_a_fresh_sqlite_home_at_once(tmp_path: Path, n: int) -> None:
    home = tmp_path / "home"  # does not exist yet: every child races to create it
    _race(_child_env(home), tmp_path, n)
    url = f"sqlite:///{home / 'legato.db'}"
    assert _version(url) == [HEAD_REVISION]
    _check_race_history(url, n)


@pytest.mark.postgres
def test_processes_opening_a_fresh_postgres_database_at_once(
    tmp_path: Path, empty_pg_url: str
) -> None:
    _race(_child_env(tmp_path / "home", empty_pg_url), tmp_path, 4)
    assert _version(empty_pg_url) == [HEAD_REVISION]
    _check_race_history(empty_pg_url, 4)


def _check_race_history(url: str, n: int) -> None:
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as conn:
            q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
            assert q("SELECT name FROM flow") == [("race-flow",)]
            assert q("SELECT state_type, count(*) FROM flow_run GROUP BY state_type") == [
                ("COMPLETED", n)
            ]
            assert q("SELECT state_type, count(*) FROM task_run GROUP BY state_type") == [
                ("COMPLETED", 5 * n)
            ]
            assert q("SELECT count(*) FROM task_run_state") == [(15 * n,)]
            with eng.connect() as c2:
                assert c2.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        eng.dispose()
