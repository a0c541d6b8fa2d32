"""`legato history prune`: what it deletes, its options, its dry run, its confirmation and its
errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from legato import flow, get_run_logger, task
from legato.cli import app
from legato.runtime import flow_run as current_flow_run
from legato.store import models

fr, tr, log = models.flow_run, models.task_run, models.log


@task
def step(x: int) -> int:
    get_run_logger().info("step %d", x)
    return x


@flow(name="prune-cli-etl")
def etl() -> str:
    get_run_logger().info("starting")
    step(1)
    step(2)
    return current_flow_run.id


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "250"})


def ok(*args: str, input: str | None = None):
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def fails(*args: str, input: str | None = None) -> str:
    result = run(*args, input=input)
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    return lines[-1]


def db() -> Any:
    from legato.settings import get_settings
    from legato.store.database import get_database

    s = get_settings()
    return get_database(s.resolved_database_url, s.database_busy_timeout)


def age(run_id: str, days: float, state_type: str | None = None) -> None:
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    values: dict[str, Any] = {"created": when, "end_time": when}
    if state_type is not None:
        values.update(state_type=state_type, end_time=None)
    with db().write() as conn:
        conn.execute(sa.update(fr).where(fr.c.id == run_id).values(**values))
        conn.execute(
            sa.update(tr).where(tr.c.flow_run_id == run_id).values(created=when, end_time=when)
        )
        conn.execute(sa.update(log).where(log.c.flow_run_id == run_id).values(timestamp=when))


def rows(run_id: str) -> dict[str, int]:
    def count(table: sa.Table, *where: Any) -> int:
        with db().read() as conn:
            q = sa.select(sa.func.count()).select_from(table).where(*where)
            return int(conn.execute(q).scalar())

    return {
        "flow_run": count(fr, fr.c.id == run_id),
        "task_runs": count(tr, tr.c.flow_run_id == run_id),
        "logs": count(log, log.c.flow_run_id == run_id),
    }


@pytest.fixture
def runs(history) -> dict[str, str]:
    """A 40-day-old finished run, a 20-day-old one, and a 40-day-old one still running."""
    ids = {"old": etl(), "recent": etl(), "running": etl()}
    age(ids["old"], 40)
    age(ids["recent"], 20)
    age(ids["running"], 40, state_type="RUNNING")
    return ids


GONE = {"flow_run": 0, "task_runs": 0, "logs": 0}


def test_prune_deletes_old_finished_runs_and_reports_the_counts(runs) -> None:
    before = {k: rows(v) for k, v in runs.items()}
    out = ok("history", "prune", "--older-than", "30d").stdout  # stdin not a tty: no question

    assert rows(runs["old"]) == GONE
    assert rows(runs["recent"]) == before["recent"]
    assert rows(runs["running"]) == {**before["running"], "logs": 0}  # old lines go, the run stays
    assert "Deleted 1 flow run, 2 task runs" in out
    assert f"{before['old']['logs'] + before['running']['logs']} log lines" in out


def test_json_prints_the_counts_and_nothing_else(runs) -> None:
    before = rows(runs["old"])
    payload = json.loads(ok("history", "prune", "--older-than", "30", "--json").stdout)
    assert payload["dry_run"] is False
    assert payload["flow_runs"] == 1 and payload["task_runs"] == before["task_runs"]
    assert payload["states"] > 0 and payload["cache_entries"] == 0
    assert rows(runs["old"]) == GONE


def test_dry_run_counts_and_deletes_nothing(runs) -> None:
    before = {k: rows(v) for k, v in runs.items()}
    predicted = json.loads(ok("history", "prune", "--older-than", "30d", "--dry-run", "--json").stdout)
    text = ok("history", "prune", "--older-than", "30d", "--dry-run").stdout
    assert {k: rows(v) for k, v in runs.items()} == before
    assert predicted["dry_run"] is True and text.startswith("Would delete 1 flow run")

    done = json.loads(ok("history", "prune", "--older-than", "30d", "--json").stdout)
    assert {k: v for k, v in done.items() if k != "dry_run"} == {
        k: v for k, v in predicted.items() if k != "dry_run"
    }


@pytest.mark.parametrize("form", ["30d", "30D", "720h", "43200m", "30", "30.0", "5w", "4w"])
def test_every_duration_form_is_understood(runs, form: str) -> None:
    ok("history", "prune", "--older-than", form)
    assert rows(runs["old"]) == GONE  # 40 days old
    assert rows(runs["recent"])["flow_run"] == 1  # 20 days old


@pytest.mark.parametrize("bad", ["3x", "-5d", "30 days", "d", "", "1e3", "5y"])
def test_a_bad_duration_is_one_clear_error_and_deletes_nothing(runs, bad: str) -> None:
    before = {k: rows(v) for k, v in runs.items()}
    line = fails("history", "prune", "--older-than", bad, "--yes")
    assert repr(bad) in line
    assert "30d, 12h, 90m, 2w" in line and "number of days" in line
    assert {k: rows(v) for k, v in runs.items()} == before


def test_kinds_can_be_left_out(runs) -> None:
    before = rows(runs["old"])
    ok("history", "prune", "--older-than", "30d", "--no-flow-runs", "--no-task-runs")
    assert rows(runs["old"]) == {**before, "logs": 0}
    ok("history", "prune", "--older-than", "30d", "--no-flow-runs", "--no-logs")
    assert rows(runs["old"]) == {"flow_run": 1, "task_runs": 0, "logs": 0}
    ok("history", "prune", "--older-than", "30d", "--no-task-runs", "--no-logs")
    assert rows(runs["old"]) == GONE


def test_without_older_than_the_retention_settings_apply(runs, monkeypatch) -> None:
    from legato.settings import reset_settings_cache

    line = fails("history", "prune")
    assert "--older-than" in line and "LEGATO_RETENTION_FLOW_RUNS_DAYS" in line
    before = rows(runs["old"])
    monkeypatch.setenv("LEGATO_RETENTION_LOGS_DAYS", "30")
    reset_settings_cache()
    ok("history", "prune")
    assert rows(runs["old"]) == {**before, "logs": 0}  # logs only: no flow-run retention set


def test_on_a_terminal_it_asks_first(runs, monkeypatch) -> None:
    import legato.cli.history as history_cli

    monkeypatch.setattr(history_cli, "_stdin_is_tty", lambda: True)
    before = rows(runs["old"])
    result = run("history", "prune", "--older-than", "30d", input="n\n")
    assert result.exit_code == 1
    assert "Delete 1 flow run, 2 task runs" in result.stdout
    assert "nothing was deleted" in result.stderr
    assert rows(runs["old"]) == before

    ok("history", "prune", "--older-than", "30d", input="y\n")
    assert rows(runs["old"]) == GONE
    # --yes does not ask
    age(etl_id := etl(), 40)
    ok("history", "prune", "--older-than", "30d", "--yes", input="")
    assert rows(etl_id) == GONE
