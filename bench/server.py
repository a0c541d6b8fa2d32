"""Server benchmarks: `legato server start` against `prefect server start`, driven by bench/run.py.

What is here is the machinery; run.py turns the numbers into table rows.

- start_server / stop_server: a server in a fresh home on a free port, in its own process group
  (stopped with SIGTERM, then SIGKILL for the whole group and anything it spawned).
- server_session: one server on SQLite: time until GET /api/health answers, resident memory
  after 5 s idle, 1,000 sequential tasks from a script pointed at it (seq_tasks.py), the history
  that can be read 1 s after the flow returned (server_history.py), memory after those runs.
- transitions_session: one server on a fresh PostgreSQL database, 8 client processes driving
  flow runs Pending -> Running -> Completed through POST /api/flow_runs/{id}/set_state.
- sdk_transitions_session: one server on a fresh PostgreSQL database, 8 processes of
  workloads/server_sdk_transitions.py (the real SDK) running flows of trivial tasks; the
  task-run states the server recorded (task_run_state, read from PostgreSQL) per second of wall
  time: the SDKs' own batched / event write path, not one set_state per request.

The HTTP load generator is the same code for both servers (httpx, one keep-alive connection per
client process); only the flow run creation body and the count endpoints' filter bodies differ.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

WORKLOADS = Path(__file__).resolve().parent / "workloads"
PG = "postgres@127.0.0.1:5432"  # trust auth
HEALTH_POLL_S = 0.02
MB = 1024 * 1024


class BenchError(Exception):
    """A server that did not start, a script that failed: recorded as the sample's error."""


def api_var(impl: Any) -> str:
    return "LEGATO_API_URL" if impl.name == "legato" else "PREFECT_API_URL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# A server process
# --------------------------------------------------------------------------------------------
@dataclass
class Server:
    impl: Any
    home: Path
    port: int
    proc: subprocess.Popen
    log_path: Path
    healthy_s: float = float("nan")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def server_command(impl: Any, port: int) -> list[str]:
    exe = impl.python.parent / impl.name  # .venv/bin/legato, .prefect-venv/bin/prefect
    base = [str(exe)] if exe.exists() else [str(impl.python), "-m", impl.name]
    return [*base, "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def start_server(
    impl: Any, tmp: Path, extra_env: dict[str, str] | None = None, *, timeout: float = 600
) -> Server:
    """Spawn the server in a fresh home under tmp; return once GET /api/health answers 200
    (polled every 20 ms), with the time from spawn to that answer in .healthy_s."""
    home = tmp / "server-home"
    home.mkdir()
    env = impl.env(home)
    env.update(extra_env or {})
    port = free_port()
    log_path = tmp / "server.log"
    with open(log_path, "wb") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            server_command(impl, port),
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop_server kills all of it
        )
    server = Server(impl, home, port, proc, log_path)
    try:
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if proc.poll() is not None:
                    raise BenchError(
                        f"{impl.name} server exited with {proc.returncode} before it was "
                        f"healthy:\n{tail(log_path)}"
                    )
                try:
                    if client.get(server.api + "/health").status_code == 200:
                        server.healthy_s = time.perf_counter() - t0
                        return server
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - t0 > timeout:
                    raise BenchError(
                        f"{impl.name} server not healthy after {timeout:.0f} s:\n{tail(log_path)}"
                    )
                time.sleep(HEALTH_POLL_S)
    except BaseException:
        stop_server(server)
        raise


def stop_server(server: Server) -> None:
    """SIGTERM to the server's process group (and anything it spawned elsewhere), up to 15 s
    to exit, then SIGKILL to whatever is left."""
    kill_tree(server.proc, grace=15.0)


def kill_tree(proc: subprocess.Popen, grace: float) -> None:
    try:
        spawned = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        spawned = []
    _signal(proc.pid, spawned, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    psutil.wait_procs(spawned, timeout=2.0)
    # whatever is left of the group (workers, a reloader), then the leader if it ignored SIGTERM
    _signal(proc.pid, spawned, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _signal(pgid: int, procs: list[psutil.Process], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass


def memory_tree(pid: int) -> dict[str, float]:
    """Resident memory of a process and all its descendants, MB: rss (the budget's number) and
    pss (shared pages divided among the processes that share them)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {"rss_mb": float("nan"), "pss_mb": float("nan"), "processes": 0}
    rss = pss = 0
    counted = 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        counted += 1
    return {"rss_mb": rss / MB, "pss_mb": pss / MB, "processes": counted}


def cpu_tree(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# --------------------------------------------------------------------------------------------
# Scripts pointed at a server
# --------------------------------------------------------------------------------------------
def client_env(impl: Any, tmp: Path, api: str) -> dict[str, str]:
    home = tmp / f"client-home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    env = impl.env(home)
    env[api_var(impl)] = api
    return env


def run_client(impl: Any, argv: list[str], tmp: Path, api: str) -> dict[str, Any]:
    """One workload script in a fresh client home with the API URL set; wall time and its
    BENCH_RESULT numbers."""
    env = client_env(impl, tmp, api)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [str(impl.python), *argv],
            cwd=WORKLOADS,
            env=env,
            capture_output=True,
            text=True,
            timeout=impl.timeout,
        )
    except subprocess.TimeoutExpired:
        return {
            "ok": False,
            "wall_s": time.perf_counter() - t0,
            "error": f"timed out after {impl.timeout:.0f} s",
        }
    wall = time.perf_counter() - t0
    reported: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            reported = json.loads(line[len("BENCH_RESULT ") :])
    out: dict[str, Any] = {
        "ok": proc.returncode == 0 and bool(reported),
        "wall_s": wall,
        "reported": reported,
    }
    if not out["ok"]:
        out["error"] = f"{argv[0]} exit code {proc.returncode}: " + "\n".join(
            proc.stderr.splitlines()[-15:]
        )
    return out


def _count(client: httpx.Client, impl: Any, flow_run_id: str, completed: bool) -> int:
    if impl.name == "legato":
        body: dict[str, Any] = {"flow_run_id": flow_run_id}
        if completed:
            body["state_types"] = ["COMPLETED"]
    else:
        body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
        if completed:
            body["task_runs"] = {"state": {"type": {"any_": ["COMPLETED"]}}}
    r = client.post("/task_runs/count", json=body)
    r.raise_for_status()
    value = r.json()
    return int(value["count"] if isinstance(value, dict) else value)


def count_history(client: httpx.Client, server: Server, flow_run_id: str) -> dict[str, Any]:
    """Task runs of a flow run through the API (all, and those in Completed), then its task-run
    states and log lines in the server's SQLite file (the same table names in both)."""
    impl = server.impl
    out: dict[str, Any] = {
        "task_runs": _count(client, impl, flow_run_id, completed=False),
        "completed": _count(client, impl, flow_run_id, completed=True),
    }
    db = server.home / impl.db_file
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            out["states"] = con.execute(
                "SELECT count(*) FROM task_run_state s JOIN task_run t ON t.id = s.task_run_id "
                "WHERE t.flow_run_id = ?",
                (flow_run_id,),
            ).fetchone()[0]
            out["logs"] = con.execute(
                "SELECT count(*) FROM log WHERE flow_run_id = ? OR task_run_id IN "
                "(SELECT id FROM task_run WHERE flow_run_id = ?)",
                (flow_run_id, flow_run_id),
            ).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as exc:
        out["db_error"] = str(exc)
    return out


def history_run(impl: Any, tmp: Path, server: Server, n: int, hold_max_s: float) -> dict[str, Any]:
    """server_history.py: count the flow run's history 1 s after its flow call returned (the
    script still alive), then every second until it is whole or hold_max_s has passed."""
    env = client_env(impl, tmp, server.api)
    err_path = tmp / f"history-client-{uuid.uuid4().hex[:8]}.log"
    with open(err_path, "wb") as errf:
        proc = subprocess.Popen(
            [str(impl.python), "server_history.py", impl.name, str(n)],
            cwd=WORKLOADS,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errf,
            text=True,
            start_new_session=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    out: dict[str, Any] = {"ok": False, "n": n}
    try:
        deadline = time.perf_counter() + impl.timeout
        marker = None
        while marker is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.perf_counter()))
            except queue.Empty:
                raise BenchError(
                    f"server_history.py: no flow return after {impl.timeout:.0f} s"
                ) from None
            if line is None:
                proc.wait(timeout=10)
                raise BenchError(f"server_history.py exit code {proc.returncode}: {tail(err_path)}")
            if line.startswith("BENCH_RETURNED "):
                marker = json.loads(line[len("BENCH_RETURNED ") :])
        run_id, returned_at = marker["flow_run_id"], marker["returned_at"]
        out["flow_s"] = marker["flow_s"]
        with httpx.Client(base_url=server.api, timeout=30, trust_env=False) as client:
            delay = returned_at + 1.0 - time.time()
            if delay > 0:
                time.sleep(delay)
            out["counted_at_s"] = time.time() - returned_at  # 1.0 unless this process was late
            at_1s = count_history(client, server, run_id)
            out["at_1s"] = at_1s
            whole = lambda c: c["task_runs"] >= n and c["completed"] >= n  # noqa: E731
            complete_after = out["counted_at_s"] if whole(at_1s) else None
            progress = [[round(out["counted_at_s"], 2), at_1s["task_runs"]]]
            last = at_1s
            while complete_after is None and time.time() - returned_at < hold_max_s:
                time.sleep(max(0.0, returned_at + len(progress) + 1.0 - time.time()))
                last = count_history(client, server, run_id)
                t = time.time() - returned_at
                progress.append([round(t, 2), last["task_runs"]])
                if whole(last):
                    complete_after = t
            out["complete_after_s"] = complete_after  # None: not whole within hold_max_s
            out["last"] = last
            out["progress"] = progress
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=120)
        out["ok"] = proc.returncode == 0
        if not out["ok"]:
            out["error"] = f"server_history.py exit code {proc.returncode}: {tail(err_path)}"
    except (BenchError, httpx.HTTPError, subprocess.TimeoutExpired, OSError, KeyError) as exc:
        out["error"] = str(exc) or repr(exc)
    finally:
        if proc.poll() is None:
            kill_tree(proc, grace=5.0)
    return out


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------
def server_session(
    impl: Any,
    *,
    workloads: bool,
    idle_s: float = 5.0,
    n: int = 1000,
    hold_max_s: float = 30.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One server on SQLite in a fresh home. Always: time to healthy. With workloads: memory
    after idle_s, seq_tasks.py (timed), server_history.py (completeness), memory after."""
    out: dict[str, Any] = {"errors": [], "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix=f"bench-server-{impl.name}-") as t:
        tmp = Path(t)
        try:
            server = start_server(impl, tmp, timeout=60 if impl.name == "legato" else 600)
        except BenchError as exc:
            out["errors"].append(str(exc))
            return out
        try:
            out["healthy_s"] = server.healthy_s
            if not workloads:
                return out
            time.sleep(idle_s)
            out["memory_idle"] = memory_tree(server.proc.pid)
            seq = run_client(impl, ["seq_tasks.py", impl.name, str(n)], tmp, server.api)
            out["seq"] = seq
            if not seq["ok"]:
                out["errors"].append(seq["error"])
            hist = history_run(impl, tmp, server, n, hold_max_s)
            out["history"] = hist
            if not hist["ok"]:
                out["errors"].append(hist.get("error", "server_history.py failed"))
            out["memory_after"] = memory_tree(server.proc.pid)
            if server.proc.poll() is not None:
                out["errors"].append(f"the server died: {tail(server.log_path)}")
        finally:
            stop_server(server)
    return out


def _pg_admin():
    import psycopg  # the project's .venv has it (Legato's PostgreSQL driver)

    return psycopg.connect(f"postgresql://{PG}/postgres", autocommit=True)


def create_database(name: str) -> None:
    with _pg_admin() as con:
        con.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with _pg_admin() as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def on_postgres(
    impl: Any, out: dict[str, Any], what: str, body: Callable[[Server, str], dict[str, Any]]
) -> None:
    """A server on a fresh PostgreSQL database (created here, dropped WITH (FORCE) afterwards),
    then body(server, dsn) with dsn a libpq URL of that database; its result goes into out,
    failures into out["errors"]."""
    db = f"bench_{impl.name}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = (
        f"postgresql+psycopg://{PG}/{db}"
        if impl.name == "legato"
        else f"postgresql+asyncpg://{PG}/{db}"
    )
    var = "LEGATO_DATABASE_URL" if impl.name == "legato" else "PREFECT_API_DATABASE_CONNECTION_URL"
    create_database(db)
    try:
        with tempfile.TemporaryDirectory(prefix=f"bench-pg-{impl.name}-") as t:
            tmp = Path(t)
            try:
                server = start_server(
                    impl, tmp, {var: url}, timeout=60 if impl.name == "legato" else 600
                )
            except BenchError as exc:
                out["errors"].append(str(exc))
                return
            try:
                out["healthy_s"] = server.healthy_s
                try:
                    out.update(body(server, f"postgresql://{PG}/{db}"))
                except Exception as exc:  # noqa: BLE001 - a failed sample, not a failed bench
                    out["errors"].append(f"{what}: {exc!r}")
                if server.proc.poll() is not None:
                    out["errors"].append(f"the server died: {tail(server.log_path)}")
            finally:
                stop_server(server)
    finally:
        drop_database(db)


def transitions_session(
    impl: Any,
    *,
    clients: int = 8,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """A server on a fresh PostgreSQL database; `clients` processes each create flow runs and
    drive them Pending -> Running -> Completed for warmup_s + duration_s; accepted set_state
    calls that finished inside the last duration_s are counted."""
    out: dict[str, Any] = {
        "errors": [],
        "clients": clients,
        "duration_s": duration_s,
        "load_average": os.getloadavg(),
    }
    on_postgres(
        impl,
        out,
        "load generator",
        lambda server, _dsn: drive_transitions(server, clients, duration_s, warmup_s),
    )
    return out


def drive_transitions(
    server: Server, clients: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    with httpx.Client(base_url=server.api, timeout=30, trust_env=False) as c:
        r = c.post("/flows/", json={"name": "bench-transitions"})
        r.raise_for_status()
        flow_id = r.json()["id"]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(clients + 1)
    go_at = ctx.Value("d", 0.0)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_client_worker,
            daemon=True,
            args=(server.api, flow_id, barrier, go_at, warmup_s, duration_s, results),
        )
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    try:
        go_at.value = time.monotonic() + 0.2
        barrier.wait(timeout=120)  # every client has imported httpx and opened its connection
        start = go_at.value + warmup_s
        time.sleep(max(0.0, start - time.monotonic()))
        cpu0, self0 = cpu_tree(server.proc.pid), psutil.cpu_times()
        time.sleep(max(0.0, start + duration_s - time.monotonic()))
        cpu1, self1 = cpu_tree(server.proc.pid), psutil.cpu_times()
        outs = [results.get(timeout=duration_s + warmup_s + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    busy = lambda t: t.user + t.system + getattr(t, "nice", 0.0)  # noqa: E731
    accepted = sum(o["accepted"] for o in outs)
    other: dict[str, int] = {}
    for o in outs:
        for k, v in o["other"].items():
            other[k] = other.get(k, 0) + v
    lat = [x for o in outs for x in o["lat_ms"]]
    lat.sort()
    return {
        "per_s": accepted / duration_s,
        "accepted": accepted,
        "flow_runs_created": sum(o["created"] for o in outs),
        "not_accepted": other,
        "client_errors": [o["exception"] for o in outs if o.get("exception")],
        "set_state_p50_ms": statistics.median(lat) if lat else None,
        "set_state_p99_ms": lat[int(0.99 * (len(lat) - 1))] if lat else None,
        # CPU seconds per wall second: the server's, and the whole machine's
        "server_cpu": (cpu1 - cpu0) / duration_s,
        # accepted transitions per CPU-second the server used: what one free core would give
        "per_server_cpu_s": accepted / (cpu1 - cpu0) if cpu1 > cpu0 else float("nan"),
        "machine_cpu": (busy(self1) - busy(self0)) / duration_s,
        "cpus": os.cpu_count(),
    }


def _client_worker(
    api: str,
    flow_id: str,
    barrier: Any,
    go_at: Any,
    warmup_s: float,
    duration_s: float,
    results: Any,
) -> None:
    """One load-generating client process (spawned): create a flow run, set Running, set
    Completed; repeat until the window closes."""
    out: dict[str, Any] = {"accepted": 0, "other": {}, "created": 0, "lat_ms": []}
    try:
        with httpx.Client(base_url=api, timeout=60, trust_env=False) as c:
            c.get("/health")  # open the keep-alive connection before the start
            barrier.wait(timeout=120)
            begin = go_at.value
            start, end = begin + warmup_s, begin + warmup_s + duration_s
            time.sleep(max(0.0, begin - time.monotonic()))
            body = {"flow_id": flow_id, "state": {"type": "PENDING"}}
            while time.monotonic() < end:
                r = c.post("/flow_runs/", json=body)
                if r.status_code not in (200, 201):
                    k = f"create: HTTP {r.status_code}"
                    out["other"][k] = out["other"].get(k, 0) + 1
                    continue
                run_id = r.json()["id"]
                if time.monotonic() >= start:
                    out["created"] += 1
                for target in ("RUNNING", "COMPLETED"):
                    t0 = time.monotonic()
                    r = c.post(f"/flow_runs/{run_id}/set_state", json={"state": {"type": target}})
                    t1 = time.monotonic()
                    status = (
                        r.json().get("status")
                        if r.status_code in (200, 201)
                        else f"HTTP {r.status_code}"
                    )
                    if start <= t1 < end:
                        out["lat_ms"].append((t1 - t0) * 1000)
                        if status == "ACCEPT":
                            out["accepted"] += 1
                        else:
                            k = f"{target}: {status}"
                            out["other"][k] = out["other"].get(k, 0) + 1
                    if status != "ACCEPT":
                        break
    except Exception as exc:  # noqa: BLE001 - reported, not raised, so the parent gets a result
        out["exception"] = repr(exc)
    results.put(out)


# --------------------------------------------------------------------------------------------
# Task-run state transitions through the SDK's own write path
# --------------------------------------------------------------------------------------------
STATES_PER_TASK_RUN = 3  # Pending, Running, Completed: what both SDKs record for a plain task


def sdk_transitions_session(
    impl: Any,
    *,
    clients: int = 8,
    n: int = 500,
    duration_s: float = 10.0,
    cap_s: float = 60.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """A server on a fresh PostgreSQL database; `clients` processes of
    workloads/server_sdk_transitions.py (the real SDK, API URL set) run flows of n sequential
    `inc` tasks for duration_s from a common start; then the task-run states in the server's
    database are counted until every task run the clients ran has its states there, or cap_s
    after the last client's last flow returned."""
    out: dict[str, Any] = {
        "errors": [],
        "clients": clients,
        "n": n,
        "duration_s": duration_s,
        "cap_s": cap_s,
        "load_average": os.getloadavg(),
    }
    on_postgres(
        impl,
        out,
        "SDK clients",
        lambda server, dsn: drive_sdk_transitions(server, dsn, clients, n, duration_s, cap_s, log),
    )
    return out


def _count_task_run_states(con: Any) -> tuple[int, int]:
    """(all task-run states, Completed ones): the same table and column names in both
    schemas (Prefect's `type` is an enum, compared with a text literal)."""
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE type = 'COMPLETED') FROM task_run_state"
    ).fetchone()
    return int(row[0]), int(row[1])


def drive_sdk_transitions(
    server: Server,
    dsn: str,
    clients: int,
    n: int,
    duration_s: float,
    cap_s: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    import psycopg

    impl = server.impl
    tmp = server.home.parent
    procs: list[subprocess.Popen] = []
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()  # (client, line); None: EOF
    err_paths: list[Path] = []

    def reader(i: int, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put((i, line))
        lines.put((i, None))

    def client_failed(i: int, what: str) -> BenchError:
        procs[i].wait(timeout=10)
        return BenchError(
            f"client {i} {what} (exit code {procs[i].returncode}): {tail(err_paths[i])}"
        )

    try:
        for i in range(clients):
            env = client_env(impl, tmp, server.api)
            err_paths.append(tmp / f"sdk-client-{i}.log")
            with open(err_paths[-1], "wb") as errf:
                proc = subprocess.Popen(
                    [
                        str(impl.python),
                        "server_sdk_transitions.py",
                        impl.name,
                        str(n),
                        str(duration_s),
                    ],
                    cwd=WORKLOADS,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errf,
                    text=True,
                    start_new_session=True,
                )
            procs.append(proc)
            threading.Thread(target=reader, args=(i, proc), daemon=True).start()

        # every client has imported its SDK and run a task-less warm-up flow
        t_spawn = time.perf_counter()
        deadline = t_spawn + impl.timeout
        ready: set[int] = set()
        while len(ready) < clients:
            try:
                i, line = lines.get(timeout=max(0.1, deadline - time.perf_counter()))
            except queue.Empty:
                raise BenchError(
                    f"{clients - len(ready)} clients not ready after {impl.timeout:.0f} s"
                ) from None
            if line is None:
                raise client_failed(i, "exited before it was ready")
            if line.startswith("BENCH_READY"):
                ready.add(i)
        ready_s = time.perf_counter() - t_spawn

        with psycopg.connect(dsn, autocommit=True) as con:
            base_total, base_completed = _count_task_run_states(con)
            go = time.time() + 0.5
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"{go!r}\n")
                p.stdin.flush()
            time.sleep(max(0.0, go - time.time()))
            cpu0, self0 = cpu_tree(server.proc.pid), psutil.cpu_times()

            done: dict[int, dict[str, Any]] = {}
            progress: list[list[float]] = []  # [s since start, task-run states]
            last_logged = go
            complete_at: float | None = None
            all_done_at: float | None = None
            at_all_done: tuple[int, int] | None = None
            next_poll = go
            while True:
                # until every client is done: count once a second, and at once when the last
                # one reports; then every 0.1 s
                while len(done) < clients:
                    try:
                        i, line = lines.get(timeout=max(0.0, next_poll - time.time()) or 1e-3)
                    except queue.Empty:
                        break
                    if line is None:
                        if i not in done:
                            raise client_failed(i, "exited before its flows were done")
                    elif line.startswith("BENCH_DONE "):
                        done[i] = json.loads(line[len("BENCH_DONE ") :])
                now = time.time()
                next_poll = now + 1.0
                total, completed = _count_task_run_states(con)
                total -= base_total
                completed -= base_completed
                if now - last_logged >= 1.0:
                    progress.append([round(now - go, 2), total])
                    last_logged = now
                if len(done) == clients:
                    expected = sum(d["tasks"] for d in done.values())
                    if all_done_at is None:
                        all_done_at = max(d["finished_at"] for d in done.values())
                        at_all_done = (total, completed)
                    if completed >= expected and total >= STATES_PER_TASK_RUN * expected:
                        complete_at = now
                        break
                    if now - all_done_at >= cap_s:
                        break
                    time.sleep(0.1)
                elif now - go > impl.timeout:
                    raise BenchError(
                        f"{clients - len(done)} clients not done after {impl.timeout:.0f} s"
                    )
            cpu1, self1 = cpu_tree(server.proc.pid), psutil.cpu_times()
        progress.append([round(now - go, 2), total])
        end = complete_at if complete_at is not None else now
        wall = end - go
        busy = lambda t: t.user + t.system + getattr(t, "nice", 0.0)  # noqa: E731
        assert all_done_at is not None and at_all_done is not None
        result: dict[str, Any] = {
            "per_s": total / wall,
            "states": total,
            "completed_states": completed,
            "expected_states": STATES_PER_TASK_RUN * expected,
            "task_runs": expected,
            "flows": sum(d["flows"] for d in done.values()),
            "complete": complete_at is not None,
            "wall_s": wall,
            # the clients' flows: start until the last client's last flow returned
            "flows_s": all_done_at - go,
            "states_at_flows_done": at_all_done[0],
            # after the last flow returned: until the count was complete, or the cap
            "waited_s": end - all_done_at,
            "flow_s": [s for d in done.values() for s in d.get("flow_s", [])],
            "progress": progress,
            "ready_s": ready_s,
            "server_cpu": (cpu1 - cpu0) / wall,
            "per_server_cpu_s": total / (cpu1 - cpu0) if cpu1 > cpu0 else float("nan"),
            "machine_cpu": (busy(self1) - busy(self0)) / wall,
            "cpus": os.cpu_count(),
        }

        # let the clients exit (their flows are over; what the exit flushes is not counted)
        for p in procs:
            try:
                assert p.stdin is not None
                p.stdin.write("\n")
                p.stdin.close()
            except OSError:
                pass
        for i, p in enumerate(procs):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                result.setdefault("client_errors", []).append(f"client {i}: did not exit in 60 s")
                continue
            if p.returncode != 0:
                result.setdefault("client_errors", []).append(
                    f"client {i} exit code {p.returncode}: {tail(err_paths[i])}"
                )
        return result
    finally:
        for p in procs:
            if p.poll() is None:
                kill_tree(p, grace=5.0)
