"""Flow runs, task runs, their states and log lines, as read back from the history."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from ..states import StateType
from .api import storable_text, storable_time


class _Model(BaseModel):
    # unknown fields are ignored so a client one release apart keeps working
    model_config = ConfigDict(extra="ignore", from_attributes=True)


class StateRecord(_Model):
    id: str
    type: StateType
    name: str
    message: str | None = None
    timestamp: dt.datetime
    result: dict[str, Any] | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class FlowRun(_Model):
    id: str
    name: str
    flow_id: str
    flow_name: str
    state_type: StateType | None = None
    state_name: str | None = None
    state_message: str | None = None
    state_timestamp: dt.datetime | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent_task_run_id: str | None = None
    run_count: int = 0
    expected_start_time: dt.datetime | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    total_run_time: float = 0.0
    version: str | None = None
    empirical_policy: dict[str, Any] = Field(default_factory=dict)
    created: dt.datetime
    updated: dt.datetime
    deployment_id: str | None = None
    work_queue_name: str | None = None
    auto_scheduled: bool | None = None
    idempotency_key: str | None = None
    job_variables: dict[str, Any] | None = None
    infrastructure_pid: str | None = None
    heartbeat: dt.datetime | None = None
    host: str | None = None  # the process running it: its host and pid
    pid: int | None = None


class TaskRun(_Model):
    id: str
    name: str
    flow_run_id: str | None = None
    task_key: str
    dynamic_key: str
    cache_key: str | None = None
    cache_expiration: dt.datetime | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    state_message: str | None = None
    state_timestamp: dt.datetime | None = None
    task_inputs: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    run_count: int = 0
    expected_start_time: dt.datetime | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    total_run_time: float = 0.0
    empirical_policy: dict[str, Any] = Field(default_factory=dict)
    created: dt.datetime
    updated: dt.datetime


class LogRecord(_Model):
    id: str
    flow_run_id: str | None = None
    task_run_id: str | None = None
    name: str
    level: int
    message: str
    timestamp: dt.datetime


_ID_OR_PREFIX = r"^[0-9a-fA-F-]{1,36}$"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_MAX_OFFSET = 2**31 - 1
# what a filter compares with the database's columns: text it can hold, times it can represent
_Text = AfterValidator(storable_text)
_When = Annotated[AwareDatetime, AfterValidator(storable_time)]


class FlowRunFilter(_Model):
    """Which flow runs to list. Every field narrows the list; None means any."""

    flow_name: Annotated[str, Field(max_length=255), _Text] | None = None
    flow_id: str | None = Field(None, pattern=_UUID)
    name_like: Annotated[str, Field(max_length=255), _Text] | None = Field(
        None, description="Part of the run's name.")
    ids: list[Annotated[str, Field(pattern=_UUID)]] | None = Field(None, max_length=1000)
    state_types: list[StateType] | None = None
    state_names: list[Annotated[str, Field(max_length=64), _Text]] | None = None
    tags_all: list[Annotated[str, Field(max_length=255), _Text]] | None = Field(
        None, max_length=50)
    parent_task_run_id: str | None = Field(None, pattern=_UUID)
    parent_flow_run_id: str | None = Field(
        None, pattern=_UUID, description="Subflow runs of this flow run.")
    start_after: _When | None = None
    start_before: _When | None = None
    sort: Literal["created_desc", "created_asc", "start_time_desc", "name_asc"] = "created_desc"
    limit: int = Field(100, ge=1, le=10_000)
    offset: int = Field(0, ge=0, le=_MAX_OFFSET)


class TaskRunFilter(_Model):
    flow_run_id: str | None = Field(None, pattern=_ID_OR_PREFIX)
    ids: list[Annotated[str, Field(pattern=_UUID)]] | None = Field(None, max_length=1000)
    state_types: list[StateType] | None = None
    name_like: Annotated[str, Field(max_length=255), _Text] | None = None
    tags_all: list[Annotated[str, Field(max_length=255), _Text]] | None = Field(
        None, max_length=50)
    start_after: _When | None = None
    start_before: _When | None = None
    sort: Literal["created_asc", "created_desc"] = "created_asc"
    limit: int = Field(1000, ge=1, le=1_000_000)
    offset: int = Field(0, ge=0, le=_MAX_OFFSET)
