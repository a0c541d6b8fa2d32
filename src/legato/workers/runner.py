"""The loop agents and workers share: claim due runs, pull their code, start their
infrastructure, watch it, stop it on cancel, and report.

- **Claiming** goes through the client: the server answers a long poll (``wait_seconds``) as
  soon as a run is due; embedded (no server) the runner polls the database every
  ``poll_seconds``. A claim is a lease with a fencing token that the flow run's process needs
  to start the run; a claimed run this runner could not start is handed back at once.
- **Watching**: a process that exits while its run has not finished (killed, out of memory)
  makes the run Crashed; a run moved to Cancelling has its process stopped (SIGTERM, then
  SIGKILL after ``cancel_grace_seconds``, LEGATO_WORKER_CANCEL_GRACE_SECONDS) and is
  confirmed Cancelled.
- **Stopping** (Ctrl-C, SIGTERM): no more claims; runs claimed and not started are handed back;
  running flow runs are left to finish in their own processes (they report on their own).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..blocks.core import block_from_document
from ..exceptions import LegatoError
from ..infrastructure import FlowRunLaunch, Process, infrastructure_for_type
from ..logging import get_logger
from ..settings import get_settings
from ..states import TERMINAL_TYPES, StateType

log = get_logger("legato.worker")
_SPOOL_CHECK_SECONDS = 30.0  # how often an agent looks for spools left by exited processes


class StopWaiting(BaseException):
    """Raised by a stop signal's handler to end a claim's long poll at once (a BaseException:
    no ``except Exception`` on the way may swallow it)."""


@dataclass
class _Running:
    run_id: str
    claim_token: int | None
    handle: Any
    infra: Any
    code_dir: Path | None
    started: float = field(default_factory=time.monotonic)
    cancelling: bool = False


class Runner:
    def __init__(self, client: Any, name: str, *, pool_name: str | None = None,
                 queue_names: list[str] | None = None, limit: int | None = None,
                 poll_seconds: float = 1.0, long_poll_seconds: float = 5.0,
                 lease_seconds: float = 30.0, cancel_grace_seconds: float | None = None,
                 api_url: str | None = None, api_key: str | None = None) -> None:
        self.client = client
        self.name = name
        self.pool_name = pool_name
        self.queue_names = queue_names or None
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.long_poll_seconds = long_poll_seconds if api_url else 0.0
        self.lease_seconds = lease_seconds
        # SIGTERM, then SIGKILL after this long (default: LEGATO_WORKER_CANCEL_GRACE_SECONDS)
        self.cancel_grace_seconds = (get_settings().worker_cancel_grace_seconds
                                     if cancel_grace_seconds is None else cancel_grace_seconds)
        self.api_url = api_url
        self.api_key = api_key
        self.running: dict[str, _Running] = {}
        self._spool_checked = float("-inf")
        self._pool_row: dict[str, Any] | None = None
        self.stopping = threading.Event()

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        where = f"pool {self.pool_name!r}" if self.pool_name else "the agents' pool"
        queues = ", ".join(self.queue_names or []) or "every queue"
        log.info("%s polling %s (%s)", self.name, where, queues)
        while not self.stopping.is_set():
            try:
                got = self.run_once()
            except StopWaiting:
                break  # stopped in a long poll: what it would have claimed is not claimed
            except LegatoError as exc:
                log.error("%s: %s", self.name, exc)
                self.stopping.wait(self.poll_seconds)  # (an unreachable server: not a busy loop)
                continue
            except Exception:  # noqa: BLE001 - one bad round must not stop the agent
                log.exception("%s: unexpected error in a polling round", self.name)
                self.stopping.wait(self.poll_seconds)
                continue
            if not got and not self.long_poll_seconds:
                self.stopping.wait(self.poll_seconds)
            elif not got:
                self.stopping.wait(0.05)  # the long poll did the waiting

    def run_once(self) -> int:
        """One round: watch what runs, then claim and start due runs. Returns how many started."""
        if time.monotonic() - self._spool_checked > _SPOOL_CHECK_SECONDS:
            self._send_spooled()
        self.watch()
        room = (self.limit - len(self.running)) if self.limit else 100
        if room <= 0 or self.stopping.is_set():
            return 0
        wait = self.long_poll_seconds if not self.running else min(self.long_poll_seconds, 1.0)
        kwargs: dict[str, Any] = {"pool_name": self.pool_name, "queue_names": self.queue_names,
                                  "limit": room, "lease_seconds": self.lease_seconds}
        if wait:
            kwargs["wait_seconds"] = wait
        self.waiting = True
        try:
            claimed = self.client.claim_flow_runs(self.name, **kwargs)
        finally:
            self.waiting = False
        started = 0
        for run in claimed:
            if self.stopping.is_set():
                self._release(run)
                continue
            started += self.submit(run)
        return started

    def stop(self) -> None:
        """Stop claiming; hand back what was claimed and not started."""
        self.stopping.set()

    waiting = False  # in a claim's long poll (a signal handler may interrupt it)

    # -- one run ---------------------------------------------------------------------------------
    def submit(self, run: dict[str, Any]) -> int:
        run_id, token = str(run["id"]), run.get("claim_token")
        code_dir: Path | None = None
        try:
            deployment = self.client.read_deployment(str(run["deployment_id"]))
            code_dir, temporary = self._pull_code(deployment)
            infra = self._infrastructure(deployment, run, code_dir)
            launch = FlowRunLaunch(flow_run_id=run_id, env=self._env(token), name=run["name"],
                                   labels={"legato.io/flow-run-id": run_id,
                                           "legato.io/deployment-id": str(run["deployment_id"])})
            handle = infra.start(launch)
        except Exception as exc:  # noqa: BLE001 - any failure to start is the run's, reported
            log.error("Could not start flow run %s: %s", run_id, exc)
            self._fail(run_id, token,
                       f"Its worker could not start it: {type(exc).__name__}: {exc}")
            if code_dir is not None and temporary:
                shutil.rmtree(code_dir, ignore_errors=True)
            return 0
        try:
            self.client.set_infrastructure_pid(run_id, token, handle.identifier)
        except LegatoError as exc:
            log.warning("Could not record flow run %s's process: %s", run_id, exc)
        self.running[run_id] = _Running(run_id, token, handle, infra,
                                        code_dir if temporary else None)
        log.info("Started flow run %s (%s) in %s", run_id, run["name"], handle.identifier)
        return 1

    def _pull_code(self, deployment: dict[str, Any]) -> tuple[Path, bool]:
        """The folder the flow's code is in: pulled from the storage block into a new temporary
        folder, or the deployment's local path."""
        storage_id = deployment.get("storage_document_id")
        if storage_id:
            doc = self.client.read_block_document_by_id(str(storage_id), include_secrets=True)
            storage = block_from_document(doc)
            target = Path(tempfile.mkdtemp(prefix="legato-flow-code-"))
            storage.get_directory(from_path=deployment.get("path") or None,
                                  local_path=str(target))
            return target, True
        path = deployment.get("path")
        if path and os.path.isdir(path):
            return Path(path), False
        return Path(os.getcwd()), False

    def _infrastructure(self, deployment: dict[str, Any], run: dict[str, Any],
                        code_dir: Path) -> Any:
        """The deployment's infrastructure block; on a typed work pool (Prefect 3), the pool's
        base job template filled with the run's job variables; else a local Process."""
        infra_id = deployment.get("infrastructure_document_id")
        overrides = dict(run.get("job_variables") or {})
        pool = self._pool()
        if infra_id:
            doc = self.client.read_block_document_by_id(str(infra_id), include_secrets=True)
            infra = block_from_document(doc)
        elif pool is not None and pool["type"] != "agent":
            infra = infrastructure_for_type(pool["type"]).from_job_variables(
                pool["base_job_template"] or infrastructure_for_type(
                    pool["type"]).base_job_template(), overrides)
            overrides = {}
        else:
            infra = Process()
        if isinstance(infra, Process) and infra.working_dir is None:
            overrides.setdefault("working_dir", str(code_dir))
        if overrides:
            infra = type(infra).model_validate({**infra.model_dump(), **overrides})
        return infra

    def _pool(self) -> dict[str, Any] | None:
        if self.pool_name is None:
            return None
        if self._pool_row is None:
            self._pool_row = self.client.read_work_pool(self.pool_name)
        return self._pool_row

    def _env(self, token: int | None) -> dict[str, str]:
        env = {}
        if token is not None:
            env["LEGATO_CLAIM_TOKEN"] = str(token)
        if self.api_url:
            env["LEGATO_API_URL"] = self.api_url
        if self.api_key:
            env["LEGATO_API_KEY"] = self.api_key
        return env

    # -- watching --------------------------------------------------------------------------------
    def watch(self) -> None:
        if not self.running:
            return
        cancelling = self._cancelling()
        for run_id, r in list(self.running.items()):
            if run_id in cancelling and not r.cancelling:
                log.info("Stopping flow run %s: it was cancelled", run_id)
                r.cancelling = True
                # in the background: the grace period must not hold up the other runs
                threading.Thread(target=self._stop_for_cancel, args=(r,), daemon=True,
                                 name=f"legato-cancel-{run_id}").start()
            code = r.handle.poll()
            if code is None:
                continue
            del self.running[run_id]
            if r.code_dir is not None:
                shutil.rmtree(r.code_dir, ignore_errors=True)
            self._send_spooled()  # what the process kept through an outage, first
            state = self.client.read_flow_run(run_id)
            if state.state_type not in TERMINAL_TYPES:
                self._crash(run_id, r.claim_token, f"Its process exited with code {code} before the flow run "
                                    "finished (killed, out of memory, or it failed to start).")

    def _stop_for_cancel(self, r: _Running) -> None:
        try:
            r.handle.kill(self.cancel_grace_seconds)
        except Exception as exc:  # noqa: BLE001 - reported; the confirmation still goes out
            log.warning("Could not stop flow run %s's process: %s", r.run_id, exc)
        try:
            self.client.finish_cancellation(r.run_id)
        except LegatoError as exc:
            log.warning("Could not confirm flow run %s Cancelled: %s", r.run_id, exc)

    def _cancelling(self) -> set[str]:
        # lazy: the read side's schemas load only when a run is being watched
        from ..schemas import FlowRunFilter

        # Cancelled too: a run whose cancellation someone else finished (crash detection, a
        # forced state) may still have a process here to stop
        runs = self.client.read_flow_runs(FlowRunFilter(
            ids=list(self.running), state_types=[StateType.CANCELLING, StateType.CANCELLED],
            limit=1000))
        return {r.id for r in runs}

    def _send_spooled(self) -> None:
        """Send the run history that flow processes of this machine kept in the spool when
        the server was away past their outage window (an HTTP client has a spool)."""
        self._spool_checked = time.monotonic()
        send = getattr(self.client, "send_spooled", None)
        if send is not None:
            send()

    def _crash(self, run_id: str, token: int | None, message: str) -> None:
        self._end(run_id, token, "CRASHED", message)

    def _fail(self, run_id: str, token: int | None, message: str) -> None:
        self._end(run_id, token, "FAILED", message)

    def _end(self, run_id: str, token: int | None, state_type: str, message: str) -> None:
        # decided against the stored run, and only while it is still this runner's claim (the
        # server may have retried it meanwhile)
        try:
            self.client.end_deployed_flow_run(run_id, state_type, message, token)
        except LegatoError as exc:
            log.warning("Could not mark flow run %s %s: %s", run_id, state_type.title(), exc)

    def _release(self, run: dict[str, Any]) -> None:
        try:
            self.client.release_claim(str(run["id"]), run.get("claim_token"))
        except LegatoError as exc:
            log.warning("Could not hand back flow run %s: %s", run["id"], exc)

    def wait_for_running(self, timeout: float | None = None) -> None:
        """Until every started flow run's process has exited (or ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running and (deadline is None or time.monotonic() < deadline):
            self.watch()
            time.sleep(0.1)
