"""Trigger-to-start latency of a deployment: the flow, and the warm process that triggers it.

The flow `deploy-latency` writes `time.time()` to the file named by its `out` parameter as its
first statement; the deployment's runner (Legato: `legato agent start`; Prefect: `flow.serve`)
runs it in a new process. Modes (the package is the first argument, as in the other workloads):

    python deploy_latency_flow.py legato apply              # Deployment.build_from_flow().apply()
    python deploy_latency_flow.py prefect serve             # flow.serve(name=...) until killed
    python deploy_latency_flow.py X trigger OUT_DIR N SEED  # N samples, one warm process

`trigger` does, per sample: t0 = time.time(); the API calls `legato deployment run` makes
(read the deployment by name, create a flow run from it) / Prefect's
`run_deployment(name, timeout=0)` (the same two calls); then waits (polling every 5 ms) for the
flow's file; latency = the time written there - t0. Before the next sample it waits for the run
to be final, then a random pause (uniform in [0, 10) s, the same sequence on both sides for a
given SEED) so that the trigger does not fall at the same point of a polling cycle every time.
The BENCH_RESULT line has the latencies in seconds, and when the runner picked each run up (its
first Pending state's time - t0), and for the process the flow ran in: its age when the flow's
first line ran and the CPU seconds it had used by then (start-up work, whatever the machine load).

Without arguments (as when a deployment's runner imports this file) the package is BENCH_IMPL.
"""

import importlib
import json
import os
import random
import sys
import time

NAME = "deploy-latency"
PAUSE_MAX_S = 10.0
DEADLINE_S = 120.0  # a sample not started by then is a failure


def _impl() -> str:
    if len(sys.argv) > 1 and sys.argv[1] in ("legato", "prefect"):
        return sys.argv[1]
    return os.environ.get("BENCH_IMPL", "legato")


orch = importlib.import_module(_impl())


@orch.flow(name=NAME)
def deploy_latency(out: str) -> None:
    started = time.time()
    cpu = os.times()
    with open(out + ".tmp", "w") as f:
        json.dump({"t": started, "age_s": _process_age(), "cpu_s": cpu.user + cpu.system}, f)
    os.replace(out + ".tmp", out)  # the waiting process never reads a half-written file


def _process_age() -> float | None:
    """Seconds since this process was created (Linux /proc, 10 ms resolution), else None."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


def _address() -> str:
    return f"{NAME}/{NAME}"


def _legato_trigger(out: str) -> tuple[float, str]:
    from legato.client.factory import get_client  # only in Legato's venv; HTTP (LEGATO_API_URL)

    t0 = time.time()
    client = get_client()
    d = client.read_deployment_by_name(_address())
    run = client.create_flow_run_from_deployment(str(d["id"]), parameters={"out": out})
    return t0, str(run["id"])


def _legato_final(run_id: str) -> bool:
    from legato.client.factory import get_client  # only in Legato's venv
    from legato.states import TERMINAL_TYPES

    return get_client().read_flow_run(run_id).state_type in TERMINAL_TYPES


def _legato_pending(run_id: str) -> float | None:
    from legato.client.factory import get_client  # only in Legato's venv

    return _first_pending(get_client().read_flow_run_states(run_id))


def _prefect_trigger(out: str) -> tuple[float, str]:
    from prefect.deployments import run_deployment  # only in the Prefect venv

    t0 = time.time()
    run = run_deployment(_address(), parameters={"out": out}, timeout=0)
    return t0, str(run.id)


def _prefect_final(run_id: str) -> bool:
    from prefect import get_client  # only in the Prefect venv

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return state is not None and state.is_final()


def _prefect_pending(run_id: str) -> float | None:
    from prefect import get_client  # only in the Prefect venv

    with get_client(sync_client=True) as client:
        return _first_pending(client.read_flow_run_states(run_id))


def _first_pending(states: list) -> float | None:
    """When the runner picked the run up: its first Pending state (both runners set one)."""
    times = [s.timestamp.timestamp() for s in states
             if str(getattr(s.type, "value", s.type)) == "PENDING"]
    return min(times, default=None)


def trigger(out_dir: str, n: int, seed: int) -> None:
    from _orch import report  # here: the flow-run processes import this file from elsewhere

    legato = orch.__name__ == "legato"
    fire = _legato_trigger if legato else _prefect_trigger
    final = _legato_final if legato else _prefect_final
    pending = _legato_pending if legato else _prefect_pending
    pauses = random.Random(seed)
    latencies: list[float] = []
    picked_up: list[float] = []
    process_age: list[float | None] = []  # the flow-run process's age at the flow's first line
    process_cpu: list[float] = []  # the CPU seconds it had used by then
    for i in range(n + 1):  # sample 0 warms this process (imports, connections) and is dropped
        out = os.path.join(out_dir, f"started-{i}")
        t0, run_id = fire(out)
        while not os.path.exists(out):
            if time.time() - t0 > DEADLINE_S:
                sys.exit(f"sample {i}: the flow's code had not started {DEADLINE_S:.0f} s "
                         f"after the trigger (flow run {run_id})")
            time.sleep(0.005)
        with open(out) as f:
            got = json.load(f)
        latency = got["t"] - t0
        deadline = time.time() + DEADLINE_S
        while not final(run_id) and time.time() < deadline:
            time.sleep(0.1)
        pending_at = pending(run_id)
        picked = pending_at - t0 if pending_at is not None else float("nan")
        if i:
            latencies.append(latency)
            picked_up.append(picked)
            process_age.append(got["age_s"])
            process_cpu.append(got["cpu_s"])
        print(f"sample {i}: {latency:.3f} s (picked up after {picked:.3f} s)", file=sys.stderr,
              flush=True)
        if i < n:
            time.sleep(pauses.uniform(0.0, PAUSE_MAX_S))
    report(latencies_s=latencies, picked_up_s=picked_up, process_age_s=process_age,
           process_cpu_s=process_cpu)


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    if mode == "apply":
        from legato.deployments import Deployment  # only in Legato's venv

        Deployment.build_from_flow(deploy_latency, name=NAME, work_queue_name="default").apply()
        print("applied", flush=True)
    elif mode == "serve":
        deploy_latency.serve(name=NAME)
    elif mode == "trigger":
        trigger(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
