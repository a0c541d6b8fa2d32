"""``flow.to_deployment``, ``flow.deploy`` and ``flow.from_source``: deployments on work pools,
run by a real ``legato worker start`` process; code pulled from a git repository (file://)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import legato
from legato.cli import app
from legato.client.factory import get_client
from legato.deployments.deployment import DeploymentError
from legato.filesystems import LocalFileSystem
from legato.states import StateType
from legato.utilities.entrypoints import EntrypointError, load_flow_from_entrypoint

LEGATO = str(Path(sys.executable).parent / "legato")

ETL = """
    from legato import flow, get_run_logger

    @flow(log_prints=True)
    def etl(n: int = 1) -> int:
        \"\"\"Moves n rows.

        More words.\"\"\"
        print(f"etl moved {n} rows")
        return n
"""


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start `legato worker start --pool POOL` processes (stopped with Ctrl-C at the end)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(pool: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"worker-{len(started)}.log", "wb") as out:
            started.append(subprocess.Popen([LEGATO, "worker", "start", "--pool", pool],
                                            env=dict(os.environ), stdout=out,
                                            stderr=subprocess.STDOUT))
        return started[-1]

    yield start
    for proc in started:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def run_to_completion(deployment_id: str, timeout: float = 40) -> tuple[Any, str]:
    """Create a run of the deployment; wait for it to complete; (the run, its log text)."""
    client = get_client()
    run_id = str(client.create_flow_run_from_deployment(deployment_id)["id"])

    def done() -> Any:
        run = client.read_flow_run(run_id)
        if run.state_type in (StateType.FAILED, StateType.CRASHED):
            raise AssertionError(f"flow run ended {run.state_name}: {run.state_message}")
        return run if run.state_type is StateType.COMPLETED else None

    run = until(done, timeout, f"flow run {run_id} to complete")
    return run, "\n".join(r.message for r in client.read_logs(flow_run_id=run_id))


def test_to_deployment_finds_the_entrypoint_and_takes_prefects_schedule_options(
        tmp_path: Path) -> None:
    project = tmp_path / "project"
    etl = load_flow_from_entrypoint(f"{write(project / 'etl.py', ETL)}:etl")
    d = etl.to_deployment("twice-daily", cron=["0 9 * * *", "0 17 * * *"],
                          parameters={"n": 2}, tags=["etl"])
    assert (d.flow_name, d.name, d.entrypoint) == ("etl", "twice-daily", "etl.py:etl")
    assert Path(d.path) == project.resolve()  # not under the working directory: its folder
    assert [s["schedule"]["cron"] for s in d.schedules] == ["0 9 * * *", "0 17 * * *"]
    assert d.description == "Moves n rows."
    assert d.parameter_openapi_schema["properties"]["n"]["type"] == "integer"
    assert etl.to_deployment("hourly", interval=3600).schedules[0]["schedule"]["interval"] == 3600
    with pytest.raises(DeploymentError, match="one of cron, interval, rrule"):
        etl.to_deployment("both", cron="0 9 * * *", interval=60)
    typed_in: dict[str, Any] = {}  # as in a notebook or the REPL
    exec("from legato import flow\n@flow\ndef adhoc(): pass", typed_in)
    with pytest.raises(EntrypointError, match="not defined in a file"):
        typed_in["adhoc"].to_deployment("nope")


def test_deploy_to_a_missing_pool_says_how_to_create_it(tmp_path: Path) -> None:
    etl = load_flow_from_entrypoint(f"{write(tmp_path / 'etl.py', ETL)}:etl")
    with pytest.raises(DeploymentError) as missing:
        etl.deploy("nightly", work_pool_name="nowhere")
    assert "No work pool named 'nowhere'" in str(missing.value)
    assert "legato work-pool create 'nowhere' --type process" in str(missing.value)
    with pytest.raises(DeploymentError, match="legato work-pool create NAME --type process"):
        etl.deploy("nightly")
    assert get_client().read_deployments() == []


def test_flow_deploy_to_a_pool_then_a_worker_runs_it(
        history: str, tmp_path: Path, worker: Callable[[str], Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    etl = load_flow_from_entrypoint(f"{write(project / 'etl.py', ETL)}:etl")
    cli("work-pool", "create", "etl-pool", "--type", "process")
    dep_id = etl.deploy("nightly", work_pool_name="etl-pool", parameters={"n": 3},
                        cron="0 3 * * *")
    assert "legato worker start --pool 'etl-pool'" in capsys.readouterr().out

    d = get_client().read_deployment(dep_id)
    assert (d["entrypoint"], d["work_pool_name"], d["parameters"]) == (
        "etl.py:etl", "etl-pool", {"n": 3})
    assert Path(d["path"]) == project.resolve()
    assert [s["schedule"]["cron"] for s in d["schedules"]] == ["0 3 * * *"]

    worker("etl-pool")
    run, logs = run_to_completion(dep_id)
    assert run.parameters == {"n": 3}
    assert "etl moved 3 rows" in logs


def test_deploy_records_an_image_only_on_pools_that_run_images(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    etl = load_flow_from_entrypoint(f"{write(tmp_path / 'etl.py', ETL)}:etl")
    cli("work-pool", "create", "containers", "--type", "docker")
    cli("work-pool", "create", "local", "--type", "process")
    dep_id = etl.deploy("in-docker", work_pool_name="containers",
                        image="registry.example/etl:1.0", job_variables={"env": {"A": "1"}},
                        build=True, print_next_steps=False)
    assert "does not build or push images" in capsys.readouterr().err
    assert get_client().read_deployment(dep_id)["job_variables"] == {
        "env": {"A": "1"}, "image": "registry.example/etl:1.0"}
    with pytest.raises(DeploymentError, match="'local' .*runs no images"):
        etl.deploy("in-process", work_pool_name="local", image="registry.example/etl:1.0")


REPO_FLOW = """
    from legato import flow

    @flow(name="marker", log_prints=True)
    def marker() -> None:
        print("{text}")
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                   cwd=repo, check=True, capture_output=True)


def test_from_source_deploys_a_git_repository_and_the_worker_runs_the_committed_code(
        tmp_path: Path, worker: Callable[[str], Any]) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo / "flows" / "marker.py", REPO_FLOW.replace("{text}", "marker from git commit"))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "the flow")
    # an uncommitted change: the code a worker runs is the repository's, not this copy
    write(repo / "flows" / "marker.py", REPO_FLOW.replace("{text}", "marker from working copy"))

    marker = legato.flow.from_source(f"file://{repo}", "flows/marker.py:marker")
    assert marker.name == "marker"
    assert not Path(marker.fn.__code__.co_filename).is_relative_to(repo)  # a clone of it
    cli("work-pool", "create", "git-pool", "--type", "process")
    dep_id = marker.deploy("from-git", work_pool_name="git-pool", print_next_steps=False)

    client = get_client()
    d = client.read_deployment(dep_id)
    assert (d["entrypoint"], d["path"]) == ("flows/marker.py:marker", None)
    storage = client.read_block_document_by_id(d["storage_document_id"])
    assert (storage["block_type"]["slug"], storage["data"]["repository"]) == (
        "github", f"file://{repo}")

    worker("git-pool")
    _, logs = run_to_completion(dep_id)
    assert "marker from git commit" in logs
    assert "working copy" not in logs


def test_from_source_takes_a_local_folder_or_a_storage_block(tmp_path: Path) -> None:
    code = tmp_path / "code"
    write(code / "pkg" / "etl.py", ETL)
    here = legato.Flow.from_source(str(code), "pkg/etl.py:etl").to_deployment("local")
    assert (here.entrypoint, here.path, here.storage) == ("pkg/etl.py:etl", str(code.resolve()),
                                                          None)

    block = LocalFileSystem(basepath=str(code))
    stored = legato.flow.from_source(block, "pkg/etl.py:etl").to_deployment("stored")
    assert (stored.entrypoint, stored.path, stored.storage) == ("pkg/etl.py:etl", None, block)
    d = get_client().read_deployment(stored.apply())
    assert get_client().read_block_document_by_id(d["storage_document_id"])[
        "block_type"]["slug"] == "local-file-system"

    with pytest.raises(DeploymentError, match="no folder"):
        legato.flow.from_source(str(tmp_path / "missing"), "etl.py:etl")
    with pytest.raises(EntrypointError, match="relative to the top folder"):
        legato.flow.from_source(str(code), "etl.py:etl")
