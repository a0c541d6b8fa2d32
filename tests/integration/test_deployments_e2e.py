"""Deployments end to end, with real processes: a `legato server start`, `legato` commands,
`legato agent start` and the flow runs' own processes.

- The seed's sections 2 and 3: a deployment built from Python (`Deployment.build_from_flow(...)
  .apply()`) or with `legato deployment build -sb github/BLOCK/ --apply` (code pulled from a git
  repository), run with `legato deployment run`, executed by `legato agent start -q default`.
- Bad parameters are refused by `legato deployment run` before any run exists.
- A server restarted with runs due and scheduled loses none and runs each once.
- The scheduler: two servers on one PostgreSQL database make each (deployment, time) once, also
  across redeploys and schedule edits; `legato deployment backfill` fills a past window once.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import (
    FIXTURES,
    UTC,
    Stack,
    database_url,
    lines,
    now,
    open_stack,
    query,
    running_count,
    truncate,
)

from legato.client.factory import close_clients, get_client
from legato.core.run_control import schedule_runs
from legato.deployments import Deployment
from legato.filesystems import GitHub
from legato.schedules import IntervalSchedule
from legato.settings import build_settings, reset_settings_cache
from legato.states import StateType
from legato.store.database import get_database

RUN_ID = re.compile(r"\(([0-9a-f]{8}-[0-9a-f-]{27})\)")


@pytest.fixture
def stack(tmp_path: Path, legato_home: Path) -> Iterator[Stack]:
    with open_stack(tmp_path, legato_home) as s:
        yield s


def created_run_id(done: subprocess.CompletedProcess[str]) -> str:
    match = RUN_ID.search(done.stdout.replace("\n", ""))
    assert match, done.stdout
    return match.group(1)


def assert_completed_once(stack: Stack, run_id: str) -> None:
    assert stack.run(run_id).state_type is StateType.COMPLETED
    assert running_count(stack, run_id) == 1, stack.state_names(run_id)


def log_text(stack: Stack, run_id: str) -> str:
    done = stack.legato("flow-run", "logs", run_id)
    return done.stdout


# -- the seed ------------------------------------------------------------------------------------
def test_seed_deployment_from_python_runs_on_an_agent(stack: Stack) -> None:
    stack.start_server()
    stack.add_flow_file("etl.py")
    shutil.copy(FIXTURES / "deploy_seed.py", stack.project / "deploy.py")
    applied = stack.python("deploy.py").stdout.strip()

    dep = stack.client.read_deployment_by_name("Parent GCP flow/GCP-to-BQ-flow")
    assert str(dep["id"]) == applied
    assert dep["entrypoint"] == "flows/etl.py:gather_flow"
    assert dep["parameters"] == {"year": 2020, "color": "yellow", "months": [1, 2]}

    # a parameter of the wrong type is refused before anything is queued
    bad = stack.legato("deployment", "run", "Parent GCP flow/GCP-to-BQ-flow",
                       "--param", "year=twenty", ok=False)
    assert "year" in bad.stdout + bad.stderr and "twenty" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    assert stack.runs_of("Parent GCP flow") == []

    run_id = created_run_id(stack.legato("deployment", "run", "Parent GCP flow/GCP-to-BQ-flow"))
    assert stack.run(run_id).state_type is StateType.SCHEDULED  # queued, nothing runs it yet

    stack.agent()  # in a folder of its own: the code is found at the deployment's path
    stack.wait_state(run_id, StateType.COMPLETED, 60)
    assert_completed_once(stack, run_id)
    run = stack.run(run_id)
    assert run.parameters == {"year": 2020, "color": "yellow", "months": [1, 2]}
    subflows = stack.subflow_runs(run_id)
    assert sorted(r.parameters["month"] for r in subflows) == [1, 2]
    assert {(r.flow_name, r.state_type) for r in subflows} == {("GCP flow", StateType.COMPLETED)}
    assert "code: local copy" in log_text(stack, run_id)
    stack.check_agents()


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=Legato Test", "-c", "user.email=t@legato.invalid",
                    "-c", "commit.gpgsign=false", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_deployment_built_with_github_storage_runs_the_repository_code(
        stack: Stack, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "flows").mkdir(parents=True)
    shutil.copy(FIXTURES / "etl_repo.py", repo / "flows" / "etl.py")
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "flows", cwd=repo)

    stack.start_server()
    stack.add_flow_file("etl.py")  # the local copy differs from the repository's
    GitHub(repository=f"file://{repo}").save("e2e-repo", client=stack.client)
    stack.legato("deployment", "build", "flows/etl.py:gather_flow", "-n", "from-git",
                 "-sb", "github/e2e-repo/", "--params",
                 json.dumps({"color": "green", "year": 2021, "months": [3]}), "--apply")
    dep = stack.client.read_deployment_by_name("Parent GCP flow/from-git")
    assert dep["storage_document_id"] is not None

    run_id = created_run_id(stack.legato("deployment", "run", "Parent GCP flow/from-git"))
    stack.agent()
    stack.wait_state(run_id, StateType.COMPLETED, 60)
    assert_completed_once(stack, run_id)
    [sub] = stack.subflow_runs(run_id)
    assert sub.parameters == {"color": "green", "year": 2021, "month": 3}
    logs = log_text(stack, run_id)
    assert "code: git repository" in logs
    assert "local copy" not in logs
    stack.check_agents()


# -- a server restart ----------------------------------------------------------------------------
def test_server_restart_loses_no_scheduled_or_queued_run(stack: Stack, tmp_path: Path) -> None:
    srv = stack.start_server()
    dep = stack.deploy("append_id", "restart")
    ran = tmp_path / "ran.txt"
    due = [stack.create_run(dep, log_path=str(ran)) for _ in range(3)]
    later = [stack.create_run(dep, when=now() + dt.timedelta(seconds=4 + i), log_path=str(ran))
             for i in range(3)]
    close_clients()  # the test's client reconnects to the new server

    srv.stop()  # SIGTERM
    assert srv.proc is not None and srv.proc.returncode is not None
    restarted = stack.start_server(port=srv.port)
    assert restarted.api_url == stack.api_url
    for run_id in due + later:
        assert stack.run(run_id).state_type is StateType.SCHEDULED

    stack.agent()
    stack.wait_all(due + later, StateType.COMPLETED, 60)
    for run_id in due + later:
        assert_completed_once(stack, run_id)
        run = stack.run(run_id)
        assert run.start_time is not None and run.start_time >= run.expected_start_time
    assert sorted(lines(ran)) == sorted(due + later)
    stack.check_agents()


# -- the scheduler -------------------------------------------------------------------------------
def runs_per_time(url: str, deployment_id: str) -> dict[dt.datetime, int]:
    rows = query(url, "SELECT expected_start_time, count(*) FROM flow_run "
                 "WHERE deployment_id = :d GROUP BY expected_start_time", d=deployment_id)
    return {_utc(t): n for t, n in rows}


def _utc(t: dt.datetime | str) -> dt.datetime:
    when = dt.datetime.fromisoformat(t) if isinstance(t, str) else t
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@pytest.mark.postgres
def test_two_servers_schedule_each_time_once_across_redeploys(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch, stack: Stack) -> None:
    truncate(postgres_url)
    monkeypatch.setenv("LEGATO_DATABASE_URL", postgres_url)
    reset_settings_cache()
    one = stack.start_server()
    two = stack.start_server()
    db = get_database(postgres_url)
    anchor = dt.datetime(2020, 1, 1, tzinfo=UTC)

    stop = threading.Event()
    errors: list[BaseException] = []

    def deploy_on(srv_url: str, seconds: float, out: list[str]) -> None:
        client = get_client(build_settings({"api_url": srv_url}))
        dep = Deployment(name="every-second", flow_name="append-id",
                         entrypoint="flows/work.py:append_id", path=str(stack.project),
                         parameters={"log_path": "unused"},
                         schedule=IntervalSchedule(interval=dt.timedelta(seconds=seconds),
                                                   anchor_date=anchor))
        try:
            out.append(dep.apply(client=client))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def scheduler_loop() -> None:
        try:
            while not stop.is_set():
                schedule_runs(db)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    racers = [threading.Thread(target=scheduler_loop) for _ in range(2)]
    for t in racers:
        t.start()
    try:
        for seconds in (1.0, 1.0, 2.0):  # apply, redeploy as is, then edit the schedule
            ids: list[str] = []
            appliers = [threading.Thread(target=deploy_on, args=(srv.api_url, seconds, ids))
                        for srv in (one, two)]
            for t in appliers:
                t.start()
            for t in appliers:
                t.join(60)
            edited = now()
            assert not errors, errors
            assert len(ids) == 2 and len(set(ids)) == 1, ids  # one deployment, two applies
            dep_id = ids[0]
            per_time = runs_per_time(postgres_url, dep_id)
            assert per_time and max(per_time.values()) == 1, per_time
    finally:
        stop.set()
        for t in racers:
            t.join(60)
    assert not errors, errors
    schedule_runs(db)

    per_time = runs_per_time(postgres_url, dep_id)
    assert len(per_time) >= 100 and set(per_time.values()) == {1}
    # after the edit to every 2 s, no run of the old every-second schedule is still to come
    # (those due before the edit stay: a late run still runs)
    assert sum(t > edited for t in per_time) >= 95
    off_schedule = sorted(t for t in per_time if t > edited
                          and (t - anchor).total_seconds() % 2)
    assert off_schedule == [], off_schedule[:5]
    count = query(postgres_url, "SELECT count(*) FROM flow_run WHERE deployment_id = :d",
                  d=dep_id)[0][0]
    assert count == len(per_time)


def test_backfill_makes_a_past_window_once(stack: Stack) -> None:
    stack.start_server()
    dep = stack.deploy("append_id", "hourly", parameters={"log_path": "unused"})
    stack.legato("deployment", "set-schedule", "append-id/hourly", "--interval", "60")
    minute = now().replace(second=0, microsecond=0) - dt.timedelta(hours=2)
    start, end = minute + dt.timedelta(seconds=30), minute + dt.timedelta(minutes=9, seconds=30)
    window = ["--start", start.isoformat(), "--end", end.isoformat()]

    first = stack.legato("deployment", "backfill", "append-id/hourly", *window)
    assert "9 run(s) created, 0 already there" in first.stdout, first.stdout
    second = stack.legato("deployment", "backfill", "append-id/hourly", *window)
    assert "0 run(s) created, 9 already there" in second.stdout, second.stdout

    url = database_url(stack.home)
    in_window = {t: n for t, n in runs_per_time(url, dep).items() if start <= t <= end}
    assert sorted(in_window) == [minute + dt.timedelta(minutes=m) for m in range(1, 10)]
    assert set(in_window.values()) == {1}
