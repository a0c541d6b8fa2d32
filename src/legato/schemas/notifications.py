"""Flow-run notification policies and their deliveries in the API: request bodies and answers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .api import Id, storable_text

Text = Annotated[str, AfterValidator(storable_text)]
Tag = Annotated[Text, Field(min_length=1, max_length=255)]
StateName = Annotated[Text, Field(min_length=1, max_length=64)]
Template = Annotated[Text, Field(min_length=1, max_length=10_000)]
PolicyName = Annotated[Text, Field(max_length=255)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyCreate(_Body):
    """A rule: flow runs entering one of ``state_names`` (only those with one of ``tags``, of
    one of ``deployment_ids``, when given) are announced through the block
    ``block_document_id``."""

    state_names: list[StateName] = Field(
        description="Flow-run state names that notify, e.g. [\"Failed\", \"Crashed\"].",
        max_length=32)
    block_document_id: Id = Field(description="The id of a saved notification block.")
    tags: list[Tag] = Field(default_factory=list, max_length=100,
                            description="Only runs with one of these tags; empty: any run.")
    deployment_ids: list[Id] = Field(
        default_factory=list, max_length=100,
        description="Only runs of one of these deployments; empty: any run.")
    name: PolicyName | None = None
    is_active: bool = True
    message_template: Template | None = Field(
        None, description="The message, with {flow_name}, {flow_run_name}, {flow_run_id}, "
        "{state_name}, {state_message}, {flow_run_url}; null: the default message.")


class PolicyUpdate(_Body):
    """The fields to change (the others stay)."""

    state_names: list[StateName] | None = Field(None, max_length=32)
    block_document_id: Id | None = None
    tags: list[Tag] | None = Field(None, max_length=100)
    deployment_ids: list[Id] | None = Field(None, max_length=100)
    name: PolicyName | None = None
    is_active: bool | None = None
    message_template: Template | None = None


class Policy(BaseModel):
    id: str
    name: str | None
    is_active: bool
    state_names: list[str]
    tags: list[str]
    deployment_ids: list[str]
    block_document_id: str
    block_document_name: str | None = Field(
        None, description="The block's name (null if the block was deleted since).")
    block_type_slug: str | None = None
    message_template: str | None
    active_since: dt.datetime = Field(
        description="State changes from this time on notify (creation or last re-activation).")
    scanned_until: dt.datetime | None
    created: dt.datetime
    updated: dt.datetime


DeliveryStatus = Literal["pending", "sent", "failed"]


class DeliveryFilter(_Body):
    policy_id: Id | None = None
    status: DeliveryStatus | None = None
    limit: int = Field(50, ge=1, le=1000)


class Delivery(BaseModel):
    id: str
    policy_id: str
    flow_run_id: str
    flow_run_name: str | None = None
    flow_name: str | None = None
    flow_run_state_id: str
    state_name: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None = Field(description="Why the last failed attempt failed (no secrets).")
    next_attempt: dt.datetime | None = Field(description="When it is tried (again), if pending.")
    sent_at: dt.datetime | None
    created: dt.datetime
