"""Deployments, work pools and queues in the API: request bodies (answers are the stored rows)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from .api import Id, storable_text

Text = Annotated[str, AfterValidator(storable_text)]
Name = Annotated[Text, Field(min_length=1, max_length=255)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ScheduleSpec(_Body):
    schedule: dict[str, Any] = Field(description="{cron|interval|rrule, timezone, ...}")
    active: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)
    max_scheduled_runs: int | None = Field(None, ge=1, le=10_000)


class DeploymentApply(_Body):
    flow_name: Name
    name: Name
    description: Text | None = None
    version: Annotated[Text, Field(max_length=255)] | None = None
    tags: list[Annotated[Text, Field(max_length=255)]] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_openapi_schema: dict[str, Any] | None = None
    enforce_parameter_schema: bool = True
    entrypoint: Annotated[Text, Field(max_length=1024)] | None = None
    path: Annotated[Text, Field(max_length=1024)] | None = None
    storage_document_id: Id | None = None
    infrastructure_document_id: Id | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    pull_steps: list[dict[str, Any]] | None = None
    work_queue_name: Name | None = None
    work_pool_name: Name | None = None
    paused: bool = False
    retries: int | None = Field(None, ge=0, le=1000)
    schedules: list[ScheduleSpec] = Field(default_factory=list)


class DeploymentFilter(_Body):
    flow_name: Name | None = None
    limit: int = Field(200, ge=1, le=10_000)
    offset: int = Field(0, ge=0, le=10_000_000)


class FlowRunFromDeployment(_Body):
    parameters: dict[str, Any] = Field(default_factory=dict)
    scheduled_time: AwareDatetime | None = None
    name: Name | None = None
    tags: list[Annotated[Text, Field(max_length=255)]] = Field(default_factory=list)
    idempotency_key: Annotated[Text, Field(max_length=255)] | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class ScheduleActive(_Body):
    active: bool
    schedule_id: Id | None = None


class Backfill(_Body):
    start: AwareDatetime
    end: AwareDatetime


class WorkPoolCreate(_Body):
    name: Name
    type: Annotated[Text, Field(min_length=1, max_length=64)] = "process"
    description: Text | None = None
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    concurrency_limit: int | None = Field(None, ge=0, le=1_000_000)
    paused: bool = False


class WorkPoolUpdate(_Body):
    description: Text | None = None
    base_job_template: dict[str, Any] | None = None
    is_paused: bool | None = None
    concurrency_limit: int | None = Field(None, ge=0, le=1_000_000)


class WorkQueueCreate(_Body):
    name: Name
    work_pool_name: Name | None = None
    priority: int = Field(1, ge=1, le=1_000_000)
    concurrency_limit: int | None = Field(None, ge=0, le=1_000_000)
    description: Text | None = None
    paused: bool = False


class WorkQueueUpdate(_Body):
    description: Text | None = None
    priority: int | None = Field(None, ge=1, le=1_000_000)
    is_paused: bool | None = None
    concurrency_limit: int | None = Field(None, ge=0, le=1_000_000)


class WorkQueueFilter(_Body):
    work_pool_name: Name | None = None


class Claim(_Body):
    worker_name: Name
    work_pool_name: Name | None = None
    queue_names: list[Name] | None = None
    limit: int = Field(10, ge=1, le=1000)
    lease_seconds: float = Field(30.0, gt=0, le=86_400)
    wait_seconds: float = Field(0.0, ge=0, le=60, description="Long poll: wait this long for a "
                                "due run before answering an empty list.")


class ClaimToken(_Body):
    claim_token: int | None = None


class EndFlowRun(_Body):
    state_type: Literal["CRASHED", "FAILED"]
    message: Annotated[Text, Field(max_length=10_000)]
    claim_token: int | None = None


class InfrastructurePid(_Body):
    claim_token: int | None = None
    pid: Annotated[Text, Field(min_length=1, max_length=512)]


def unset(body: BaseModel) -> dict[str, Any]:
    """The fields a PATCH body sets."""
    return body.model_dump(exclude_unset=True)

