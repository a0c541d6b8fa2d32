"""Deployment trigger-to-start latency: Legato's agent against Prefect 3's `flow.serve`.

Driven by bench/run.py (`--only deploy_latency`); one session per side, each in a fresh
temporary folder, every process in its own process group and stopped at the end:

1. the server in a fresh home on a free port, SQLite, logging one line per request (Legato:
   `legato server start --access-log --log-level info`, whose access lines need the info level;
   Prefect: `prefect server start` with PREFECT_SERVER_LOGGING_LEVEL=INFO);
2. the deployment of workloads/deploy_latency_flow.py and what runs it (Legato:
   `Deployment.build_from_flow(...).apply()` then `legato agent start -q default`; Prefect:
   `flow.serve(name=...)` in its own process, which registers the deployment and polls for
   runs), each with the API URL set and a fresh client home; the session waits until the
   runner says it is polling;
3. idle load: the server's access-log lines over `idle_s` seconds with the runner idle;
4. latencies: `deploy_latency_flow.py X trigger` in one warm process: one discarded sample, then
   `n` samples of (t0; trigger through the API; the time the flow's first statement wrote - t0),
   with a random pause in [0, 10) s before each (the same sequence on both sides) so that the
   triggers fall at random points of the runner's polling cycle.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import server as srv

WORKLOADS = Path(__file__).resolve().parent / "workloads"
FLOW_SCRIPT = "deploy_latency_flow.py"
REQUEST = re.compile(r'"([A-Z]+) (/\S*) HTTP/[0-9.]+"')
# What each runner prints once it is about to poll (its first poll, a long poll on Legato's
# side, appears in the access log only when it ends).
READY_TEXT = {"legato": "started, polling queue", "prefect": "is being served"}
SEED = 6


def p90(xs: list[float]) -> float:
    """The 90th percentile (inclusive method: within the samples' range for any n)."""
    if len(xs) < 2:
        return xs[0] if xs else float("nan")
    return statistics.quantiles(xs, n=10, method="inclusive")[-1]


def requests_in(log_path: Path) -> list[str]:
    """'METHOD /path' of every access-log line so far (query strings dropped)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [f"{m.group(1)} {m.group(2).split('?')[0]}" for m in REQUEST.finditer(text)]


def _spawn(argv: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen:
    with open(log_path, "wb") as logf:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole at the end
        )


def _start_server(impl: Any, tmp: Path, procs: list[tuple[subprocess.Popen, float]]) -> srv.Server:
    """The server with one access-log line per request; returns once /api/health answers."""
    home = tmp / "server-home"
    home.mkdir()
    env = impl.env(home)
    port = srv.free_port()
    argv = srv.server_command(impl, port)
    if impl.name == "legato":
        argv += ["--access-log", "--log-level", "info"]
    else:
        env["PREFECT_SERVER_LOGGING_LEVEL"] = "INFO"  # uvicorn's access lines are at INFO
    log_path = tmp / "server.log"
    t0 = time.perf_counter()
    proc = _spawn(argv, env, log_path, tmp)
    procs.append((proc, 15.0))
    server = srv.Server(impl, home, port, proc, log_path)
    timeout = 60.0 if impl.name == "legato" else 600.0
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            if proc.poll() is not None:
                raise srv.BenchError(
                    f"{impl.name} server exited with {proc.returncode}:\n{srv.tail(log_path)}"
                )
            try:
                if client.get(server.api + "/health").status_code == 200:
                    server.healthy_s = time.perf_counter() - t0
                    return server
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > timeout:
                raise srv.BenchError(
                    f"{impl.name} server not healthy after {timeout:.0f} s:\n{srv.tail(log_path)}"
                )
            time.sleep(srv.HEALTH_POLL_S)


def _client_env(impl: Any, tmp: Path, server: srv.Server) -> dict[str, str]:
    env = srv.client_env(impl, tmp, server.api)
    env["BENCH_IMPL"] = impl.name  # the flow file imports this package in every process
    return env


def _start_runner(
    impl: Any, tmp: Path, server: srv.Server, procs: list[tuple[subprocess.Popen, float]]
) -> tuple[Path, float]:
    """Legato: apply the deployment, start the agent. Prefect: serve the flow. Returns the
    runner's log and the seconds until it said it is polling."""
    env = _client_env(impl, tmp, server)
    t0 = time.perf_counter()
    if impl.name == "legato":
        applied = subprocess.run(
            [str(impl.python), FLOW_SCRIPT, "legato", "apply"],
            cwd=WORKLOADS, env=env, capture_output=True, text=True, timeout=120,
        )
        if applied.returncode != 0:
            raise srv.BenchError(f"applying the deployment failed:\n{applied.stderr[-2000:]}")
        legato_cli = impl.python.parent / "legato"
        argv = [str(legato_cli), "agent", "start", "-q", "default"]
        grace = 3.0  # idle, nothing claimed: no need to wait out its 10 s long poll
    else:
        argv = [str(impl.python), FLOW_SCRIPT, "prefect", "serve"]
        grace = 10.0
    env["PYTHONUNBUFFERED"] = "1"  # its banner reaches the log file at once
    log_path = tmp / "runner.log"
    proc = _spawn(argv, env, log_path, WORKLOADS)
    procs.insert(0, (proc, grace))  # stopped before the server
    deadline = time.perf_counter() + 180
    while READY_TEXT[impl.name] not in srv.tail(log_path, 1000):
        if proc.poll() is not None:
            raise srv.BenchError(
                f"the {impl.name} runner exited with {proc.returncode}:\n{srv.tail(log_path)}"
            )
        if time.perf_counter() > deadline:
            raise srv.BenchError(
                f"the {impl.name} runner did not start polling in 180 s:\n{srv.tail(log_path)}"
            )
        time.sleep(0.05)
    return log_path, time.perf_counter() - t0


def _idle_load(server: srv.Server, idle_s: float) -> dict[str, Any]:
    time.sleep(1.0)  # let the runner's start-up requests pass
    before = requests_in(server.log_path)
    time.sleep(idle_s)
    during = requests_in(server.log_path)[len(before):]
    return {
        "idle_s": idle_s,
        "idle_requests": len(during),
        "idle_rps": len(during) / idle_s,
        "idle_by_request": dict(Counter(during)),
    }


def _trigger(impl: Any, tmp: Path, server: srv.Server, n: int,
             procs: list[tuple[subprocess.Popen, float]]) -> dict[str, Any]:
    out_dir = tmp / "started"
    out_dir.mkdir()
    env = _client_env(impl, tmp, server)
    log_path = tmp / "trigger.log"
    with open(log_path, "wb") as errf:
        proc = subprocess.Popen(
            [str(impl.python), FLOW_SCRIPT, impl.name, "trigger", str(out_dir), str(n),
             str(SEED)],
            cwd=WORKLOADS, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=errf, text=True, start_new_session=True,
        )
    procs.insert(0, (proc, 5.0))
    try:
        stdout, _ = proc.communicate(timeout=120 + 200 * (n + 1))
    except subprocess.TimeoutExpired:
        raise srv.BenchError(f"the trigger process did not finish:\n{srv.tail(log_path)}") from None
    reported = [ln for ln in stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not reported:
        raise srv.BenchError(
            f"{FLOW_SCRIPT} trigger exit code {proc.returncode}:\n{srv.tail(log_path)}"
        )
    return json.loads(reported[-1][len("BENCH_RESULT ") :])


def session(impl: Any, *, n: int, idle_s: float = 20.0,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """One side's session (see the module docstring). Keys: latencies_s, median_s, p90_s,
    picked_up_s (the runs' first Pending state - trigger), process_age_s / process_cpu_s (the
    flow-run process's age and CPU seconds at the flow's first line), idle_rps (and the idle counts), healthy_s, runner_ready_s, errors, load_average."""
    out: dict[str, Any] = {"errors": [], "load_average": os.getloadavg()}
    procs: list[tuple[subprocess.Popen, float]] = []  # stopped in this order
    with tempfile.TemporaryDirectory(prefix=f"bench-deploy-{impl.name}-") as t:
        tmp = Path(t)
        try:
            server = _start_server(impl, tmp, procs)
            out["healthy_s"] = server.healthy_s
            _, out["runner_ready_s"] = _start_runner(impl, tmp, server, procs)
            log(f"  {'deploy':<12} {impl.label:<14} server healthy {server.healthy_s:.1f} s, "
                f"runner polling {out['runner_ready_s']:.1f} s later; idle {idle_s:.0f} s ...")
            out.update(_idle_load(server, idle_s))
            log(f"  {'deploy':<12} {impl.label:<14} idle: {out['idle_requests']} requests in "
                f"{idle_s:.0f} s {out['idle_by_request']}; {n} + 1 triggers ...")
            got = _trigger(impl, tmp, server, n, procs)
            lat = got["latencies_s"]
            out.update(latencies_s=lat, median_s=statistics.median(lat), p90_s=p90(lat),
                       picked_up_s=got["picked_up_s"], process_age_s=got["process_age_s"],
                       process_cpu_s=got["process_cpu_s"])
            if server.proc.poll() is not None:
                out["errors"].append(f"the server died:\n{srv.tail(server.log_path)}")
        except (srv.BenchError, OSError, subprocess.SubprocessError, ValueError) as exc:
            out["errors"].append(str(exc) or repr(exc))
        finally:
            for proc, grace in procs:
                if proc.poll() is None or _group_alive(proc.pid):
                    srv.kill_tree(proc, grace=grace)
    return out


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
