"""Helpers for the end-to-end deployment tests: a project folder with flow files, real `legato`
commands and agents as subprocesses, and polling with deadlines.

Every process gets an explicit environment (``Stack.env``): the test's LEGATO_HOME, the
server's API URL and the settings the test chose (e.g. a short heartbeat)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

from legato.client.factory import close_clients, get_client
from legato.deployments import Deployment
from legato.schemas import FlowRunFilter
from legato.settings import build_settings
from legato.states import TERMINAL_TYPES, StateType
from legato.store import models
from legato.utilities.entrypoints import load_flow_from_entrypoint

LEGATO = str(Path(sys.executable).parent / "legato")
FIXTURES = Path(__file__).parent / "flows_fixture"
UTC = dt.timezone.utc
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05,
             on_timeout: Callable[[], str] | None = None) -> T:
    """Poll ``check`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `legato server start` subprocess (its own session) on a loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Server:
        out = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen([LEGATO, "server", "start", "--port", str(self.port)],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.log_path.read_text()}")
            try:
                key = self.env.get("LEGATO_API_KEY")  # a server that requires keys
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                return httpx.get(f"{self.api_url}/health", timeout=1,
                                 headers=headers).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(up, timeout, "the server to answer",
                     on_timeout=lambda: self.log_path.read_text())
        except BaseException:
            self.stop(grace=5)  # not yet in the stack's list: nobody else would stop it
            raise
        return self

    def stop(self, grace: float = 15) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@dataclass
class Stack:
    """One test's world: its LEGATO_HOME, its server(s), its project folder and the processes it
    started (all stopped at the end of the test)."""

    home: Path
    project: Path
    logs: Path
    settings: dict[str, str] = field(default_factory=dict)
    api_url: str = ""
    servers: list[Server] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
        if os.environ.get("LEGATO_DATABASE_URL"):  # the PostgreSQL runs' database
            env["LEGATO_DATABASE_URL"] = os.environ["LEGATO_DATABASE_URL"]
        env.update({"LEGATO_HOME": str(self.home), "LEGATO_LOGGING_TO_CONSOLE": "false",
                    "PYTHONUNBUFFERED": "1"})
        env.update(self.settings)
        return env

    @property
    def env(self) -> dict[str, str]:
        """A client process's environment: the server's API URL and the test's settings."""
        return {**self.base_env(), "LEGATO_API_URL": self.api_url}

    def start_server(self, port: int | None = None) -> Server:
        """Start a server on the test's history; the first one is the one clients talk to."""
        srv = Server(self.base_env(), self.logs / f"server-{len(self.servers) + 1}.log", port)
        self.servers.append(srv.start())
        self.api_url = self.api_url or srv.api_url
        return srv

    @property
    def client(self) -> Any:
        """The HTTP client of this test's server."""
        return get_client(build_settings({"api_url": self.api_url}))

    # -- the project -----------------------------------------------------------------------------
    def add_flow_file(self, fixture: str, as_name: str | None = None) -> Path:
        """Copy ``flows_fixture/<fixture>`` into the project's ``flows/`` folder."""
        target = self.project / "flows" / (as_name or fixture)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / fixture, target)
        return target

    def python(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``python ARGV`` in the project folder; it must succeed."""
        done = subprocess.run([sys.executable, *argv], cwd=self.project, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"python failed:\n{done.stdout}\n{done.stderr}"
        return done

    def deploy(self, func: str, name: str, fixture: str = "work.py", **options: Any) -> str:
        """Apply a deployment of ``flows/<fixture>:<func>`` (code at the project's path); its
        id."""
        if not (self.project / "flows" / fixture).exists():
            self.add_flow_file(fixture)
        entrypoint = f"flows/{fixture}:{func}"
        flow = load_flow_from_entrypoint(entrypoint, base_dir=self.project)
        dep = Deployment.build_from_flow(flow, name, entrypoint=entrypoint,
                                         path=str(self.project), **options)
        return dep.apply(client=self.client)

    def create_run(self, deployment_id: str, when: dt.datetime | None = None,
                   **parameters: Any) -> str:
        """A run of the deployment (due now, or at ``when``); its id."""
        run = self.client.create_flow_run_from_deployment(
            deployment_id, parameters=parameters, scheduled_time=when)
        return str(run["id"])

    def legato(self, *args: str, cwd: Path | None = None, timeout: float = 60,
               ok: bool | None = True) -> subprocess.CompletedProcess[str]:
        """Run ``legato ARGS`` (in the project folder); ``ok`` True/False asserts the outcome."""
        done = subprocess.run([LEGATO, *args], cwd=cwd or self.project, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if ok is not None:
            assert (done.returncode == 0) is ok, (
                f"legato {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def agent(self, *args: str, name: str | None = None, queue: str = "default",
              cwd: Path | None = None) -> Agent:
        """Start ``legato agent start -q QUEUE`` (in a folder of its own, not the project)."""
        number = len(self.agents) + 1
        name = name or f"e2e-agent-{number}"
        where = cwd or self.logs / f"agent-{number}-cwd"
        where.mkdir(parents=True, exist_ok=True)
        agent = Agent(name, [LEGATO, "agent", "start", "-q", queue, "--name", name, *args],
                      self.env, where, self.logs / f"{name}.log")
        self.agents.append(agent.start())
        return agent

    def stop_all(self) -> None:
        for agent in self.agents:
            if agent.alive():
                assert agent.proc is not None
                agent.thaw()
                agent.proc.send_signal(signal.SIGTERM)
        for agent in self.agents:
            agent.stop()
        try:
            self.kill_flow_processes()
        finally:
            close_clients()  # while the server still answers
            for srv in self.servers:  # a long poll of a killed agent may hold a graceful stop
                srv.stop(grace=1)

    def check_agents(self) -> None:
        """Every agent the test did not kill is still running (none died of an error)."""
        dead = [a for a in self.agents if not a.killed and not a.alive()]
        assert not dead, "agents died:\n" + "\n".join(
            f"--- {a.name}\n{a.output()[-6000:]}" for a in dead)

    def kill_flow_processes(self) -> None:
        """End the flow run processes still running (agents leave them to finish on their
        own): each found by its run's ``pid:N`` and checked to be that run's process."""
        try:
            runs = self.client.read_flow_runs(FlowRunFilter(limit=10_000))
        except Exception:  # noqa: BLE001 - no server: nothing to look up
            return
        for r in runs:
            if not r.infrastructure_pid or not r.infrastructure_pid.startswith("pid:"):
                continue
            pid = int(r.infrastructure_pid[4:])
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if r.id.encode() in cmdline:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def logs_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.logs.glob("*.log")))

    # -- reading the history ---------------------------------------------------------------------
    def run(self, run_id: str) -> Any:
        return self.client.read_flow_run(run_id)

    def states(self, run_id: str) -> list[Any]:
        return sorted(self.client.read_flow_run_states(run_id), key=lambda s: s.timestamp)

    def state_names(self, run_id: str) -> list[str]:
        return [s.name for s in self.states(run_id)]

    def runs_of(self, flow_name: str) -> list[Any]:
        return self.client.read_flow_runs(FlowRunFilter(flow_name=flow_name, limit=10_000))

    def subflow_runs(self, run_id: str) -> list[Any]:
        return self.client.read_flow_runs(FlowRunFilter(parent_flow_run_id=run_id))

    def wait_state(self, run_id: str, types: Iterable[StateType] | StateType, timeout: float,
                   name: str | None = None) -> Any:
        """Wait until the run is in one of ``types`` (and named ``name``); fails at once if it
        reaches another terminal state."""
        wanted = {types} if isinstance(types, StateType) else set(types)

        def check() -> Any:
            r = self.run(run_id)
            if r.state_type in wanted and (name is None or r.state_name == name):
                return r
            if r.state_type in TERMINAL_TYPES and r.state_type not in wanted:
                raise AssertionError(f"flow run {run_id} ended {r.state_name} "
                                     f"({r.state_message}); states {self.state_names(run_id)}"
                                     f"\n{self.logs_text()}")
            return None

        return wait_for(check, timeout, f"flow run {run_id} to be {name or wanted}",
                        on_timeout=lambda: f"states: {self.state_names(run_id)}\n"
                        f"{self.logs_text()}")

    def wait_all(self, run_ids: Iterable[str], types: Iterable[StateType] | StateType,
                 timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        return [self.wait_state(i, types, max(0.1, deadline - time.monotonic()))
                for i in run_ids]


@contextlib.contextmanager
def open_stack(tmp_path: Path, home: Path) -> Iterator[Stack]:
    """A test's :class:`Stack` in ``tmp_path``; everything it started is stopped on exit."""
    stack = Stack(home=home, project=tmp_path / "project", logs=tmp_path / "logs")
    stack.project.mkdir()
    stack.logs.mkdir()
    try:
        yield stack
    finally:
        stack.stop_all()


class Agent:
    """A `legato agent start` subprocess in a session of its own, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path,
                 log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False

    def start(self) -> Agent:
        out = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the agent alone (its flow runs' processes are in sessions of their own)."""
        assert self.proc is not None
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the agent stops dead, its connections open (a stalled machine)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (an agent in a long poll answers
        SIGTERM only when the poll returns)."""
        if self.alive():
            assert self.proc is not None
            self.thaw()  # a frozen agent would never see the SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def infrastructure_pid(stack: Stack, run_id: str, timeout: float = 30) -> int:
    """The pid of the flow run's process (``pid:N``), once its agent recorded it."""
    ident = wait_for(lambda: stack.run(run_id).infrastructure_pid, timeout,
                     f"flow run {run_id}'s infrastructure pid")
    prefix, _, number = ident.partition(":")
    assert prefix == "pid", ident
    return int(number)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, finished and waiting to be collected, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")


def kill_if_ours(pid: int, needle: str) -> None:
    """SIGKILL ``pid`` if it still runs and its command line holds ``needle`` (a process a
    test's flow started, left behind by a failure)."""
    try:
        if needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


def database_url(home: Path) -> str:
    """The history database this test's server uses (PostgreSQL's when set, else SQLite's)."""
    return os.environ.get("LEGATO_DATABASE_URL") or f"sqlite:///{home / 'legato.db'}"


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` over a connection of its own (what another program would see)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def truncate(url: str) -> None:
    """Empty every table of the PostgreSQL database ``url`` (a test's fresh start)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            if sa.inspect(conn).has_table("flow_run"):
                names = ", ".join(t.name for t in models.metadata.sorted_tables)
                conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    finally:
        engine.dispose()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def state_types(states: list[Any]) -> list[StateType]:
    return [s.type for s in states]


def running_count(stack: Stack, run_id: str) -> int:
    return sum(s.type is StateType.RUNNING for s in stack.states(run_id))


__all__ = ["FIXTURES", "LEGATO", "Agent", "Stack", "database_url", "infrastructure_pid",
           "kill_if_ours", "lines", "now", "open_stack", "process_alive", "query", "running_count", "state_types",
           "truncate", "wait_for"]
