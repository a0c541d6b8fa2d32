"""Deployments, work pools and queues, and the calls workers make: ``/api/deployments``,
``/api/work_pools``, ``/api/work_queues``, and a flow run's start, release, heartbeat and cancel.

``POST /api/work_pools/claim`` is a long poll: with ``wait_seconds`` it answers as soon as a run
is due (a run made by this server wakes it at once; others are found by a check every second),
so an idle worker costs the server about one cheap query a second, not a stream of requests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AfterValidator

from ...core.run_control import Deployments
from ...schemas.api import storable_text
from ...schemas.deployments import (
    Backfill,
    Claim,
    ClaimToken,
    DeploymentApply,
    DeploymentFilter,
    EndFlowRun,
    FlowRunFromDeployment,
    InfrastructurePid,
    ScheduleActive,
    ScheduleSpec,
    WorkPoolCreate,
    WorkPoolUpdate,
    WorkQueueCreate,
    WorkQueueFilter,
    WorkQueueUpdate,
    unset,
)
from .deps import CONFLICT, NOT_FOUND, UUID_PATTERN, RunId

router = APIRouter(tags=["Deployments"])


def _storable_or_none(value: str | None) -> str | None:
    return None if value is None else storable_text(value)


DepId = Annotated[str, Path(pattern=UUID_PATTERN, description="The deployment's id.")]
PoolName = Annotated[str, Path(min_length=1, max_length=255), AfterValidator(storable_text)]
QueuePool = Annotated[str | None, Query(max_length=255, description="Its work pool (default: "
                                        "the agents' pool)."), AfterValidator(_storable_or_none)]


#: the longest a claim waits, whatever it asks (tests lower it on the app's state)
LONG_POLL_CAP = 30.0


class RunsChanged:
    """A counter bumped whenever this process makes a run claimable; long polls watch it."""

    def __init__(self) -> None:
        self.version = 0

    def bump(self) -> None:
        self.version += 1


def get_deployments(request: Request) -> Deployments:
    return request.app.state.deployments


def get_changes(request: Request) -> RunsChanged:
    return request.app.state.runs_changed


D = Annotated[Deployments, Depends(get_deployments)]
Changes = Annotated[RunsChanged, Depends(get_changes)]


# -- deployments -------------------------------------------------------------------------------------
@router.post("/deployments/", responses=NOT_FOUND, summary="Create or update a deployment.")
def apply_deployment(body: DeploymentApply, d: D, changes: Changes) -> dict[str, Any]:
    spec = body.model_dump()
    spec["schedules"] = [s.model_dump() for s in body.schedules]
    out = d.apply_deployment(spec)
    d.schedule_runs(out["id"])
    changes.bump()
    return out


@router.post("/deployments/filter")
def filter_deployments(d: D, body: DeploymentFilter | None = None) -> list[dict[str, Any]]:
    flt = body or DeploymentFilter()
    return d.read_deployments(flt.flow_name, flt.limit, flt.offset)


@router.get("/deployments/name/{flow_name}/{name}", responses=NOT_FOUND)
def read_by_name(flow_name: PoolName, name: PoolName, d: D) -> dict[str, Any]:
    return d.read_deployment_by_name(f"{flow_name}/{name}")


@router.get("/deployments/{deployment_id}", responses=NOT_FOUND)
def read_deployment(deployment_id: DepId, d: D) -> dict[str, Any]:
    return d.read_deployment(deployment_id)


@router.delete("/deployments/{deployment_id}", status_code=204, responses=NOT_FOUND)
def delete_deployment(deployment_id: DepId, d: D) -> Response:
    d.delete_deployment(deployment_id)
    return Response(status_code=204)


@router.put("/deployments/{deployment_id}/schedules", responses=NOT_FOUND)
def replace_schedules(deployment_id: DepId, body: list[ScheduleSpec], d: D,
                      changes: Changes) -> dict[str, Any]:
    out = d.replace_schedules(deployment_id, [s.model_dump() for s in body])
    d.schedule_runs(deployment_id)
    changes.bump()
    return out


@router.post("/deployments/{deployment_id}/schedules/active", responses=NOT_FOUND,
             summary="Pause or resume a deployment's schedules (one, or all).")
def schedules_active(deployment_id: DepId, body: ScheduleActive, d: D,
                     changes: Changes) -> dict[str, Any]:
    out = d.set_schedules_active(deployment_id, body.active, body.schedule_id)
    if body.active:
        d.schedule_runs(deployment_id)
        changes.bump()
    return out


@router.post("/deployments/{deployment_id}/create_flow_run", status_code=201,
             responses=NOT_FOUND, summary="A run of the deployment (parameters checked first).")
def create_flow_run(deployment_id: DepId, body: FlowRunFromDeployment, d: D,
                    changes: Changes) -> dict[str, Any]:
    run = d.create_flow_run_from_deployment(deployment_id, **body.model_dump())
    changes.bump()
    return run


@router.post("/deployments/{deployment_id}/backfill", responses=NOT_FOUND)
def backfill(deployment_id: DepId, body: Backfill, d: D, changes: Changes) -> dict[str, int]:
    out = d.backfill(deployment_id, body.start, body.end)
    changes.bump()
    return out


# -- work pools and queues ---------------------------------------------------------------------------
@router.post("/work_pools/", status_code=201, responses=CONFLICT)
def create_pool(body: WorkPoolCreate, d: D) -> dict[str, Any]:
    return d.create_work_pool(**body.model_dump())


@router.post("/work_pools/filter")
def filter_pools(d: D) -> list[dict[str, Any]]:
    return d.read_work_pools()


@router.post("/work_pools/claim", responses=NOT_FOUND, summary="Claim due runs for a worker (a long poll).")
async def claim(body: Claim, d: D, changes: Changes, request: Request) -> list[dict[str, Any]]:
    cap = getattr(request.app.state, "long_poll_cap", LONG_POLL_CAP)
    deadline = time.monotonic() + min(body.wait_seconds, cap)
    while True:
        seen = changes.version
        runs = await to_thread.run_sync(lambda: d.claim_flow_runs(
            body.worker_name, pool_name=body.work_pool_name, queue_names=body.queue_names,
            limit=body.limit, lease_seconds=body.lease_seconds))
        if runs or time.monotonic() >= deadline:
            return runs
        checked = time.monotonic()
        while (changes.version == seen and time.monotonic() < deadline
               and time.monotonic() - checked < 1.0):
            await asyncio.sleep(0.05)


@router.get("/work_pools/{name}", responses=NOT_FOUND)
def read_pool(name: PoolName, d: D) -> dict[str, Any]:
    return d.read_work_pool(name)


@router.patch("/work_pools/{name}", responses=NOT_FOUND)
def update_pool(name: PoolName, body: WorkPoolUpdate, d: D) -> dict[str, Any]:
    return d.update_work_pool(name, **unset(body))


@router.delete("/work_pools/{name}", status_code=204, responses=NOT_FOUND)
def delete_pool(name: PoolName, d: D) -> Response:
    d.delete_work_pool(name)
    return Response(status_code=204)


@router.post("/work_queues/", status_code=201, responses={**NOT_FOUND, **CONFLICT})
def create_queue(body: WorkQueueCreate, d: D) -> dict[str, Any]:
    fields = body.model_dump()
    return d.create_work_queue(fields.pop("name"), fields.pop("work_pool_name"), **fields)


@router.post("/work_queues/filter", responses=NOT_FOUND)
def filter_queues(d: D, body: WorkQueueFilter | None = None) -> list[dict[str, Any]]:
    return d.read_work_queues(body.work_pool_name if body else None)


@router.get("/work_queues/name/{name}", responses=NOT_FOUND)
def read_queue(name: PoolName, d: D, work_pool_name: QueuePool = None) -> dict[str, Any]:
    return d.read_work_queue(name, work_pool_name)


@router.patch("/work_queues/name/{name}", responses=NOT_FOUND)
def update_queue(name: PoolName, body: WorkQueueUpdate, d: D, changes: Changes,
                 work_pool_name: QueuePool = None) -> dict[str, Any]:
    out = d.update_work_queue(name, work_pool_name, **unset(body))
    changes.bump()
    return out


@router.delete("/work_queues/name/{name}", status_code=204, responses=NOT_FOUND)
def delete_queue(name: PoolName, d: D, work_pool_name: QueuePool = None) -> Response:
    d.delete_work_queue(name, work_pool_name)
    return Response(status_code=204)


# -- a deployment's run, as its worker and its process drive it ------------------------------------
@router.post("/flow_runs/{run_id}/start", responses=NOT_FOUND,
             summary="Pending -> Running for the holder of the current claim token.")
def start_run(run_id: RunId, body: ClaimToken, d: D) -> dict[str, Any]:
    return d.start_flow_run(run_id, body.claim_token)


@router.post("/flow_runs/{run_id}/release", responses=NOT_FOUND)
def release_run(run_id: RunId, body: ClaimToken, d: D, changes: Changes) -> dict[str, Any]:
    out = d.release_claim(run_id, body.claim_token)
    changes.bump()
    return out


@router.post("/flow_runs/{run_id}/infrastructure_pid", status_code=204, responses=NOT_FOUND)
def set_pid(run_id: RunId, body: InfrastructurePid, d: D) -> Response:
    d.set_infrastructure_pid(run_id, body.claim_token, body.pid)
    return Response(status_code=204)


@router.post("/flow_runs/{run_id}/heartbeat", responses=NOT_FOUND)
def heartbeat(run_id: RunId, d: D) -> dict[str, Any]:
    return {"state_type": d.heartbeat(run_id)}


@router.post("/flow_runs/{run_id}/cancel", responses=NOT_FOUND,
             summary="Cancel a run and its subflow runs.")
def cancel(run_id: RunId, d: D) -> dict[str, Any]:
    return d.cancel_flow_run(run_id)


@router.post("/flow_runs/{run_id}/end", responses=NOT_FOUND,
             summary="A worker's verdict: the run's process is gone (Crashed) or never started.")
def end_run(run_id: RunId, body: EndFlowRun, d: D) -> dict[str, Any]:
    return d.end_deployed_flow_run(run_id, body.state_type, body.message, body.claim_token)


@router.post("/flow_runs/{run_id}/cancelled", status_code=204, responses=NOT_FOUND,
             summary="The worker stopped a Cancelling run's process.")
def cancelled(run_id: RunId, d: D) -> Response:
    d.finish_cancellation(run_id)
    return Response(status_code=204)
