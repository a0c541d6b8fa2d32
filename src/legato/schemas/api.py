"""The API's request and answer bodies, and the batch of history rows the HTTP client sends.

Every model ignores fields it does not know (a client one minor release newer keeps working), and
bounds every value the database would refuse (ids are UUIDs, names fit their columns, numbers fit
their integer columns, times carry a timezone), so bad input gets a 422 that names the field
rather than a database error.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ..states import StateType
from ..version import API_VERSION, API_VERSION_HEADER  # noqa: E402,F401 - the API's own

_UTC = dt.timezone.utc


def storable_text(value: str) -> str:
    """A name, key or filter the database can hold and compare: no NUL character (PostgreSQL
    refuses it) and valid Unicode (no lone surrogate)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL (\\x00) character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


def storable_time(value: dt.datetime) -> dt.datetime:
    """An aware time that is a valid time in UTC too (years 1 to 9999 there)."""
    try:
        value.astimezone(_UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range: in UTC it must fall in the years 1 to 9999") from None
    return value


_UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
Id = Annotated[str, Field(pattern=_UUID_RE, examples=["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"]),
               AfterValidator(str.lower)]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Tag = Annotated[str, Field(min_length=1, max_length=255)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
When = Annotated[AwareDatetime, AfterValidator(storable_time)]
StateName = Annotated[str, Field(min_length=1, max_length=64)]
Message = Annotated[str, Field(max_length=1_000_000)]
# names, keys and tags of a direct API call must be text the database can hold and compare.
# Free text and JSON documents (a state's message, parameters) are not refused but stored as the
# embedded history stores them (the server core cleans them), and a batch's rows are cleaned by
# the writer, so one odd log line cannot make a client's whole batch fail again and again.
Text = AfterValidator(storable_text)
SafeName = Annotated[Name, Text]
SafeTag = Annotated[Tag, Text]
SafeStateName = Annotated[StateName, Text]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _unicode_safe(value: Any) -> Any:
    """``value`` with lone surrogates in its text written as escapes (as the embedded history's
    writer does: ``legato.store.cleaning``)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            try:  # a file name decoded with surrogateescape: show the bytes it stands for
                return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_unicode_safe(k): _unicode_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unicode_safe(v) for v in value]
    return value


class _Recorded(_In):
    """What the SDK records (history rows, a proposed state): text from user code, where a lone
    surrogate (an undecodable file name in an exception's message, a log line) is written
    escaped rather than failing the client's whole batch or state change again and again.
    Costs nothing unless validation fails on such text."""

    @model_validator(mode="wrap")
    @classmethod
    def _escape_lone_surrogates(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            if not any(e["type"] == "string_unicode" for e in exc.errors()):
                raise
            return handler(_unicode_safe(data))


# -- the batch: rows of runs this client drives ---------------------------------------------------
class FlowRow(_Recorded):
    id: Id
    name: Name
    created: When
    updated: When


class _RunFields(_Recorded):
    """Fields a run's row may change (a batch's updates give some of them)."""

    state_type: StateType | None = None
    state_name: StateName | None = None
    state_message: Message | None = None
    state_timestamp: When | None = None
    run_count: Count | None = None
    start_time: When | None = None
    end_time: When | None = None
    total_run_time: Seconds | None = None
    updated: When | None = None


class FlowRunUpdate(_RunFields):
    pass


class TaskRunUpdate(_RunFields):
    cache_key: Annotated[str, Field(max_length=512)] | None = None
    cache_expiration: When | None = None


class FlowRunRow(_RunFields):
    id: Id
    flow_id: Id
    name: Name
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list)
    parent_task_run_id: Id | None = None
    run_count: Count = 0
    expected_start_time: When | None = None
    total_run_time: Seconds = 0.0
    version: Annotated[str, Field(max_length=255)] | None = None
    empirical_policy: dict[str, Any] = Field(default_factory=dict)
    created: When
    updated: When
    # the client process running it (host, pid); a heartbeat given here is taken as "alive
    # now": the server records its own time (clocks differ), and crash detection watches the run
    host: Annotated[str, Field(max_length=255)] | None = None
    pid: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    heartbeat: When | None = None


class TaskRunRow(_RunFields):
    id: Id
    flow_run_id: Id | None = None
    task_key: Annotated[str, Field(min_length=1, max_length=512)]
    name: Name
    dynamic_key: Annotated[str, Field(max_length=64)] = "0"
    cache_key: Annotated[str, Field(max_length=512)] | None = None
    cache_expiration: When | None = None
    task_inputs: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list)
    run_count: Count = 0
    expected_start_time: When | None = None
    total_run_time: Seconds = 0.0
    empirical_policy: dict[str, Any] = Field(default_factory=dict)
    created: When
    updated: When


class _StateRow(_Recorded):
    id: Id
    type: StateType
    name: StateName
    message: Message | None = None
    timestamp: When
    result: dict[str, Any] | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class FlowRunStateRow(_StateRow):
    flow_run_id: Id


class TaskRunStateRow(_StateRow):
    task_run_id: Id


class LogRow(_Recorded):
    id: Id
    flow_run_id: Id | None = None
    task_run_id: Id | None = None
    name: Name
    level: Annotated[int, Field(ge=0, le=1000)]
    message: Message
    timestamp: When


class CacheRow(_Recorded):
    key: Annotated[str, Field(min_length=1, max_length=512)]
    task_run_id: Id | None = None
    result: dict[str, Any]
    expiration: When | None = None
    created: When


class HistoryBatch(_In):
    """What a client wrote since its last flush, coalesced per run; written in one transaction."""

    flows: list[FlowRow] = Field(default_factory=list)
    flow_run_inserts: list[FlowRunRow] = Field(default_factory=list)
    flow_run_updates: dict[Id, FlowRunUpdate] = Field(default_factory=dict)
    task_run_inserts: list[TaskRunRow] = Field(default_factory=list)
    task_run_updates: dict[Id, TaskRunUpdate] = Field(default_factory=dict)
    flow_run_states: list[FlowRunStateRow] = Field(default_factory=list)
    task_run_states: list[TaskRunStateRow] = Field(default_factory=list)
    logs: list[LogRow] = Field(default_factory=list)
    cache: list[CacheRow] = Field(default_factory=list)


class BatchResult(BaseModel):
    written: int = Field(description="Rows written (runs, updates, states, logs, cache entries).")


# -- requests -------------------------------------------------------------------------------------
class FlowCreate(_In):
    name: SafeName


class Flow(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    created: dt.datetime
    updated: dt.datetime


class FlowFilter(_In):
    name: SafeName | None = None
    name_like: Annotated[str, Field(max_length=255), Text] | None = None
    sort: Literal["name_asc", "created_desc", "created_asc"] = "name_asc"
    limit: Annotated[int, Field(ge=1, le=10_000)] = 200
    offset: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class StateIn(_Recorded):
    """A proposed state. ``name`` defaults to the type's usual name (COMPLETED -> Completed)."""

    type: StateType
    name: SafeStateName | None = None
    message: Message | None = None
    timestamp: When | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class SetState(_In):
    state: StateIn
    new_attempt: bool = Field(
        False, description="A retry or re-run: lets a finished run go Scheduled/Pending/Running.")
    force: bool = Field(False, description="Record the state without asking the rules.")
    result: dict[str, Any] | None = None


class SetStateResult(BaseModel):
    status: Literal["ACCEPT", "REJECT", "NOOP", "WAIT"]
    reason: str | None = None
    retry_after: float | None = None
    state_id: str | None = Field(None, description="The new state's id, when accepted.")
    run: dict[str, Any] = Field(description="The run's current fields after the decision.")


class FlowRunCreate(_In):
    id: Id | None = None
    flow_name: SafeName | None = Field(None, description="The flow, by name (created if new).")
    flow_id: Id | None = Field(None, description="Or the flow, by id.")
    name: SafeName | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[SafeTag] = Field(default_factory=list)
    parent_task_run_id: Id | None = None
    version: Annotated[str, Field(max_length=255), Text] | None = None
    state: StateIn | None = Field(None, description="Its first state (default: Pending).")


class TaskRunCreate(_In):
    id: Id | None = None
    flow_run_id: Id | None = None
    task_key: Annotated[str, Field(min_length=1, max_length=512), Text]
    name: SafeName
    dynamic_key: Annotated[str, Field(max_length=64), Text] = "0"
    tags: list[SafeTag] = Field(default_factory=list)
    task_inputs: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    state: StateIn | None = None


class LogFilter(_In):
    flow_run_id: Id | None = None
    task_run_id: Id | None = None
    min_level: Annotated[int, Field(ge=0, le=1000)] = 0
    include_task_logs: bool = True
    limit: Annotated[int, Field(ge=1, le=100_000)] = 1000
    offset: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class CacheRead(_In):
    key: Annotated[str, Field(min_length=1, max_length=512)]


class ConcurrencyLimitCreate(_In):
    tag: SafeTag
    concurrency_limit: Annotated[int, Field(ge=0, le=1_000_000)]


class ConcurrencyLimit(BaseModel):
    id: str
    tag: str
    concurrency_limit: int
    active_slots: list[str]
    created: dt.datetime
    updated: dt.datetime


class Count_(BaseModel):
    count: int


class ErrorItem(BaseModel):
    loc: list[str] = Field(description="Where: 'body' or 'path'/'query', then the field.")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer (4xx, 5xx): ``detail`` says what is wrong in words."""

    model_config = ConfigDict(extra="allow")
    detail: str = Field(description="What is wrong, naming the field, id or limit concerned.")
    errors: list[ErrorItem] | None = Field(
        None, description="With a 422: each invalid field (at most 20).")
