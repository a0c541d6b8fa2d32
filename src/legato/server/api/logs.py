from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from ...schemas import LogRecord
from ...schemas.api import BatchResult, CacheRead, HistoryBatch, LogFilter, LogRow
from ...store import queries
from .deps import CONFLICT, DB, NOT_FOUND, Core

router = APIRouter(tags=["Logs and history"])


@router.post("/logs/", response_model=BatchResult, status_code=201, responses=CONFLICT,
             summary="Write log lines.")
def create_logs(rows: Annotated[list[LogRow], Body(max_length=100_000)], core: Core) -> BatchResult:
    return BatchResult(written=core.write_batch(HistoryBatch(logs=rows)))


@router.post("/logs/filter", response_model=list[LogRecord], responses=NOT_FOUND,
             summary="Read log lines of a flow run or task run, oldest first.")
def filter_logs(db: DB, body: LogFilter | None = None) -> list[LogRecord]:
    flt = body or LogFilter()
    return queries.read_logs(db, flow_run_id=flt.flow_run_id, task_run_id=flt.task_run_id,
                             min_level=flt.min_level, limit=flt.limit, offset=flt.offset,
                             include_task_logs=flt.include_task_logs)


@router.post("/history/batch", response_model=BatchResult, responses=CONFLICT,
             summary="Write a client's batch of runs, states, logs and cache entries, all in "
                     "one transaction (the SDK's write path).")
def write_batch(batch: HistoryBatch, core: Core) -> BatchResult:
    return BatchResult(written=core.write_batch(batch))


@router.post("/cache/read", summary="The live cache entry for a key, or null.")
def read_cache(body: CacheRead, core: Core) -> dict[str, Any] | None:
    return core.read_cache(body.key)
