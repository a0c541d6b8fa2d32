"""``python -m legato.engine.deployed FLOW_RUN_ID``: run a deployment's flow run in this process.

This is what a worker starts (in a process, a container or a Kubernetes Job), in the folder it
pulled the deployment's code into. It loads the flow from the deployment's entrypoint, starts the
run with the worker's claim token (``LEGATO_CLAIM_TOKEN``: only the current holder may start it,
so the code never runs twice), heartbeats while it runs (as every flow run does:
engine/heartbeat.py), and exits 0 when the run Completed, 1 otherwise.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..client.factory import close_clients, get_client, server_known_up
from ..exceptions import TerminationSignal
from ..logging import get_logger
from ..settings import get_settings
from ..states import StateType

log = get_logger("legato.engine.deployed")


def run_deployed_flow_run(run_id: str, claim_token: int | None = None,
                          base_dir: str | Path | None = None) -> int:
    """Run the deployment's flow run ``run_id`` here; the process's exit code."""
    # lazy: the flow loader and the engine load only when a run is started
    from ..utilities.entrypoints import load_flow_from_entrypoint
    from .flow_engine import FlowRunEngine

    settings = get_settings()
    client = get_client(settings)
    run = client.read_flow_run(run_id)
    if run.deployment_id is None:
        log.error("Flow run %s is not a deployment's run: nothing to start.", run_id)
        return 1
    deployment = client.read_deployment(run.deployment_id)
    # the worker started this process in the folder it pulled the code into (the entrypoint is
    # relative to it)
    flow = load_flow_from_entrypoint(deployment["entrypoint"], base_dir=Path(base_dir or os.getcwd()))
    answer = client.start_flow_run(run_id, claim_token)
    if answer["status"] != "ACCEPT":
        log.warning("Flow run %s was not started: %s", run_id, answer.get("reason"))
        return 0  # another worker holds it, or it was cancelled: not this process's to run
    try:  # the engine's heartbeat (engine/heartbeat.py) beats for the run while it runs
        adopted = {"id": run_id, "name": run.name, "tags": list(run.tags),
                   "run_count": answer["run"]["run_count"]}
        params = dict(run.parameters or {})
        if flow.is_async:
            import asyncio  # lazy: asyncio only for async flows

            state = asyncio.run(FlowRunEngine(flow, (), params, adopt=adopted).run_async())
        else:
            state = FlowRunEngine(flow, (), params, adopt=adopted).run_sync()
    finally:
        close_clients()
    return 0 if state.type is StateType.COMPLETED else 1


def _terminate(signum: int, frame: Any) -> None:
    # without a handler, a process that is PID 1 (a Kubernetes pod) ignores SIGTERM until
    # SIGKILL; the engine ends the run Cancelled if it was cancelled, else Crashed
    raise TerminationSignal(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m legato.engine.deployed FLOW_RUN_ID", file=sys.stderr)
        return 2
    token = os.environ.get("LEGATO_CLAIM_TOKEN")
    server_known_up()  # its worker claimed the run from the server a moment ago
    return run_deployed_flow_run(args[0], int(token) if token else None)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # the run's end is recorded (close_clients flushed it); task threads abandoned by a cancel
    # or a timeout must not keep this process alive until their code returns
    os._exit(code)
