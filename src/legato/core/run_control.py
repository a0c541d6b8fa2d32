"""What keeps deployments' runs moving and honest, as the server's services (and the embedded
CLI) call it: making scheduled runs ahead of time, marking late ones, finding crashed ones by
their missing heartbeats, and cancelling.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..exceptions import ConflictError, ObjectNotFound
from ..states import TERMINAL_TYPES, State, StateType
from ..store import models
from ..store.database import Database
from .deployments import DeploymentCore, _deployment, _new_run, _token_guard
from .orchestrator import transition_in_conn
from .rules import Decision, Verdict

_UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC)


def scheduled_key(when: dt.datetime) -> str:
    """The idempotency key of a deployment's run at a scheduled time (unique per deployment)."""
    return f"scheduled {when.astimezone(_UTC).isoformat()}"


def schedule_runs(db: Database, *, now: dt.datetime | None = None,
                  horizon: dt.timedelta = dt.timedelta(days=7), min_runs: int = 3,
                  max_runs: int = 100, deployment_id: str | None = None) -> int:
    """Create the upcoming runs of every active schedule of every deployment not paused: at
    least ``min_runs`` and everything within ``horizon``, at most ``max_runs`` each. A run that
    exists for a (deployment, time) is never made again. Returns how many were made."""
    # lazy: croniter and dateutil load only where schedules are handled
    from ..schedules import schedule_from_dict

    now = now or _now()
    d, ds = models.deployment, models.deployment_schedule
    made = 0
    with db.read() as conn:
        q = (sa.select(ds.c.id, ds.c.deployment_id, ds.c.schedule, ds.c.parameters,
                       ds.c.max_scheduled_runs)
             .join(d, d.c.id == ds.c.deployment_id)
             .where(ds.c.active.is_(True), d.c.paused.is_(False)))
        if deployment_id is not None:
            q = q.where(d.c.id == deployment_id)
        rows = conn.execute(q).all()
    for schedule_id, dep_id, body, parameters, most in rows:
        schedule = schedule_from_dict(body)
        limit = min(most or max_runs, max_runs)
        times = schedule.get_dates(n=limit, start=now, end=now + horizon)
        if len(times) < min_runs:
            times = schedule.get_dates(n=min(min_runs, limit), start=now)
        with db.write() as conn:  # one deployment's runs per transaction: short locks
            # the schedule must still be there and active as the runs are made (a redeploy or
            # an edit committed since the read replaced it: its runs would be stale)
            check = sa.select(ds.c.id).join(d, d.c.id == ds.c.deployment_id).where(
                ds.c.id == schedule_id, ds.c.active.is_(True), d.c.paused.is_(False))
            if not db.is_sqlite:  # the schedule row only: an apply holds its deployment row
                check = check.with_for_update(read=True, of=ds)
            if conn.execute(check).first() is None:
                continue
            try:
                dep = _deployment(conn, dep_id)
            except ObjectNotFound:
                continue  # deleted meanwhile
            for when in times:
                _, new = _new_run(conn, dep, parameters=parameters or None, scheduled_time=when,
                                  name=None, tags=None, idempotency_key=scheduled_key(when),
                                  job_variables=None, auto_scheduled=True,
                                  state_name="Scheduled")
                made += new
    return made


def backfill_runs(db: Database, deployment_id: str, start: dt.datetime, end: dt.datetime,
                  max_runs: int = 10_000) -> tuple[int, int]:
    """The runs the deployment's schedules would have made in [start, end], each once: runs
    that exist for a time are kept. Returns (made, already there)."""
    # lazy: croniter and dateutil load only where schedules are handled
    from ..schedules import schedule_from_dict

    made = existing = 0
    with db.write() as conn:
        dep = _deployment(conn, deployment_id)
        if not dep["schedules"]:
            raise ObjectNotFound(f"Deployment {dep['flow_name']}/{dep['name']} has no schedule "
                                 "to backfill from; add one with `legato deployment "
                                 "set-schedule`.")
        by_time: dict[dt.datetime, dict[str, Any]] = {}
        for s in dep["schedules"]:
            for t in schedule_from_dict(s["schedule"]).get_dates(n=max_runs, start=start,
                                                                 end=end):
                by_time.setdefault(t, s)
        for when in sorted(by_time):
            _, new = _new_run(conn, dep, parameters=by_time[when]["parameters"] or None,
                              scheduled_time=when, name=None, tags=None,
                              idempotency_key=scheduled_key(when), job_variables=None,
                              auto_scheduled=True, state_name="Scheduled")
            made += new
            existing += not new
    return made, existing


def mark_late_runs(db: Database, *, grace: dt.timedelta = dt.timedelta(seconds=15),
                   now: dt.datetime | None = None) -> int:
    """Scheduled runs of deployments not started within ``grace`` of their time become Late
    (still Scheduled: a worker may start them)."""
    now = now or _now()
    fr = models.flow_run
    with db.read() as conn:
        ids = conn.execute(sa.select(fr.c.id).where(
            fr.c.state_type == "SCHEDULED", fr.c.state_name == "Scheduled",
            fr.c.deployment_id.is_not(None), fr.c.expected_start_time < now - grace)
        ).scalars().all()
    for run_id in ids:
        with db.write() as conn:
            transition_in_conn(conn, db, "flow_run", run_id, State(StateType.SCHEDULED, "Late"),
                               guard=lambda row: None if row["state_name"] == "Scheduled"
                               else _refuse())
    return len(ids)


def detect_crashed_runs(db: Database, *, heartbeat_timeout: float,
                        now: dt.datetime | None = None) -> list[str]:
    """Running runs whose heartbeats stopped ``heartbeat_timeout`` seconds ago: their process
    died. Each becomes Crashed, and its task runs with it (freeing their concurrency slots);
    one whose flow has retries left is scheduled again at once (AwaitingRetry)."""
    now = now or _now()
    fr = models.flow_run
    cutoff = now - dt.timedelta(seconds=heartbeat_timeout)
    with db.read() as conn:
        ids = conn.execute(sa.select(fr.c.id).where(
            fr.c.state_type.in_(("RUNNING", "CANCELLING")), fr.c.heartbeat.is_not(None),
            fr.c.heartbeat < cutoff)).scalars().all()
    crashed = []
    for run_id in ids:
        with db.write() as conn:
            decision, run = transition_in_conn(
                conn, db, "flow_run", run_id,
                State(StateType.CRASHED, message=f"No heartbeat for {heartbeat_timeout:g} s: the "
                      "flow run's process died (killed, out of memory, or its machine is gone)."),
                guard=lambda row: None if row["heartbeat"] is not None
                and row["heartbeat"] < cutoff else _refuse())
            if decision.verdict is not Verdict.ACCEPT:
                continue
            crashed.append(run_id)
            _after_end(conn, db, run, now)
    return crashed


def _after_end(conn: sa.Connection, db: Database, run: Any, now: dt.datetime) -> None:
    """A deployment's run just ended Crashed (or Cancelled): end its task runs with it, and
    retry a crash when the deployment has retries left (AwaitingRetry, claimable at once)."""
    row = run.row
    ended = StateType(row["state_type"])
    end_task_runs(conn, db, row["id"], ended, f"Its flow run ended {ended.value.title()}.")
    retries = (row.get("empirical_policy") or {}).get("retries") or 0
    if (ended is StateType.CRASHED and row.get("deployment_id") and retries > 0
            and row["run_count"] <= retries):
        transition_in_conn(
            conn, db, "flow_run", row["id"], State(StateType.SCHEDULED, "AwaitingRetry",
                                                   "Retrying after a crash."),
            new_attempt=True, also={"heartbeat": None, "claimed_by": None,
                                    "lease_expires": None, "expected_start_time": now})


def end_task_runs(conn: sa.Connection, db: Database, flow_run_id: str, type_: StateType,
                  message: str) -> None:
    """Move a flow run's unfinished task runs to ``type_`` (each leaving Running gives its
    concurrency slots back)."""
    tr = models.task_run
    ids = conn.execute(sa.select(tr.c.id).where(
        tr.c.flow_run_id == flow_run_id,
        tr.c.state_type.not_in([t.value for t in TERMINAL_TYPES]))).scalars().all()
    for task_run_id in ids:
        transition_in_conn(conn, db, "task_run", task_run_id, State(type_, message=message),
                           force=True)


def cancel_flow_run(db: Database, run_id: str) -> dict[str, Any]:
    """Cancel a flow run and its subflow runs: one that has not started is Cancelled at once
    (and will never start: its claim token is spent); a running one becomes Cancelling, and
    its worker stops its process and confirms Cancelled."""
    fr, tr = models.flow_run, models.task_run
    with db.write() as conn:
        row = conn.execute(sa.select(fr).where(fr.c.id == run_id)).mappings().first()
        if row is None:
            raise ObjectNotFound(f"No flow run with id {run_id} in the history.")
        if row["state_type"] in {t.value for t in TERMINAL_TYPES}:
            return {"status": "REJECT", "reason": f"flow run {run_id} has already finished "
                    f"({row['state_name']})", "run": dict(row)}
        pending = [run_id]
        while pending:
            current = pending.pop()
            _cancel_one(conn, db, current)
            children = sa.select(tr.c.id).where(tr.c.flow_run_id == current)
            pending.extend(conn.execute(sa.select(fr.c.id).where(
                fr.c.parent_task_run_id.in_(children),
                fr.c.state_type.not_in([t.value for t in TERMINAL_TYPES]))).scalars().all())
        return {"status": "ACCEPT", "reason": None,
                "run": dict(conn.execute(sa.select(fr).where(fr.c.id == run_id))
                            .mappings().one())}


def _cancel_one(conn: sa.Connection, db: Database, run_id: str) -> None:
    fr = models.flow_run
    row = conn.execute(sa.select(fr).where(fr.c.id == run_id)).mappings().one()
    started = row["state_type"] in ("RUNNING", "CANCELLING", "PAUSED") or (
        row["state_type"] == "PENDING" and row["infrastructure_pid"] is not None)
    if started and row["deployment_id"] is not None:
        transition_in_conn(conn, db, "flow_run", run_id, State(StateType.CANCELLING),
                           force=True)
    else:
        token = (row["claim_token"] or 0) + 1  # a claim made before now can no longer start it
        transition_in_conn(conn, db, "flow_run", run_id, State(StateType.CANCELLED),
                           force=True, also={"claim_token": token, "lease_expires": None})
        end_task_runs(conn, db, run_id, StateType.CANCELLED, "Its flow run was cancelled.")


def finish_cancellation(db: Database, run_id: str) -> None:
    """The worker stopped a Cancelling run's process: Cancelled, with its task runs."""
    with db.write() as conn:
        decision, _ = transition_in_conn(
            conn, db, "flow_run", run_id, State(StateType.CANCELLED),
            guard=lambda row: None if row["state_type"] == "CANCELLING" else _refuse())
        if decision.verdict is Verdict.ACCEPT:
            end_task_runs(conn, db, run_id, StateType.CANCELLED, "Its flow run was cancelled.")


def end_deployed_flow_run(db: Database, run_id: str, type_: StateType, message: str,
                          claim_token: int | None = None) -> dict[str, Any]:
    """A worker's verdict on a run whose process is gone (Crashed) or never started (Failed):
    recorded only while the run is still that worker's (same claim token) and not finished or
    rescheduled meanwhile; a crash is retried as the deployment asks."""

    def guard(row: dict[str, Any]) -> Decision | None:
        if row["state_type"] not in ("PENDING", "RUNNING", "CANCELLING"):
            return _refuse()
        return _token_guard(row, claim_token) if claim_token is not None else None

    with db.write() as conn:
        decision, run = transition_in_conn(conn, db, "flow_run", run_id,
                                           State(type_, message=message), guard=guard)
        if decision.verdict is Verdict.ACCEPT:
            _after_end(conn, db, run, _now())
    return {"status": decision.verdict.value, "reason": decision.reason, "run": run.row}


def retry_flow_run(db: Database, run_id: str) -> dict[str, Any]:
    """Run a finished deployment's flow run again: a new attempt, AwaitingRetry, claimable at
    once by its queue's agents. A run without a deployment has no code the server can start."""
    fr = models.flow_run
    with db.write() as conn:
        row = conn.execute(sa.select(fr.c.state_type, fr.c.state_name, fr.c.deployment_id)
                           .where(fr.c.id == run_id)).mappings().first()
        if row is None:
            raise ObjectNotFound(f"No flow run with id {run_id} in the history.")
        if not row["deployment_id"]:
            raise ConflictError(
                f"Flow run {run_id} was not started from a deployment, so the server has no "
                "code to run again: run the script again instead.")
        if row["state_type"] not in {t.value for t in TERMINAL_TYPES}:
            raise ConflictError(
                f"Flow run {run_id} is {row['state_name']}: only a finished run can be retried.")
        decision, run = transition_in_conn(
            conn, db, "flow_run", run_id,
            State(StateType.SCHEDULED, "AwaitingRetry", "Retried by hand."), new_attempt=True,
            also={"heartbeat": None, "claimed_by": None, "lease_expires": None,
                  "expected_start_time": _now()})
    return {"status": decision.verdict.value, "reason": decision.reason, "run": run.row}


def _refuse() -> Decision:
    """A refusal that needs no reason: the run changed meanwhile, the caller skips it."""
    return Decision(Verdict.REJECT, "no longer applies")


class Deployments:
    """Every deployment use case behind one object (the embedded client's and the server's):
    :class:`~legato.core.deployments.DeploymentCore` and the run control above."""

    def __init__(self, db: Database, *, slot_wait: float = 0.5) -> None:
        self.db = db
        self.core = DeploymentCore(db, slot_wait=slot_wait)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)

    def cancel_flow_run(self, run_id: str) -> dict[str, Any]:
        return cancel_flow_run(self.db, run_id)

    def retry_flow_run(self, run_id: str) -> dict[str, Any]:
        return retry_flow_run(self.db, run_id)

    def finish_cancellation(self, run_id: str) -> None:
        finish_cancellation(self.db, run_id)

    def end_deployed_flow_run(self, run_id: str, state_type: str, message: str,
                              claim_token: int | None = None) -> dict[str, Any]:
        return end_deployed_flow_run(self.db, run_id, StateType(state_type), message,
                                     claim_token)

    def backfill(self, deployment_id: str, start: dt.datetime, end: dt.datetime
                 ) -> dict[str, int]:
        made, existing = backfill_runs(self.db, deployment_id, start, end)
        return {"made": made, "existing": existing}

    def schedule_runs(self, deployment_id: str | None = None) -> int:
        return schedule_runs(self.db, deployment_id=deployment_id)
