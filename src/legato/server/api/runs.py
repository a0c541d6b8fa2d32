"""Flow runs and task runs: one set of routes, made twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ...core.rules import Verdict
from ...core.server_core import make_state
from ...exceptions import ObjectNotFound
from ...schemas import FlowRun, FlowRunFilter, StateRecord, TaskRun, TaskRunFilter
from ...schemas.api import (
    Count_,
    ErrorBody,
    FlowRunCreate,
    SetState,
    SetStateResult,
    TaskRunCreate,
)
from ...states import StateType
from ...store import queries
from .deps import CONFLICT, DB, NOT_FOUND, Core, RunId, RunIdOrPrefix


def _set_state(core: Any, db: Any, kind: str, run_id: str, body: SetState) -> Any:
    s = body.state
    state = make_state(s.type, s.name, s.message, s.timestamp, s.details)
    decision, _run = core.set_state(kind, run_id.lower(), state, new_attempt=body.new_attempt,
                                    force=body.force, result=body.result)
    # the run's stored fields as the decision left them (no second query)
    run = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in _run.row.items()}
    result = SetStateResult(
        status=decision.verdict.value, reason=decision.reason, retry_after=decision.retry_after,
        state_id=state.id if decision.verdict is Verdict.ACCEPT else None, run=run)
    if decision.verdict is Verdict.REJECT:
        # refused: a 409 whose detail says why (the run is unchanged)
        return JSONResponse(status_code=409, content={"detail": decision.reason,
                                                      **result.model_dump(mode="json")})
    headers = {}
    if decision.verdict is Verdict.WAIT and decision.retry_after is not None:
        headers["Retry-After"] = f"{decision.retry_after:g}"
    return JSONResponse(status_code=200, content=result.model_dump(mode="json"), headers=headers)


_SET_STATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SetStateResult, "description": "ACCEPT, NOOP (already in that state) or "
                                                  "WAIT (ask again after retry_after seconds)."},
    409: {"model": ErrorBody, "description": "REJECT: the rules refuse the transition; `detail` "
                                             "says why (with the fields of a SetStateResult)."},
    **NOT_FOUND,
}
_CREATE_RESPONSES = {**NOT_FOUND, **CONFLICT}

flow_runs = APIRouter(prefix="/flow_runs", tags=["Flow runs"])


@flow_runs.post("/", response_model=FlowRun, status_code=201, responses=_CREATE_RESPONSES,
                summary="Create a flow run.")
def create_flow_run(body: FlowRunCreate, core: Core, db: DB) -> FlowRun:
    if body.flow_id is None and body.flow_name is None:
        raise ValueError("Give the flow run's flow: flow_name or flow_id.")
    s = body.state
    state = (make_state(s.type, s.name, s.message, s.timestamp, s.details) if s
             else make_state(StateType.PENDING, None, None, None, None))
    from ...engine.common import generate_run_name  # lazy: the engine is not the server's

    run_id = core.create_flow_run(
        flow_id=body.flow_id, flow_name=body.flow_name, name=body.name or generate_run_name(),
        state=state, run_id=body.id,
        parameters=body.parameters, tags=body.tags, parent_task_run_id=body.parent_task_run_id,
        version=body.version)
    return queries.read_flow_run(db, run_id)


@flow_runs.get("/{run_id}", response_model=FlowRun, responses=NOT_FOUND)
def read_flow_run(run_id: RunIdOrPrefix, db: DB) -> FlowRun:
    return queries.read_flow_run(db, run_id)


@flow_runs.post("/filter", response_model=list[FlowRun],
                summary="List flow runs: filter by flow, name, state, tags, time, parent; sort; page.")
def filter_flow_runs(db: DB, body: FlowRunFilter | None = None) -> list[FlowRun]:
    return queries.read_flow_runs(db, body or FlowRunFilter())


@flow_runs.post("/count", response_model=Count_)
def count_flow_runs(db: DB, body: FlowRunFilter | None = None) -> Count_:
    return Count_(count=queries.count_flow_runs(db, body or FlowRunFilter()))


@flow_runs.post("/{run_id}/set_state", responses=_SET_STATE_RESPONSES,
                response_model=SetStateResult,
                summary="Propose a state; the orchestration rules accept, refuse or say wait.")
def set_flow_run_state(run_id: RunId, body: SetState, core: Core, db: DB) -> Any:
    return _set_state(core, db, "flow_run", run_id, body)


@flow_runs.get("/{run_id}/states", response_model=list[StateRecord], responses=NOT_FOUND)
def read_flow_run_states(run_id: RunIdOrPrefix, db: DB) -> list[StateRecord]:
    return queries.read_states(db, "flow_run", run_id)


@flow_runs.delete("/{run_id}", status_code=204, responses=NOT_FOUND,
                  summary="Delete a flow run, its task runs, states, logs and subflow runs.")
def delete_flow_run(run_id: RunId, core: Core) -> Response:
    core.delete_flow_run(run_id.lower())
    return Response(status_code=204)


task_runs = APIRouter(prefix="/task_runs", tags=["Task runs"])


@task_runs.post("/", response_model=TaskRun, status_code=201, responses=_CREATE_RESPONSES,
                summary="Create a task run.")
def create_task_run(body: TaskRunCreate, core: Core, db: DB) -> TaskRun:
    s = body.state
    state = (make_state(s.type, s.name, s.message, s.timestamp, s.details) if s
             else make_state(StateType.PENDING, None, None, None, None))
    run_id = core.create_task_run(
        flow_run_id=body.flow_run_id, task_key=body.task_key, name=body.name,
        dynamic_key=body.dynamic_key, state=state, run_id=body.id, tags=body.tags,
        task_inputs=body.task_inputs)
    return queries.read_task_run(db, run_id)


@task_runs.get("/{run_id}", response_model=TaskRun, responses=NOT_FOUND)
def read_task_run(run_id: RunIdOrPrefix, db: DB) -> TaskRun:
    return queries.read_task_run(db, run_id)


@task_runs.post("/filter", response_model=list[TaskRun], responses=NOT_FOUND,
                summary="List task runs: filter by flow run, name, state, tags, time; sort; page.")
def filter_task_runs(db: DB, body: TaskRunFilter | None = None) -> list[TaskRun]:
    flt = body or TaskRunFilter()
    if flt.flow_run_id is not None and len(flt.flow_run_id) < 4:
        raise ObjectNotFound("flow_run_id is too short; give at least 4 characters of it.")
    return queries.read_task_runs(db, flt)


@task_runs.post("/count", response_model=Count_, responses=NOT_FOUND)
def count_task_runs(db: DB, body: TaskRunFilter | None = None) -> Count_:
    return Count_(count=queries.count_task_runs(db, body or TaskRunFilter()))


@task_runs.post("/{run_id}/set_state", responses=_SET_STATE_RESPONSES,
                response_model=SetStateResult,
                summary="Propose a state; the rules accept, refuse, or say wait (a full tag "
                        "concurrency limit).")
def set_task_run_state(run_id: RunId, body: SetState, core: Core, db: DB) -> Any:
    return _set_state(core, db, "task_run", run_id, body)


@task_runs.get("/{run_id}/states", response_model=list[StateRecord], responses=NOT_FOUND)
def read_task_run_states(run_id: RunIdOrPrefix, db: DB) -> list[StateRecord]:
    return queries.read_states(db, "task_run", run_id)


@task_runs.delete("/{run_id}", status_code=204, responses=NOT_FOUND,
                  summary="Delete a task run with its states.")
def delete_task_run(run_id: RunId, core: Core) -> Response:
    core.delete_task_run(run_id.lower())
    return Response(status_code=204)
