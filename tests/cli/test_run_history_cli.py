"""`legato flow-run` and `legato task-run` read back what the client wrote, on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.states import State, StateType

WIDE = {"COLUMNS": "250"}  # so Rich tables do not fold ids in the assertions below


def run(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def ok_json(*args: str):
    return json.loads(ok(*args, "--json").stdout)  # stdout is JSON and nothing else


def fails(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def _at(when: dt.datetime, type_: StateType, name: str | None = None, message: str | None = None):
    return State(type_, name, message, timestamp=when)


@pytest.fixture
def runs(history):
    """Four flow runs (created oldest first in this order) and three task runs under `done`."""
    from legato.client import get_client

    c = get_client()
    now = dt.datetime.now(dt.timezone.utc)
    ids = SimpleNamespace(cached=str(uuid4()), done=str(uuid4()), failed=str(uuid4()))
    ids.running = str(uuid4())
    ids.now = now

    def flow_run(id, flow, name, start, end_state=None, **kw):
        c.create_flow_run(
            id=id, flow_name=flow, name=name, state=_at(start, StateType.RUNNING), **kw
        )
        if end_state is not None:
            c.set_flow_run_state(id, end_state)

    day2 = now - dt.timedelta(days=2)
    flow_run(
        ids.cached,
        "etl",
        "lazy-cat",
        day2,
        _at(day2 + dt.timedelta(seconds=1), StateType.COMPLETED, "Cached"),
    )
    h3 = now - dt.timedelta(hours=3)
    flow_run(
        ids.done,
        "etl",
        "brave-otter",
        h3,
        _at(h3 + dt.timedelta(seconds=75), StateType.COMPLETED),
        parameters={"year": 2021},
        tags=["nightly"],
    )
    h1 = now - dt.timedelta(hours=1)
    flow_run(
        ids.failed,
        "etl",
        "calm-lynx",
        h1,
        _at(h1 + dt.timedelta(seconds=2), StateType.FAILED, message="boom"),
    )
    flow_run(ids.running, "report", "quick-fox", now)

    ids.tasks = []
    for i, (end, name) in enumerate(
        [(StateType.COMPLETED, None), (StateType.COMPLETED, "Cached"), (StateType.FAILED, None)]
    ):
        tid = str(uuid4())
        ids.tasks.append(tid)
        t0 = h3 + dt.timedelta(seconds=1 + i)
        c.create_task_run(
            id=tid,
            flow_run_id=ids.done,
            task_key="etl.extract",
            name=f"extract-{i}",
            dynamic_key=str(i),
            state=_at(t0, StateType.PENDING),
        )
        started = t0 + dt.timedelta(seconds=0.5)  # states are ordered by time: keep them apart
        c.set_task_run_state(tid, _at(started, StateType.RUNNING))
        c.set_task_run_state(
            tid,
            _at(
                started + dt.timedelta(seconds=1),
                end,
                name,
                "bad row" if end is StateType.FAILED else None,
            ),
        )

    def log(level, message, task_run_id=None, seconds=0):
        c.write_log(
            {
                "id": str(uuid4()),
                "flow_run_id": ids.done,
                "task_run_id": task_run_id,
                "name": "legato.task_runs" if task_run_id else "legato.flow_runs",
                "level": level,
                "message": message,
                "timestamp": h3 + dt.timedelta(seconds=seconds),
            }
        )

    log(20, "Beginning flow run 'brave-otter'", seconds=0)
    log(10, "details [not markup]", ids.tasks[0], seconds=1)
    log(40, "Task run 'extract-2' failed: bad row", ids.tasks[2], seconds=4)
    log(20, "Finished in state Completed()", seconds=75)
    c.flush()
    return ids


def _ids(rows):
    return [r["id"] for r in rows]


# -- flow-run ls -------------------------------------------------------------------------------
def test_ls_json_lists_newest_first_with_utc_times(runs):
    rows = ok_json("flow-run", "ls")
    assert _ids(rows) == [runs.running, runs.failed, runs.done, runs.cached]
    done = rows[2]
    assert (done["name"], done["flow_name"], done["state_type"], done["state_name"]) == (
        "brave-otter",
        "etl",
        "COMPLETED",
        "Completed",
    )
    assert done["parameters"] == {"year": 2021}
    start = dt.datetime.fromisoformat(done["start_time"].replace("Z", "+00:00"))
    assert start.utcoffset() == dt.timedelta(0)
    assert start == runs.now - dt.timedelta(hours=3)
    assert done["total_run_time"] == pytest.approx(75)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--flow-name", "report"], ["running"]),
        (["--flow-name", "nope"], []),
        (["--state", "COMPLETED"], ["done", "cached"]),
        (["--state", "completed"], ["done", "cached"]),
        (["--state", "Cached"], ["cached"]),
        (["--state", "cached", "--state", "failed"], ["failed", "cached"]),
        (["--state", "FAILED", "--state", "Running"], ["running", "failed"]),
        (["--state", "retrying"], []),
        (["--flow-name", "etl", "--state", "completed"], ["done", "cached"]),
        (["--since", "2h"], ["running", "failed"]),
        (["--since", "150m", "--state", "failed"], ["failed"]),
        (["--until", "2h"], ["done", "cached"]),
        (["--since", "1d", "--until", "30m"], ["failed", "done"]),
        (["--since", "1w"], ["running", "failed", "done", "cached"]),
        (["--limit", "2"], ["running", "failed"]),
        (["--state", "completed", "--limit", "1"], ["done"]),
    ],
)
def test_ls_filters(runs, args, expected):
    assert _ids(ok_json("flow-run", "ls", *args)) == [getattr(runs, n) for n in expected]


def test_ls_since_takes_iso_datetimes(runs):
    since = (runs.now - dt.timedelta(hours=2)).isoformat()
    assert _ids(ok_json("flow-run", "ls", "--since", since)) == [runs.running, runs.failed]
    # a time without an offset is local time
    local = (runs.now - dt.timedelta(hours=4)).astimezone().replace(tzinfo=None).isoformat()
    assert _ids(ok_json("flow-run", "ls", "--since", local)) == [
        runs.running,
        runs.failed,
        runs.done,
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state", "bogus"], "Unknown state 'bogus'"),
        (["--since", "yesterday"], "'yesterday' is neither an ISO datetime"),
        (["--since", "1h", "--until", "2h"], "--since is later than --until"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_ls_bad_options_are_usage_errors(runs, args, message):
    result = run("flow-run", "ls", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.replace("│", " ").split())


def test_ls_table_shows_runs_in_local_time(runs):
    out = ok("flow-run", "ls").stdout
    lines = out.splitlines()
    row = next(line for line in lines if runs.done in line)
    start = (runs.now - dt.timedelta(hours=3)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    for cell in ("brave-otter", "etl", "Completed", start, "1m 15s"):
        assert cell in row
    assert "Failed" in next(line for line in lines if runs.failed in line)
    assert "quick-fox" in out and "lazy-cat" in out and "Cached" in out


def test_ls_with_nothing_to_show(history):
    assert ok_json("flow-run", "ls") == []
    result = ok("flow-run", "ls")
    assert result.stdout == "" and "No flow runs found." in result.stderr


# -- flow-run inspect --------------------------------------------------------------------------
def test_inspect_json_has_the_run_its_states_and_task_counts(runs):
    data = ok_json("flow-run", "inspect", runs.done)
    assert data["id"] == runs.done and data["name"] == "brave-otter"
    assert data["tags"] == ["nightly"]
    assert [(s["type"], s["name"]) for s in data["states"]] == [
        ("RUNNING", "Running"),
        ("COMPLETED", "Completed"),
    ]
    assert data["task_runs"] == {"total": 3, "by_state": {"Cached": 1, "Completed": 1, "Failed": 1}}


def test_inspect_accepts_a_unique_prefix_and_shows_states_in_order(runs):
    out = ok("flow-run", "inspect", runs.failed[:8]).stdout
    assert runs.failed in out and "calm-lynx" in out and "boom" in out
    table = out[out.index("States") :]
    assert table.index("RUNNING") < table.index("FAILED")
    assert "Task runs: 0" in out

    out = ok("flow-run", "inspect", runs.done.upper()).stdout
    assert '{"year": 2021}' in out
    assert "Task runs: 3 (1 Cached, 1 Completed, 1 Failed)" in out


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "00000000-0000-0000-0000-000000000000",
            "No flow run with id 00000000-0000-0000-0000-000000000000",
        ),
        ("ffffffff", "No flow run with an id starting 'ffffffff'"),
        ("ab", "too short"),
        # on PostgreSQL these would be a database error and wildcards matching every run
        ("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "is not a flow run id"),
        ("%%%%", "is not a flow run id"),
        ("____", "is not a flow run id"),
    ],
)
def test_unknown_flow_run_ids_are_clear_errors(runs, given, message):
    for command in (
        ["flow-run", "inspect"],
        ["flow-run", "logs"],
        ["task-run", "ls", "--flow-run"],
    ):
        assert message in fails(*command, given)


# -- flow-run logs -----------------------------------------------------------------------------
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| (\w+) *\| (\S+) - (.*)$")


def test_logs_print_one_prefect_style_line_each(runs):
    lines = ok("flow-run", "logs", runs.done).stdout.splitlines()
    parsed = [LINE.match(line).groups() for line in lines]
    assert parsed == [
        ("INFO", "legato.flow_runs", "Beginning flow run 'brave-otter'"),
        ("DEBUG", "legato.task_runs", "details [not markup]"),
        ("ERROR", "legato.task_runs", "Task run 'extract-2' failed: bad row"),
        ("INFO", "legato.flow_runs", "Finished in state Completed()"),
    ]
    first = (runs.now - dt.timedelta(hours=3)).astimezone()
    assert lines[0].startswith(
        f"{first:%Y-%m-%d %H:%M:%S}.{first.microsecond // 1000:03d} | INFO    | "
    )


def test_logs_level_head_tail_and_json(runs):
    def messages(*args):
        return [
            LINE.match(x).group(3)
            for x in ok("flow-run", "logs", runs.done, *args).stdout.splitlines()
        ]

    assert messages("--level", "error") == ["Task run 'extract-2' failed: bad row"]
    assert messages("--level", "INFO", "--head", "2") == [
        "Beginning flow run 'brave-otter'",
        "Task run 'extract-2' failed: bad row",
    ]
    assert messages("--limit", "1") == ["Beginning flow run 'brave-otter'"]
    assert messages("--tail", "1") == ["Finished in state Completed()"]
    rows = ok_json("flow-run", "logs", runs.done[:6], "--level", "warning")
    assert [(r["level"], r["task_run_id"], r["flow_run_id"]) for r in rows] == [
        (40, runs.tasks[2], runs.done)
    ]
    assert rows[0]["timestamp"].endswith(("Z", "+00:00"))
    assert run("flow-run", "logs", runs.done, "--head", "1", "--tail", "1").exit_code == 2
    assert run("flow-run", "logs", runs.done, "--level", "LOUD").exit_code == 2


def test_logs_of_a_run_without_any(runs):
    result = ok("flow-run", "logs", runs.failed)
    assert result.stdout == "" and "No log lines for flow run 'calm-lynx'" in result.stderr
    assert ok_json("flow-run", "logs", runs.failed) == []


# -- task runs ---------------------------------------------------------------------------------
def test_task_run_ls_of_a_flow_run_in_creation_order(runs):
    rows = ok_json("task-run", "ls", "--flow-run", runs.done[:8])
    assert _ids(rows) == runs.tasks
    assert [r["state_name"] for r in rows] == ["Completed", "Cached", "Failed"]
    assert all(r["flow_run_id"] == runs.done for r in rows)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--state", "failed"], [2]),
        (["--state", "Cached"], [1]),
        (["--state", "COMPLETED"], [0, 1]),
        (["--state", "cached", "--state", "FAILED"], [1, 2]),
        (["--state", "running"], []),
        (["--limit", "2"], [0, 1]),
    ],
)
def test_task_run_ls_filters(runs, args, expected):
    rows = ok_json("task-run", "ls", "--flow-run", runs.done, *args)
    assert _ids(rows) == [runs.tasks[i] for i in expected]


def test_task_run_ls_across_flow_runs_is_newest_first(runs):
    assert _ids(ok_json("task-run", "ls")) == runs.tasks[::-1]
    out = ok("task-run", "ls").stdout
    assert "extract-2" in out and runs.done[:8] in out and "Cached" in out


def test_task_run_ls_table(runs):
    out = ok("task-run", "ls", "--flow-run", runs.done).stdout
    lines = out.splitlines()
    for i, state in enumerate(["Completed", "Cached", "Failed"]):
        row = next(line for line in lines if runs.tasks[i] in line)
        assert f"extract-{i}" in row and "etl.extract" in row and state in row and "1.0s" in row


def test_task_run_inspect(runs):
    tid = runs.tasks[2]
    data = ok_json("task-run", "inspect", tid[:10])
    assert (
        data["id"] == tid and data["state_type"] == "FAILED" and data["state_message"] == "bad row"
    )
    assert [s["type"] for s in data["states"]] == ["PENDING", "RUNNING", "FAILED"]
    out = ok("task-run", "inspect", tid).stdout
    assert f"brave-otter ({runs.done})" in out and "etl.extract" in out and "bad row" in out
    table = out[out.index("States") :]
    assert table.index("PENDING") < table.index("RUNNING") < table.index("FAILED")
    assert "No task run with id" in fails("task-run", "inspect", str(uuid4()))
    assert "is not a task run id" in fails("task-run", "inspect", "____")


def test_a_configuration_error_is_one_red_line(runs, monkeypatch):
    monkeypatch.setenv("LEGATO_PROFILE", "missing")
    line = fails("flow-run", "ls")
    assert "The active profile 'missing' does not exist" in line
