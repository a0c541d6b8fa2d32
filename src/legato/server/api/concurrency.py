from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import AfterValidator

from ...schemas.api import ConcurrencyLimit, ConcurrencyLimitCreate, FlowFilter, storable_text
from .deps import NOT_FOUND, Core

router = APIRouter(prefix="/concurrency_limits", tags=["Concurrency limits"])
Tag = Annotated[str, Path(min_length=1, max_length=255), AfterValidator(storable_text)]


@router.post("/", response_model=ConcurrencyLimit,
             summary="Create or change a tag's limit of task runs Running at once.")
def create_limit(body: ConcurrencyLimitCreate, core: Core) -> ConcurrencyLimit:
    return ConcurrencyLimit(**core.set_concurrency_limit(body.tag, body.concurrency_limit))


@router.get("/tag/{tag}", response_model=ConcurrencyLimit, responses=NOT_FOUND)
def read_limit(tag: Tag, core: Core) -> ConcurrencyLimit:
    return ConcurrencyLimit(**core.read_concurrency_limit(tag))


@router.post("/filter", response_model=list[ConcurrencyLimit])
def filter_limits(core: Core, body: FlowFilter | None = None) -> list[ConcurrencyLimit]:
    flt = body or FlowFilter()
    return [ConcurrencyLimit(**r) for r in core.read_concurrency_limits(flt.limit, flt.offset)]


@router.post("/tag/{tag}/reset", response_model=ConcurrencyLimit, responses=NOT_FOUND,
             summary="Free every slot of a tag's limit (after runs died holding them).")
def reset_limit(tag: Tag, core: Core) -> ConcurrencyLimit:
    return ConcurrencyLimit(**core.reset_concurrency_limit(tag))


@router.delete("/tag/{tag}", status_code=204, responses=NOT_FOUND)
def delete_limit(tag: Tag, core: Core) -> Response:
    core.delete_concurrency_limit(tag)
    return Response(status_code=204)
