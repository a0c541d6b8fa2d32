"""Flow-run notification policies and their deliveries: ``/api/flow_run_notification_policies``
and ``/api/notification_deliveries/filter``. The sending is the notification service's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from ...blocks.core import block_from_document
from ...core.notifications import Notifications
from ...schemas.notifications import (
    Delivery,
    DeliveryFilter,
    Policy,
    PolicyCreate,
    PolicyUpdate,
)
from .deps import NOT_FOUND, UUID_PATTERN

router = APIRouter(tags=["Notifications"])

PolicyId = Annotated[str, Path(pattern=UUID_PATTERN, description="The policy's id.")]


def get_notifications(request: Request) -> Notifications:
    state = request.app.state
    core = getattr(state, "notifications", None)
    if core is None:
        core = state.notifications = Notifications(state.db, state.blocks,
                                                   build_block=block_from_document)
    return core


N = Annotated[Notifications, Depends(get_notifications)]


@router.post("/flow_run_notification_policies/", status_code=201, response_model=Policy,
             responses=NOT_FOUND, summary="Create a flow-run notification policy.")
def create_policy(body: PolicyCreate, n: N) -> dict[str, Any]:
    return n.create_policy(**body.model_dump())


@router.post("/flow_run_notification_policies/filter", response_model=list[Policy],
             summary="Every notification policy, oldest first.")
def filter_policies(n: N) -> list[dict[str, Any]]:
    return n.read_policies()


@router.get("/flow_run_notification_policies/{policy_id}", response_model=Policy,
            responses=NOT_FOUND)
def read_policy(policy_id: PolicyId, n: N) -> dict[str, Any]:
    return n.read_policy(policy_id.lower())


@router.patch("/flow_run_notification_policies/{policy_id}", response_model=Policy,
              responses=NOT_FOUND, summary="Change some fields of a notification policy.")
def update_policy(policy_id: PolicyId, body: PolicyUpdate, n: N) -> dict[str, Any]:
    return n.update_policy(policy_id.lower(), **body.model_dump(exclude_unset=True))


@router.delete("/flow_run_notification_policies/{policy_id}", status_code=204,
               responses=NOT_FOUND, summary="Delete a notification policy and its deliveries.")
def delete_policy(policy_id: PolicyId, n: N) -> Response:
    n.delete_policy(policy_id.lower())
    return Response(status_code=204)


@router.post("/notification_deliveries/filter", response_model=list[Delivery],
             summary="Notification deliveries, newest first: pending, sent or failed.")
def filter_deliveries(n: N, body: DeliveryFilter | None = None) -> list[dict[str, Any]]:
    flt = body or DeliveryFilter()
    return n.read_deliveries(flt.policy_id, flt.status, flt.limit)
