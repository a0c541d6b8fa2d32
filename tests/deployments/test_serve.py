"""``flow.serve`` and ``legato.serve``: a script serves its deployments from its own process, each
flow run in a subprocess, embedded (the history database) and through a real server; Ctrl-C
stops it cleanly and hands back what it claimed and had not started."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.client.factory import get_client
from legato.schemas import FlowRunFilter
from legato.settings import reset_settings_cache
from legato.states import StateType

LEGATO = str(Path(sys.executable).parent / "legato")


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy (and return it), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Served:
    """A script run as its own process (``python script.py``), its output in a file."""

    def __init__(self, script: Path, args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.log = script.with_suffix(".log")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), *(args or [])], cwd=script.parent,
                env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30) -> None:
        until(lambda: text in self.output() or self.proc.poll() is not None, timeout,
              f"{text!r} in the output")
        assert text in self.output(), self.output()

    def interrupt_and_wait(self, timeout: float = 30) -> int:
        """Ctrl-C (SIGINT), then the exit code."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after SIGINT:\n"
                                 f"{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def served() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(script: Path, args: list[str] | None = None, **env: str) -> Served:
        started.append(Served(script, args, env))
        return started[-1]

    yield start
    for s in started:
        s.kill()


@pytest.fixture
def api_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real `legato server start` on this test's history; this process's client uses it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    with open(tmp_path / "server.log", "wb") as out:
        proc = subprocess.Popen([LEGATO, "server", "start", "--port", str(port)],
                                env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        until(healthy, 30, "the server to answer")
        monkeypatch.setenv("LEGATO_API_URL", url)
        reset_settings_cache()
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def wait_for_run(run_id: str, state: StateType, timeout: float = 30) -> Any:
    client = get_client()

    def reached() -> Any:
        run = client.read_flow_run(run_id)
        if run.state_type in (StateType.FAILED, StateType.CRASHED):
            raise AssertionError(f"flow run {run_id} ended {run.state_name}: {run.state_message}")
        return run if run.state_type is state else None

    return until(reached, timeout, f"flow run {run_id} to be {state.value}")


def messages(run_id: str) -> str:
    return "\n".join(r.message for r in get_client().read_logs(flow_run_id=run_id))


GREET = """
    from legato import flow, get_run_logger

    @flow(log_prints=True)
    def greet(who: str = "nobody") -> str:
        print(f"hello {who} from the served flow")
        return who

    if __name__ == "__main__":
        greet.serve(name="dev", parameters={"who": "serve"}, tags=["served"])
"""


def test_flow_serve_runs_a_run_made_with_the_cli_and_stops_on_ctrl_c(
        history: str, tmp_path: Path, served: Callable[..., Served]) -> None:
    project = tmp_path / "project"
    proc = served(write(project / "greet.py", GREET))
    proc.wait_for("legato deployment run 'greet/dev'")

    out = subprocess.run([LEGATO, "deployment", "run", "greet/dev", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["id"]
    run = wait_for_run(run_id, StateType.COMPLETED)
    assert run.parameters == {"who": "serve"}
    assert run.infrastructure_pid and run.infrastructure_pid.startswith("pid:")
    assert "hello serve from the served flow" in messages(run_id)

    d = get_client().read_deployment_by_name("greet/dev")
    # its own queue in the agents' pool: an agent started with `-q default` does not take it
    assert (d["work_queue_name"], d["work_pool_name"]) == ("serve:greet/dev",
                                                           "default-agent-pool")
    assert d["entrypoint"] == "greet.py:greet"
    assert Path(d["path"]) == project.resolve()
    assert d["tags"] == ["served"]

    assert proc.interrupt_and_wait() == 0
    assert "Stopped serving." in proc.output()


UNGUARDED = """
    from legato import flow

    @flow
    def loop() -> None:
        pass

    loop.serve(name="unguarded")  # not under `if __name__ == "__main__":`
"""


def test_a_serve_call_run_again_by_a_flow_runs_process_fails_that_run_only(
        tmp_path: Path, served: Callable[..., Served]) -> None:
    proc = served(write(tmp_path / "loop.py", UNGUARDED))
    proc.wait_for("legato deployment run 'loop/unguarded'")
    client = get_client()
    dep = client.read_deployment_by_name("loop/unguarded")
    run_id = str(client.create_flow_run_from_deployment(str(dep["id"]))["id"])
    until(lambda: client.read_flow_run(run_id).state_type is StateType.CRASHED
          or proc.proc.poll() is not None, 30, "the run to crash")
    assert 'put the serve() call under `if __name__ == "__main__":`' in proc.output()
    assert proc.proc.poll() is None, proc.output()
    assert client.read_flow_run(run_id).state_type is StateType.CRASHED
    assert proc.interrupt_and_wait() == 0


TICK = """
    from legato import flow

    @flow(log_prints=True)
    def tick() -> None:
        print("tick")

    if __name__ == "__main__":
        tick.serve(name="every-2s", interval=2)
"""


@pytest.mark.parametrize("door", ["embedded", "server"])
def test_served_schedule_makes_runs_that_complete_and_is_paused_on_stop(
        door: str, tmp_path: Path, served: Callable[..., Served],
        request: pytest.FixtureRequest) -> None:
    if door == "server":
        request.getfixturevalue("api_url")  # the serving process inherits LEGATO_API_URL
    proc = served(write(tmp_path / "tick.py", TICK))
    proc.wait_for("runs on its schedule")
    client = get_client()

    def completed() -> list[Any]:
        runs = client.read_flow_runs(FlowRunFilter(flow_name="tick",
                                                   state_types=[StateType.COMPLETED]))
        return [r for r in runs if r.auto_scheduled] if len(runs) >= 2 else []

    runs = until(completed, 40, "two scheduled runs to complete")
    assert all("tick" in messages(r.id) for r in runs)

    assert proc.interrupt_and_wait() == 0
    d = client.read_deployment_by_name("tick/every-2s")
    assert d["schedules"] and not any(s["active"] for s in d["schedules"])
    # pausing removed the runs made ahead (a due one stays: it runs when served again)
    now = dt.datetime.now(dt.timezone.utc)
    left = client.read_flow_runs(FlowRunFilter(flow_name="tick", limit=1000,
                                               state_types=[StateType.SCHEDULED]))
    assert all(r.expected_start_time <= now for r in left), left


TWO = """
    from legato import flow, serve

    @flow(log_prints=True)
    def extract() -> None:
        print("extract ran")

    @flow(log_prints=True)
    def load(rows: int = 0) -> None:
        print(f"load ran with {rows} rows")

    if __name__ == "__main__":
        serve(extract.to_deployment("nightly"),
              load.to_deployment("hourly", parameters={"rows": 5}), limit=2)
"""


def test_legato_serve_serves_two_deployments_through_a_server(
        api_url: str, tmp_path: Path, served: Callable[..., Served]) -> None:
    proc = served(write(tmp_path / "two.py", TWO))
    proc.wait_for("legato deployment run 'load/hourly'")
    client = get_client()
    deps = [client.read_deployment_by_name(a) for a in ("extract/nightly", "load/hourly")]
    assert [d["work_queue_name"] for d in deps] == ["serve:extract/nightly", "serve:load/hourly"]
    runs = [client.create_flow_run_from_deployment(str(d["id"])) for d in deps]
    for r in runs:
        wait_for_run(str(r["id"]), StateType.COMPLETED)
    assert "extract ran" in messages(str(runs[0]["id"]))
    assert "load ran with 5 rows" in messages(str(runs[1]["id"]))
    assert proc.interrupt_and_wait() == 0


GATED = """
    import sys
    import time
    from pathlib import Path

    from legato import flow
    from legato.filesystems import LocalFileSystem

    GATE = Path(sys.argv[1])


    class GatedFolder(LocalFileSystem):
        \"\"\"Copies for flow runs wait until the test opens the gate (a slow code pull).\"\"\"

        _block_type_name = "Gated Folder"

        def get_directory(self, from_path=None, local_path=None):
            if "legato-flow-code-" in str(local_path):
                (GATE / "waiting").touch()
                deadline = time.monotonic() + 60
                while not (GATE / "open").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
            return super().get_directory(from_path, local_path)


    if __name__ == "__main__":
        flow.from_source(GatedFolder(basepath=sys.argv[2]), "job.py:job").serve(name="gated")
"""


def test_ctrl_c_hands_back_a_claimed_run_that_has_not_started(
        tmp_path: Path, served: Callable[..., Served]) -> None:
    code = tmp_path / "code"
    write(code / "job.py", """
        from legato import flow

        @flow(log_prints=True)
        def job() -> None:
            print("job ran")
    """)
    gate = tmp_path / "gate"
    gate.mkdir()
    client = get_client()
    # two runs due before the serving process starts: its first claim takes both
    dep = client.apply_deployment({"flow_name": "job", "name": "gated",
                                   "entrypoint": "job.py:job",
                                   "work_queue_name": "serve:job/gated"})
    first, second = (client.create_flow_run_from_deployment(str(dep["id"])) for _ in range(2))
    proc = served(write(tmp_path / "gated.py", GATED), [str(gate), str(code)])

    # the first run's code is being pulled (the second is claimed, waiting its turn): Ctrl-C
    until(lambda: (gate / "waiting").exists() or proc.proc.poll() is not None, 30,
          "the first run's code pull")
    assert (gate / "waiting").exists(), proc.output()
    proc.proc.send_signal(signal.SIGINT)
    proc.wait_for("Stopping")
    (gate / "open").touch()
    assert proc.proc.wait(30) == 0, proc.output()

    # the run it had started finished; the one it had claimed is Scheduled again
    assert client.read_flow_run(str(first["id"])).state_type is StateType.COMPLETED
    assert "job ran" in messages(str(first["id"]))
    back = client.read_flow_run(str(second["id"]))
    assert (back.state_type, back.state_name) == (StateType.SCHEDULED, "Scheduled")
    assert [s.type for s in client.read_flow_run_states(str(second["id"]))] == [
        StateType.SCHEDULED, StateType.PENDING, StateType.SCHEDULED]
