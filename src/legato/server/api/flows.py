from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Path, Response
from pydantic import AfterValidator

from ...exceptions import ObjectNotFound
from ...schemas.api import Flow, FlowCreate, FlowFilter, storable_text
from ...store import models
from ...store.queries import _escape_like
from .deps import DB, NOT_FOUND, UUID_PATTERN, Core

router = APIRouter(prefix="/flows", tags=["Flows"])
FlowId = Annotated[str, Path(pattern=UUID_PATTERN)]


@router.post("/", response_model=Flow, summary="Create a flow (or get the one of that name).")
def create_flow(body: FlowCreate, core: Core) -> Flow:
    return Flow(**core.ensure_flow(body.name))


@router.get("/{flow_id}", response_model=Flow, responses=NOT_FOUND)
def read_flow(flow_id: FlowId, db: DB) -> Flow:
    f = models.flow
    with db.read() as conn:
        row = conn.execute(sa.select(f).where(f.c.id == flow_id.lower())).mappings().first()
    if row is None:
        raise ObjectNotFound(f"No flow with id {flow_id}.")
    return Flow(**row)


@router.get("/name/{name}", response_model=Flow, responses=NOT_FOUND)
def read_flow_by_name(name: Annotated[str, Path(max_length=255), AfterValidator(storable_text)],
                      db: DB) -> Flow:
    f = models.flow
    with db.read() as conn:
        row = conn.execute(sa.select(f).where(f.c.name == name)).mappings().first()
    if row is None:
        raise ObjectNotFound(f"No flow named {name!r}.")
    return Flow(**row)


@router.post("/filter", response_model=list[Flow], summary="List flows, filtered and sorted.")
def filter_flows(db: DB, body: FlowFilter | None = None) -> list[Flow]:
    flt = body or FlowFilter()
    f = models.flow
    q = sa.select(f)
    if flt.name is not None:
        q = q.where(f.c.name == flt.name)
    if flt.name_like:
        q = q.where(f.c.name.like(f"%{_escape_like(flt.name_like)}%", escape="\\"))
    order = {"name_asc": f.c.name.asc(), "created_desc": f.c.created.desc(),
             "created_asc": f.c.created.asc()}[flt.sort]
    q = q.order_by(order, f.c.id).limit(flt.limit).offset(flt.offset)
    with db.read() as conn:
        return [Flow(**r) for r in conn.execute(q).mappings()]


@router.delete("/{flow_id}", status_code=204, responses=NOT_FOUND,
               summary="Delete a flow with all its runs.")
def delete_flow(flow_id: FlowId, core: Core) -> Response:
    core.delete_flow(flow_id.lower())
    return Response(status_code=204)
