"""Process infrastructure, end to end with real child processes; and what every infrastructure
block shares (merge rules, work-pool templates, blocks saved and loaded)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from legato.blocks.core import Block
from legato.exceptions import BlockError, LegatoTimeoutError
from legato.infrastructure import (
    DockerContainer,
    FlowRunLaunch,
    InfrastructureNotFound,
    KubernetesJob,
    Process,
    infrastructure_for_type,
)
from legato.infrastructure.process import group_alive

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")

RUN_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has finished)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{check} still false after {seconds} s"
        time.sleep(0.02)


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str], list[str]]:
    """A command line running the given Python source in a fresh interpreter."""

    def make(source: str) -> list[str]:
        path = tmp_path / f"child_{len(list(tmp_path.glob('child_*.py')))}.py"
        path.write_text(textwrap.dedent(source))
        return [sys.executable, str(path)]

    return make


@pytest.fixture
def handles() -> Iterator[list]:
    """Started handles, killed at the end whatever the test did."""
    started: list = []
    yield started
    for handle in started:
        if handle.poll() is None:
            handle.kill(grace_seconds=0)


def launch(command: list[str] | None = None, **kwargs) -> FlowRunLaunch:
    return FlowRunLaunch(flow_run_id=RUN_ID, command=command, **kwargs)


# -- running ---------------------------------------------------------------------------------
def test_exit_code_and_identifier(script, handles) -> None:
    handle = Process().start(launch(script("import sys; sys.exit(3)")))
    handles.append(handle)
    assert handle.identifier == f"pid:{handle.pid}"
    assert handle.wait() == 3
    assert handle.poll() == 3


def test_start_returns_while_the_run_goes_on(script, handles, tmp_path: Path) -> None:
    go = tmp_path / "go"
    handle = Process().start(launch(script(f"""
        import os, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
    """)))
    handles.append(handle)
    assert handle.poll() is None
    with pytest.raises(LegatoTimeoutError, match="still running"):
        handle.wait(timeout=0.05)
    go.touch()
    assert handle.wait() == 0


def test_environment_is_agent_then_launch_then_block(script, handles, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "env.json"
    monkeypatch.setenv("INFRA_AGENT_ONLY", "agent")
    monkeypatch.setenv("INFRA_OVERRIDDEN", "agent")
    monkeypatch.setenv("INFRA_REMOVED", "agent")
    names = ["INFRA_AGENT_ONLY", "INFRA_OVERRIDDEN", "INFRA_REMOVED", "INFRA_LAUNCH",
             "INFRA_BOTH", "LEGATO_API_URL"]
    block = Process(env={"INFRA_BOTH": "block", "INFRA_REMOVED": None})
    handle = block.start(launch(
        script(f"""
            import json, os
            json.dump({{n: os.environ.get(n) for n in {names!r}}}, open({str(out)!r}, "w"))
        """),
        env={"INFRA_OVERRIDDEN": "launch", "INFRA_LAUNCH": "launch", "INFRA_BOTH": "launch",
             "LEGATO_API_URL": "http://127.0.0.1:4200/api"}))
    handles.append(handle)
    assert handle.wait() == 0
    assert json.loads(out.read_text()) == {
        "INFRA_AGENT_ONLY": "agent", "INFRA_OVERRIDDEN": "launch", "INFRA_REMOVED": None,
        "INFRA_LAUNCH": "launch", "INFRA_BOTH": "block",
        "LEGATO_API_URL": "http://127.0.0.1:4200/api"}


def test_working_dir(script, handles, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = tmp_path / "cwd.txt"
    handle = Process(working_dir=str(workdir)).start(
        launch(script(f"import os; open({str(out)!r}, 'w').write(os.getcwd())")))
    handles.append(handle)
    assert handle.wait() == 0
    assert Path(out.read_text()).resolve() == workdir.resolve()
    with pytest.raises(BlockError, match="working_dir .* is not a directory"):
        Process(working_dir=str(tmp_path / "missing")).start(launch(["true"]))


def test_output_is_streamed_or_discarded(script, handles, capfd: pytest.CaptureFixture) -> None:
    command = script("print('hello from the flow run'); import sys; "
                     "print('and its stderr', file=sys.stderr)")
    for stream in (True, False):
        handle = Process(stream_output=stream).start(launch(command))
        handles.append(handle)
        assert handle.wait() == 0
        out, err = capfd.readouterr()
        assert ("hello from the flow run" in out) is stream
        assert ("and its stderr" in err) is stream


def test_command_precedence_and_default() -> None:
    assert Process().resolved_command(launch()) == [
        sys.executable, "-m", "legato.engine.deployed", RUN_ID]
    assert Process().resolved_command(launch(["a", "b"])) == ["a", "b"]
    assert Process(command=["x"]).resolved_command(launch(["a", "b"])) == ["x"]
    # Prefect accepts one string; it is split as a shell would, without expansion
    assert Process(command="python -c 'print(1)' $HOME").command == [
        "python", "-c", "print(1)", "$HOME"]
    assert DockerContainer().resolved_command(launch()) == [
        "python", "-m", "legato.engine.deployed", RUN_ID]
    with pytest.raises(ValueError, match="command is an empty list"):
        Process(command=[])


def test_a_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BlockError, match="Could not start .*no-such-program-here"):
        Process().start(launch([str(tmp_path / "no-such-program-here")]))


def test_launch_needs_a_flow_run_id() -> None:
    with pytest.raises(BlockError, match="flow run's id"):
        FlowRunLaunch(flow_run_id="")


# -- killing ---------------------------------------------------------------------------------
TRAP = """
    import os, signal, sys, time
    def stop(signum, frame):
        open({marker!r}, "w").write("terminated")
        sys.exit(7)
    signal.signal(signal.SIGTERM, stop)
    open({ready!r}, "w").close()
    while True:
        time.sleep(0.01)
"""

IGNORE = """
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open({ready!r}, "w").close()
    while True:
        time.sleep(0.01)
"""


def test_kill_lets_a_trapping_run_exit_cleanly(script, handles, tmp_path: Path) -> None:
    ready, marker = tmp_path / "ready", tmp_path / "marker"
    handle = Process().start(launch(script(TRAP.format(ready=str(ready), marker=str(marker)))))
    handles.append(handle)
    eventually(ready.exists)
    handle.kill(grace_seconds=60)
    assert handle.wait() == 7  # its own clean exit, not the SIGKILL's -9
    assert marker.read_text() == "terminated"


def test_kill_forces_a_run_that_ignores_sigterm_after_the_grace(script, handles,
                                                                tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    handle = Process().start(launch(script(IGNORE.format(ready=str(ready)))))
    handles.append(handle)
    eventually(ready.exists)
    began = time.monotonic()
    handle.kill(grace_seconds=1)
    assert time.monotonic() - began >= 1  # SIGTERM was ignored: SIGKILL only after the grace
    assert handle.wait() == -signal.SIGKILL
    handle.kill(grace_seconds=1)  # a process that already exited is fine


GRANDPARENT = """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", {grandchild!r}])
    open({pidfile!r}, "w").write(str(child.pid))
    while True:
        time.sleep(0.01)
"""


@pytest.mark.parametrize("grandchild_ignores_sigterm", [False, True])
def test_kill_reaches_grandchildren(script, handles, tmp_path: Path,
                                    grandchild_ignores_sigterm: bool) -> None:
    ready, pidfile = tmp_path / "ready", tmp_path / "grandchild.pid"
    grandchild = textwrap.dedent(IGNORE if grandchild_ignores_sigterm else """
        import time
        open({ready!r}, "w").close()
        while True:
            time.sleep(0.01)
    """).format(ready=str(ready))
    handle = Process().start(launch(script(GRANDPARENT.format(grandchild=grandchild,
                                                              pidfile=str(pidfile)))))
    handles.append(handle)
    eventually(ready.exists)
    grandchild_pid = int(pidfile.read_text())
    assert running(grandchild_pid)
    handle.kill(grace_seconds=0.5)
    assert handle.wait() == -signal.SIGTERM  # the child took the default action
    assert not running(grandchild_pid)
    assert not group_alive(handle.pid)


def test_kill_by_identifier_after_a_restart(script, tmp_path: Path) -> None:
    """The agent that started the run is gone: kill by the identifier alone (the process is not
    a child of this one)."""
    ready, pidfile = tmp_path / "ready", tmp_path / "pid"
    target = script(TRAP.format(ready=str(ready), marker=str(tmp_path / "marker")))
    launcher = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import subprocess
            p = subprocess.Popen({target!r}, start_new_session=True)
            open({str(pidfile)!r}, "w").write(str(p.pid))
        """)], check=True)
    assert launcher.returncode == 0
    pid = int(pidfile.read_text())
    eventually(ready.exists)
    infra = Process()
    infra.kill(f"pid:{pid}", grace_seconds=30)
    assert not running(pid)
    assert (tmp_path / "marker").read_text() == "terminated"
    with pytest.raises(InfrastructureNotFound, match=f"pid:{pid}"):
        infra.kill(f"pid:{pid}", grace_seconds=1)


def test_kill_by_identifier_of_a_handle(script, handles, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    handle = Process().start(launch(script(IGNORE.format(ready=str(ready)))))
    handles.append(handle)
    eventually(ready.exists)
    Process().kill(handle.identifier, grace_seconds=0.2)
    assert handle.wait() == -signal.SIGKILL


@pytest.mark.parametrize("identifier", ["12345", "pid:", "pid:abc", "docker:1", "pid:1"])
def test_kill_rejects_a_foreign_identifier(identifier: str) -> None:
    with pytest.raises(BlockError, match="not a process identifier"):
        Process().kill(identifier)


# -- blocks and work pools -------------------------------------------------------------------
def test_saved_and_loaded_as_blocks() -> None:
    Process(working_dir="/srv/flows", env={"A": "1"}, stream_output=False).save("my-process")
    loaded = Process.load("my-process")
    assert loaded.model_dump() == Process(
        working_dir="/srv/flows", env={"A": "1"}, stream_output=False).model_dump()
    assert isinstance(Block.load("process/my-process"), Process)
    job = KubernetesJob(namespace="etl", customizations=[
        {"op": "add", "path": "/spec/activeDeadlineSeconds", "value": 60}])
    job.save("etl")
    assert Block.load("kubernetes-job/etl").model_dump() == job.model_dump()
    DockerContainer(image="flows:1", volumes=["/d:/d:ro"]).save("c")
    assert DockerContainer.load("c").volumes == ["/d:/d:ro"]
    assert (Process.get_block_type_name(), DockerContainer.get_block_type_name(),
            KubernetesJob.get_block_type_name()) == ("Process", "Docker Container",
                                                     "Kubernetes Job")


def test_infrastructure_for_type() -> None:
    assert infrastructure_for_type("process") is Process
    assert infrastructure_for_type("docker") is DockerContainer
    assert infrastructure_for_type("kubernetes") is KubernetesJob
    with pytest.raises(BlockError, match="Unknown work pool type 'ecs'.*process, docker"):
        infrastructure_for_type("ecs")


def test_base_job_template_defaults_and_job_variables() -> None:
    template = Process.base_job_template()
    assert template["job_configuration"]["working_dir"] == "{{ working_dir }}"
    assert "type" not in template["job_configuration"]
    props = template["variables"]["properties"]
    assert props["stream_output"]["default"] is True
    assert props["env"]["default"] == {}
    assert Process.from_job_variables(template, {}) == Process()
    block = Process.from_job_variables(
        template, {"working_dir": "/srv", "env": {"A": "1"}, "command": "python -V"})
    assert block == Process(working_dir="/srv", env={"A": "1"}, command=["python", "-V"])
    assert json.loads(json.dumps(template)) == template  # stored as JSON by the server


def test_job_variables_errors_name_the_variable() -> None:
    template = Process.base_job_template()
    with pytest.raises(BlockError, match="Unknown job variable.*'cpu'.*accepts: command, env"):
        Process.from_job_variables(template, {"cpu": 2})
    with pytest.raises(BlockError, match="stream_output: 'yes' is not of type 'boolean'"):
        Process.from_job_variables(template, {"stream_output": "yes"})
    with pytest.raises(BlockError, match="env.A: 1 is not valid"):
        Process.from_job_variables(template, {"env": {"A": 1}})


def test_an_edited_template_drives_the_job() -> None:
    """A pool's template may fix values, build strings from variables and drop defaults."""
    template = Process.base_job_template()
    template["variables"]["properties"]["team"] = {"type": "string", "default": "data"}
    template["variables"]["properties"]["stream_output"]["default"] = False
    template["job_configuration"]["working_dir"] = "/srv/{{ team }}/flows"
    template["job_configuration"]["labels"] = {"team": "{{ team }}", "fixed": "yes"}
    assert Process.from_job_variables(template, {"team": "ml"}) == Process(
        working_dir="/srv/ml/flows", labels={"team": "ml", "fixed": "yes"},
        stream_output=False)
    template["job_configuration"]["cpu"] = "2"
    with pytest.raises(BlockError, match="job_configuration has 'cpu', which a Process does "
                                         "not have"):
        Process.from_job_variables(template, {})
