"""A deployment's run keeps the flow's own options: retries and timeout_seconds hold when an
agent runs it, as when the flow is called (embedded: an agent's run loop in this process,
the flow in its own process)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from legato.client.factory import get_client
from legato.deployments import Deployment
from legato.states import StateType
from legato.utilities.entrypoints import load_flow_from_entrypoint
from legato.workers import Runner

FLOWS = '''
import time
from pathlib import Path
from legato import flow


@flow(retries=1, retry_delay_seconds=0)
def flaky(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("first attempt")
        raise RuntimeError("first attempt fails")
    return "second attempt"


@flow(timeout_seconds=1)
def too_slow() -> None:
    time.sleep(30)
'''


def _run(tmp_path: Path, fn: str, parameters: dict) -> tuple[str, list[str]]:
    flow = load_flow_from_entrypoint(f"flows.py:{fn}", base_dir=tmp_path)
    dep = Deployment.build_from_flow(flow, name="opts", entrypoint=f"flows.py:{fn}",
                                     path=str(tmp_path), parameters=parameters)
    dep.apply()
    client = get_client()
    d = client.read_deployment_by_name(f"{flow.name}/opts")
    run = client.create_flow_run_from_deployment(str(d["id"]))
    runner = Runner(client, "options-test", queue_names=["default"])
    deadline = time.monotonic() + 60
    while not runner.run_once():
        assert time.monotonic() < deadline, "the run was never claimed"
    runner.wait_for_running(timeout=60)
    final = client.read_flow_run(str(run["id"]))
    names = [s.name for s in client.read_flow_run_states(str(run["id"]))]
    return final.state_name, names


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_flow_retries_hold_for_a_deployed_run(history: str, project: Path) -> None:
    final, names = _run(project, "flaky", {"marker": str(project / "marker")})
    assert final == "Completed"
    assert names == ["Scheduled", "Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]


def test_flow_timeout_holds_for_a_deployed_run(history: str, project: Path) -> None:
    started = time.monotonic()
    final, _ = _run(project, "too_slow", {})
    assert final == "TimedOut"
    assert time.monotonic() - started < 20
    assert get_client().read_flow_runs()[0].state_type is StateType.FAILED
