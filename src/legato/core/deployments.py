"""Deployments, work pools and queues, and the runs they make, in the store: the use cases the
embedded client and the server's routes share.

- A deployment is a flow (by name) plus how to run it: parameters, code location (entrypoint,
  path, storage block), infrastructure, queue, schedules. ``apply`` upserts it by
  ``flow name/deployment name``.
- A deployment's run is created Scheduled on a work queue. One run per (deployment, scheduled
  time): the scheduler's runs carry an idempotency key that a unique index holds, so two
  schedulers (or a redeploy) never make a time twice.
- A worker *claims* due runs: in one transaction the runs move to Pending with a lease and a
  fresh fencing token (``claim_token``). Only the holder of the current token may start a run
  (Pending -> Running); a claim whose lease ran out before the run started is claimable again,
  with a new token, so a worker that died after claiming gives the run back and its stale token
  can never start the code a second time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..exceptions import ConflictError, ObjectNotFound, ParameterTypeError
from ..ids import generate_run_name, new_id
from ..states import TERMINAL_TYPES, State, StateType
from ..store import models
from ..store.cleaning import _clean_json
from ..store.database import Database
from .orchestrator import _insert_for, transition_in_conn
from .rules import Decision, Verdict
from .server_core import _ensure_flow as _ensure_flow_row
from .work_queues import (
    DEFAULT_AGENT_POOL,
    _ensure_queue,
    _insert_queue,
    _pool,
    _pool_or_default,
    _queue,
    _queue_row,
    _room,
    _touch_worker,
)

_UTC = dt.timezone.utc
_DEPLOYMENT_FIELDS = (
    "description", "version", "tags", "parameters", "parameter_openapi_schema",
    "enforce_parameter_schema", "entrypoint", "path", "storage_document_id",
    "infrastructure_document_id", "job_variables", "pull_steps", "work_pool_name", "paused",
    "retries",
)

_JSON_FIELDS = ("parameters", "job_variables", "parameter_openapi_schema", "pull_steps")


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC)


def _ensure_flow(conn: sa.Connection, name: str) -> str:
    return _ensure_flow_row(conn, name)["id"]


class DeploymentCore:
    def __init__(self, db: Database, *, slot_wait: float = 0.5) -> None:
        self.db = db
        self.slot_wait = slot_wait

    # -- work pools ------------------------------------------------------------------------------
    def create_work_pool(self, name: str, type: str = "process", *, description: str | None = None,
                         base_job_template: dict[str, Any] | None = None,
                         concurrency_limit: int | None = None, paused: bool = False
                         ) -> dict[str, Any]:
        wp = models.work_pool
        now = _now()
        with self.db.write() as conn:
            if conn.execute(sa.select(wp.c.id).where(wp.c.name == name)).first() is not None:
                raise ConflictError(f"A work pool named {name!r} already exists.")
            conn.execute(wp.insert().values(
                id=new_id(), name=name, type=type, description=description,
                base_job_template=_clean_json(base_job_template or {}), is_paused=paused,
                concurrency_limit=concurrency_limit, created=now, updated=now))
            return _pool(conn, name)

    def read_work_pool(self, name: str) -> dict[str, Any]:
        with self.db.read() as conn:
            return _pool(conn, name)

    def read_work_pools(self) -> list[dict[str, Any]]:
        wp = models.work_pool
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(sa.select(wp).order_by(wp.c.name)).mappings()]

    def update_work_pool(self, name: str, **fields: Any) -> dict[str, Any]:
        wp = models.work_pool
        allowed = {"description", "base_job_template", "is_paused", "concurrency_limit"}
        values = {k: _clean_json(v) if k == "base_job_template" else v
                  for k, v in fields.items() if k in allowed}
        with self.db.write() as conn:
            pool = _pool(conn, name)
            conn.execute(wp.update().where(wp.c.id == pool["id"]).values(updated=_now(), **values))
            return _pool(conn, name)

    def delete_work_pool(self, name: str) -> None:
        wp = models.work_pool
        with self.db.write() as conn:
            pool = _pool(conn, name)
            conn.execute(wp.delete().where(wp.c.id == pool["id"]))

    # -- work queues -----------------------------------------------------------------------------
    def create_work_queue(self, name: str, pool_name: str | None = None, *, priority: int = 1,
                          concurrency_limit: int | None = None, description: str | None = None,
                          paused: bool = False) -> dict[str, Any]:
        with self.db.write() as conn:
            pool = _pool_or_default(conn, pool_name)
            if _queue_row(conn, pool["id"], name) is not None:
                raise ConflictError(
                    f"A work queue named {name!r} already exists in pool {pool['name']!r}.")
            return _insert_queue(conn, pool, name, priority=priority,
                                 concurrency_limit=concurrency_limit, description=description,
                                 paused=paused)

    def read_work_queue(self, name: str, pool_name: str | None = None) -> dict[str, Any]:
        with self.db.read() as conn:
            return _queue(conn, name, pool_name)

    def read_work_queues(self, pool_name: str | None = None) -> list[dict[str, Any]]:
        wq, wp = models.work_queue, models.work_pool
        q = (sa.select(wq, wp.c.name.label("work_pool_name"))
             .join(wp, wp.c.id == wq.c.work_pool_id).order_by(wp.c.name, wq.c.priority, wq.c.name))
        if pool_name is not None:
            q = q.where(wp.c.name == pool_name)
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def update_work_queue(self, name: str, pool_name: str | None = None, **fields: Any
                          ) -> dict[str, Any]:
        wq = models.work_queue
        allowed = {"description", "priority", "is_paused", "concurrency_limit"}
        values = {k: v for k, v in fields.items() if k in allowed}
        with self.db.write() as conn:
            queue = _queue(conn, name, pool_name)
            conn.execute(wq.update().where(wq.c.id == queue["id"]).values(updated=_now(), **values))
            return _queue(conn, name, pool_name)

    def delete_work_queue(self, name: str, pool_name: str | None = None) -> None:
        wq = models.work_queue
        with self.db.write() as conn:
            queue = _queue(conn, name, pool_name)
            conn.execute(wq.delete().where(wq.c.id == queue["id"]))

    # -- deployments -----------------------------------------------------------------------------
    def apply_deployment(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create or update the deployment ``spec["flow_name"]/spec["name"]`` with its schedules
        (which replace the old ones: runs the old schedules made and no worker has claimed are
        deleted, and the scheduler makes the new ones)."""
        d, ds = models.deployment, models.deployment_schedule
        now = _now()
        schedules = [_schedule_row(s) for s in spec.get("schedules") or []]
        with self.db.write() as conn:
            flow_id = _ensure_flow(conn, spec["flow_name"])
            for key in ("storage_document_id", "infrastructure_document_id"):
                _check_block(conn, spec.get(key), key)
            pool_name = spec.get("work_pool_name")
            queue = _ensure_queue(conn, spec.get("work_queue_name") or "default", pool_name)
            values = {k: _clean_json(spec[k]) if k in _JSON_FIELDS else spec[k]
                      for k in _DEPLOYMENT_FIELDS if k in spec}
            values.update(work_queue_id=queue["id"], work_queue_name=queue["name"],
                          work_pool_name=queue["work_pool_name"], updated=now)
            existing = conn.execute(sa.select(d.c.id).where(
                d.c.flow_id == flow_id, d.c.name == spec["name"])).first()
            if existing is None:
                dep_id = new_id()
                defaults = {"tags": [], "parameters": {}, "job_variables": {},
                            "enforce_parameter_schema": True, "paused": False}
                conn.execute(d.insert().values(
                    id=dep_id, flow_id=flow_id, name=spec["name"], created=now,
                    **{**defaults, **values}))
            else:
                dep_id = existing[0]
                conn.execute(d.update().where(d.c.id == dep_id).values(**values))
                conn.execute(ds.delete().where(ds.c.deployment_id == dep_id))
                _delete_unclaimed_auto_runs(conn, dep_id)
            for row in schedules:
                conn.execute(ds.insert().values(id=new_id(), deployment_id=dep_id, created=now,
                                                updated=now, **row))
            return _deployment(conn, dep_id)

    def read_deployment(self, deployment_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            return _deployment(conn, deployment_id)

    def read_deployment_by_name(self, address: str) -> dict[str, Any]:
        flow_name, sep, name = address.partition("/")
        if not sep or not flow_name or not name:
            raise ObjectNotFound(
                f"{address!r} is not a deployment's name: write it as 'FLOW NAME/DEPLOYMENT NAME'"
                " (`legato deployment ls` lists them).")
        d, f = models.deployment, models.flow
        with self.db.read() as conn:
            row = conn.execute(sa.select(d.c.id).join(f, f.c.id == d.c.flow_id).where(
                f.c.name == flow_name, d.c.name == name)).first()
            if row is None:
                known = conn.execute(sa.select(f.c.name, d.c.name).join(
                    f, f.c.id == d.c.flow_id).order_by(f.c.name, d.c.name).limit(20)).all()
                listed = ", ".join(f"{a}/{b}" for a, b in known) or "none yet"
                raise ObjectNotFound(f"No deployment {address!r}. Deployments: {listed}.")
            return _deployment(conn, row[0])

    def read_deployments(self, flow_name: str | None = None, limit: int = 200, offset: int = 0
                         ) -> list[dict[str, Any]]:
        d, f = models.deployment, models.flow
        q = (sa.select(d.c.id).join(f, f.c.id == d.c.flow_id).order_by(f.c.name, d.c.name)
             .limit(limit).offset(offset))
        if flow_name is not None:
            q = q.where(f.c.name == flow_name)
        with self.db.read() as conn:
            return [_deployment(conn, i) for i in conn.execute(q).scalars().all()]

    def delete_deployment(self, deployment_id: str) -> None:
        d = models.deployment
        with self.db.write() as conn:
            _deployment(conn, deployment_id)
            _delete_unclaimed_auto_runs(conn, deployment_id, only_auto=False)
            conn.execute(d.delete().where(d.c.id == deployment_id))

    def set_schedules_active(self, deployment_id: str, active: bool,
                             schedule_id: str | None = None) -> dict[str, Any]:
        """Pause (``active=False``) or resume a deployment's schedules (one, or all); pausing
        deletes the runs they made that no worker has claimed."""
        ds = models.deployment_schedule
        with self.db.write() as conn:
            _deployment(conn, deployment_id)
            q = ds.update().where(ds.c.deployment_id == deployment_id)
            if schedule_id is not None:
                q = q.where(ds.c.id == schedule_id)
            conn.execute(q.values(active=active, updated=_now()))
            if not active:
                _delete_unclaimed_auto_runs(conn, deployment_id)
            return _deployment(conn, deployment_id)

    def replace_schedules(self, deployment_id: str, schedules: list[dict[str, Any]]
                          ) -> dict[str, Any]:
        ds = models.deployment_schedule
        rows = [_schedule_row(s) for s in schedules]
        now = _now()
        with self.db.write() as conn:
            _deployment(conn, deployment_id)
            conn.execute(ds.delete().where(ds.c.deployment_id == deployment_id))
            _delete_unclaimed_auto_runs(conn, deployment_id)
            for row in rows:
                conn.execute(ds.insert().values(id=new_id(), deployment_id=deployment_id,
                                                created=now, updated=now, **row))
            return _deployment(conn, deployment_id)

    # -- runs of deployments ---------------------------------------------------------------------
    def create_flow_run_from_deployment(
        self, deployment_id: str, *, parameters: dict[str, Any] | None = None,
        scheduled_time: dt.datetime | None = None, name: str | None = None,
        tags: list[str] | None = None, idempotency_key: str | None = None,
        job_variables: dict[str, Any] | None = None, auto_scheduled: bool = False,
        state_name: str = "Scheduled",
    ) -> dict[str, Any]:
        """A Scheduled run of the deployment on its queue (the existing one for a repeated
        ``idempotency_key``). Parameters are the deployment's, overridden by ``parameters``, and
        checked against the flow's parameter schema before anything is written."""
        with self.db.write() as conn:
            dep = _deployment(conn, deployment_id)
            run, _ = _new_run(conn, dep, parameters=parameters, scheduled_time=scheduled_time,
                              name=name, tags=tags, idempotency_key=idempotency_key,
                              job_variables=job_variables, auto_scheduled=auto_scheduled,
                              state_name=state_name)
            return run

    # -- claims ----------------------------------------------------------------------------------
    def claim_flow_runs(self, worker_name: str, *, pool_name: str | None = None,
                        queue_names: list[str] | None = None, limit: int = 10,
                        lease_seconds: float = 30.0, now: dt.datetime | None = None
                        ) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due runs of these queues (all of the pool when none are named)
        for ``worker_name``: each moves to Pending with a lease and a new claim token, in one
        transaction, so two workers never claim one run. Queue and pool concurrency limits and
        pauses are honoured; higher-priority queues (lower numbers) go first."""
        now = now or _now()
        fr, wq = models.flow_run, models.work_queue
        claimed: list[dict[str, Any]] = []
        with self.db.write() as conn:
            pool = _pool_or_default(conn, pool_name, create=pool_name is None)
            if pool["is_paused"]:
                return []
            queues = conn.execute(sa.select(wq).where(wq.c.work_pool_id == pool["id"])
                                  .order_by(wq.c.priority, wq.c.name)).mappings().all()
            if queue_names:
                wanted = set(queue_names)
                queues = [q for q in queues if q["name"] in wanted]
                missing = wanted - {q["name"] for q in queues}
                for name in sorted(missing):  # an agent's queue is made when it first polls
                    queues.append(_insert_queue(conn, pool, name))
            _touch_worker(conn, pool["id"], worker_name, sorted(q["name"] for q in queues), now)
            conn.execute(wq.update().where(wq.c.id.in_([q["id"] for q in queues]))
                         .values(last_polled=now))
            pool_room = _room(conn, pool["concurrency_limit"],
                              fr.c.work_queue_id.in_([q["id"] for q in queues]))
            for queue in queues:
                if queue["is_paused"] or len(claimed) >= limit or pool_room <= 0:
                    continue
                room = min(limit - len(claimed), pool_room,
                           _room(conn, queue["concurrency_limit"],
                                 fr.c.work_queue_id == queue["id"]))
                if room <= 0:
                    continue
                due = sa.or_(
                    sa.and_(fr.c.state_type == "SCHEDULED", fr.c.expected_start_time <= now),
                    sa.and_(fr.c.state_type == "PENDING", fr.c.lease_expires < now,
                            fr.c.start_time.is_(None)),
                )
                q = (sa.select(fr.c.id).where(fr.c.work_queue_id == queue["id"], due)
                     .order_by(fr.c.expected_start_time).limit(room))
                if not self.db.is_sqlite:
                    q = q.with_for_update(skip_locked=True)
                for run_id in conn.execute(q).scalars().all():
                    row = self._claim(conn, run_id, worker_name, lease_seconds, now)
                    if row is not None:
                        claimed.append(row)
                        pool_room -= 1
        return claimed

    def _claim(self, conn: sa.Connection, run_id: str, worker: str, lease_seconds: float,
               now: dt.datetime) -> dict[str, Any] | None:
        fr = models.flow_run
        token = (conn.execute(sa.select(fr.c.claim_token).where(fr.c.id == run_id)).scalar()
                 or 0) + 1
        also = {"claim_token": token, "claimed_by": worker,
                "lease_expires": now + dt.timedelta(seconds=lease_seconds)}
        decision, run = transition_in_conn(
            conn, self.db, "flow_run", run_id, State(StateType.PENDING), force=True, also=also,
            slot_wait=self.slot_wait,
            guard=lambda row: None if _claimable(row, now) else Decision(Verdict.REJECT))
        return run.row if decision.verdict is Verdict.ACCEPT else None

    def release_claim(self, run_id: str, claim_token: int) -> dict[str, Any]:
        """A worker gives back a run it claimed and did not start: Scheduled again, now."""
        with self.db.write() as conn:
            decision, run = transition_in_conn(
                conn, self.db, "flow_run", run_id, State(StateType.SCHEDULED, "Scheduled"),
                force=True, also={"claimed_by": None, "lease_expires": None},
                guard=lambda row: _token_guard(row, claim_token) or (
                    None if row["state_type"] == "PENDING" else Decision(
                        Verdict.REJECT, f"flow run {run_id} is {row['state_name']}, not Pending")))
        return _answer(decision, run)

    def start_flow_run(self, run_id: str, claim_token: int | None) -> dict[str, Any]:
        """Pending -> Running for the holder of the current claim token (or of an unclaimed
        run): the fencing that keeps a run's code from starting twice."""
        with self.db.write() as conn:
            decision, run = transition_in_conn(
                conn, self.db, "flow_run", run_id, State(StateType.RUNNING),
                slot_wait=self.slot_wait, also={"lease_expires": None, "heartbeat": _now()},
                guard=lambda row: _token_guard(row, claim_token))
        return _answer(decision, run)

    def set_infrastructure_pid(self, run_id: str, claim_token: int | None, pid: str) -> None:
        fr = models.flow_run
        with self.db.write() as conn:
            if conn.execute(sa.select(fr.c.id).where(fr.c.id == run_id)).first() is None:
                raise ObjectNotFound(f"No flow run with id {run_id} in the history.")
            q = fr.update().where(fr.c.id == run_id)
            if claim_token is not None:
                q = q.where(fr.c.claim_token == claim_token)
            conn.execute(q.values(infrastructure_pid=pid))

    def heartbeat(self, run_id: str) -> str | None:
        """A running flow's sign of life; answers the run's state type (Cancelling: stop)."""
        fr = models.flow_run
        with self.db.write() as conn:
            # a Cancelling run's process is alive until its worker stops it: a stale heartbeat
            # would have crash detection end it first, and nobody would stop the process
            conn.execute(fr.update().where(fr.c.id == run_id,
                                           fr.c.state_type.in_(("RUNNING", "CANCELLING")))
                         .values(heartbeat=_now()))
            state = conn.execute(sa.select(fr.c.state_type).where(fr.c.id == run_id)).first()
            if state is None:
                raise ObjectNotFound(f"No flow run with id {run_id} in the history.")
            return state[0]


# -- helpers -----------------------------------------------------------------------------------------
def _answer(decision: Decision, run: Any) -> dict[str, Any]:
    return {"status": decision.verdict.value, "reason": decision.reason, "run": run.row}


def _claimable(row: dict[str, Any], now: dt.datetime) -> bool:
    if row["state_type"] == "SCHEDULED":
        return True
    return (row["state_type"] == "PENDING" and row["start_time"] is None
            and row["lease_expires"] is not None and row["lease_expires"] < now)


def _token_guard(row: dict[str, Any], claim_token: int | None) -> Decision | None:
    if row["claim_token"] is not None and claim_token != row["claim_token"]:
        return Decision(Verdict.REJECT,
                        f"this worker's claim on flow run {row['id']} is stale (claim token "
                        f"{claim_token}, current {row['claim_token']}): another worker holds it")
    return None


def _check_block(conn: sa.Connection, doc_id: str | None, field: str) -> None:
    if doc_id is None:
        return
    bd = models.block_document
    if conn.execute(sa.select(bd.c.id).where(bd.c.id == doc_id)).first() is None:
        raise ObjectNotFound(f"The block given as {field} (id {doc_id}) does not exist; save it "
                             "first.")


def _schedule_row(spec: dict[str, Any]) -> dict[str, Any]:
    # lazy: croniter and dateutil load only where schedules are handled
    from ..schedules import schedule_from_dict

    body = spec.get("schedule", spec)
    schedule = schedule_from_dict(body)  # raises on a bad schedule, before anything is written
    return {"schedule": schedule.model_dump(mode="json"), "active": spec.get("active", True),
            "parameters": _clean_json(spec.get("parameters") or {}),
            "max_scheduled_runs": spec.get("max_scheduled_runs")}


def _deployment(conn: sa.Connection, deployment_id: str) -> dict[str, Any]:
    d, f, ds = models.deployment, models.flow, models.deployment_schedule
    row = conn.execute(sa.select(d, f.c.name.label("flow_name")).join(f, f.c.id == d.c.flow_id)
                       .where(d.c.id == deployment_id)).mappings().first()
    if row is None:
        raise ObjectNotFound(f"No deployment with id {deployment_id}.")
    out = dict(row)
    out["schedules"] = [dict(r) for r in conn.execute(
        sa.select(ds).where(ds.c.deployment_id == deployment_id).order_by(ds.c.created, ds.c.id)
    ).mappings()]
    return out


def _delete_unclaimed_auto_runs(conn: sa.Connection, deployment_id: str,
                                only_auto: bool = True) -> None:
    """Runs of the deployment still Scheduled (no worker holds them): the scheduler's runs
    still to come (a due or late one stays: it will run), or, ``only_auto=False``, all."""
    fr, frs = models.flow_run, models.flow_run_state
    where = [fr.c.deployment_id == deployment_id, fr.c.state_type == "SCHEDULED"]
    if only_auto:
        where += [fr.c.auto_scheduled.is_(True), fr.c.expected_start_time > _now()]
    ids = conn.execute(sa.select(fr.c.id).where(*where)).scalars().all()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        conn.execute(frs.delete().where(frs.c.flow_run_id.in_(chunk)))
        conn.execute(fr.delete().where(fr.c.id.in_(chunk)))


def _new_run(conn: sa.Connection, dep: dict[str, Any], *, parameters: dict[str, Any] | None,
             scheduled_time: dt.datetime | None, name: str | None, tags: list[str] | None,
             idempotency_key: str | None, job_variables: dict[str, Any] | None,
             auto_scheduled: bool, state_name: str) -> tuple[dict[str, Any], bool]:
    """(the run, whether it is new)."""
    fr, frs = models.flow_run, models.flow_run_state
    if idempotency_key is not None:
        found = conn.execute(sa.select(fr).where(
            fr.c.deployment_id == dep["id"], fr.c.idempotency_key == idempotency_key)
        ).mappings().first()
        if found is not None:
            return dict(found), False
    params = {**(dep["parameters"] or {}), **(parameters or {})}
    schema = dep.get("parameter_openapi_schema")
    if schema and dep.get("enforce_parameter_schema", True):
        # lazy: jsonschema loads only where runs of deployments are made
        from ..schemas.parameters import validate_parameters

        try:
            validate_parameters(schema, params)
        except ParameterTypeError as exc:
            raise ParameterTypeError(
                f"Deployment {dep['flow_name']}/{dep['name']}: {exc}") from None
    now = _now()
    when = scheduled_time or now
    run_id = new_id()
    state = State(StateType.SCHEDULED, state_name, None, when, None,
                   {"scheduled_time": when.isoformat()})
    row = {
        "id": run_id, "flow_id": dep["flow_id"], "name": name or generate_run_name(),
        "parameters": _clean_json(params), "tags": sorted(set(dep["tags"] or []) | set(tags or [])),
        "parent_task_run_id": None, "run_count": 0, "expected_start_time": when,
        "total_run_time": 0.0, "version": dep.get("version"),
        "empirical_policy": {"retries": dep["retries"]} if dep.get("retries") else {},
        "created": now, "updated": now, "deployment_id": dep["id"],
        "work_queue_id": dep["work_queue_id"], "work_queue_name": dep["work_queue_name"],
        "auto_scheduled": auto_scheduled, "idempotency_key": idempotency_key,
        "job_variables": _clean_json({**(dep.get("job_variables") or {}),
                                      **(job_variables or {})}),
        "state_type": state.type.value, "state_name": state.name,
        "state_timestamp": when,
    }
    ins = _insert_for(conn.dialect.name)(fr).values(**row)
    if idempotency_key is not None:
        ins = ins.on_conflict_do_nothing(index_elements=["deployment_id", "idempotency_key"])
    # RETURNING, not rowcount: PostgreSQL's driver reports -1 for ON CONFLICT DO NOTHING
    if conn.execute(ins.returning(fr.c.id)).first() is None:  # another scheduler made it
        found = conn.execute(sa.select(fr).where(
            fr.c.deployment_id == dep["id"], fr.c.idempotency_key == idempotency_key)
        ).mappings().one()
        return dict(found), False
    conn.execute(frs.insert().values(
        id=new_id(), flow_run_id=run_id, type=state.type.value, name=state.name, message=None,
        timestamp=when, result=None, details=state.details or {}))
    return dict(conn.execute(sa.select(fr).where(fr.c.id == run_id)).mappings().one()), True


__all__ = ["DEFAULT_AGENT_POOL", "TERMINAL_TYPES", "DeploymentCore"]
