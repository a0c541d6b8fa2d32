"""The run history's tables (SQLAlchemy 2 Core).

Every row has a UUID id (except the cache, keyed by its cache key) and UTC timestamps. The
current state of a run is denormalised onto its row (``state_type`` ...) so listing and filtering
never join the state tables; the ``*_state`` tables keep every transition.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s__%(column_0_N_name)s",
        "uq": "uq_%(table_name)s__%(column_0_N_name)s",
        "fk": "fk_%(table_name)s__%(column_0_name)s__%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
# the trigram indexes (ix_*__name_trgm) need pg_trgm when create_all makes a fresh PostgreSQL schema
sa.event.listen(metadata, "before_create", sa.DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                .execute_if(dialect="postgresql"))


class Timestamp(sa.TypeDecorator):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the history; use UTC-aware times")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class JSONDoc(sa.TypeDecorator):
    """JSON; JSONB on PostgreSQL. The PostgreSQL dialect is only imported when it is in use
    (importing it eagerly costs ~0.1 s of every SQLite run)."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


class UUIDText(sa.TypeDecorator):
    """A UUID string: native uuid on PostgreSQL, CHAR(36) text elsewhere (no per-row conversion)."""

    impl = sa.String(36)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import UUID as PGUUID

            return dialect.type_descriptor(PGUUID(as_uuid=False))
        return dialect.type_descriptor(sa.String(36))


JSON = JSONDoc()
UUID = UUIDText()


def _state_columns() -> list[sa.Column]:
    return [
        sa.Column("state_type", sa.String(16), nullable=True),
        sa.Column("state_name", sa.String(64), nullable=True),
        sa.Column("state_message", sa.Text, nullable=True),
        sa.Column("state_timestamp", Timestamp, nullable=True),
    ]


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created", Timestamp, nullable=False),
        sa.Column("updated", Timestamp, nullable=False),
    ]


flow = sa.Table(
    "flow",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    *_stamps(),
)

flow_run = sa.Table(
    "flow_run",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("flow_id", UUID, sa.ForeignKey("flow.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    *_state_columns(),
    sa.Column("parameters", JSON, nullable=False, default=dict),
    sa.Column("tags", JSON, nullable=False, default=list),
    # a subflow run points at the task run that stands for it in its parent flow run
    sa.Column("parent_task_run_id", UUID, nullable=True),
    sa.Column("run_count", sa.Integer, nullable=False, default=0),
    sa.Column("expected_start_time", Timestamp, nullable=True),
    sa.Column("start_time", Timestamp, nullable=True),
    sa.Column("end_time", Timestamp, nullable=True),
    sa.Column("total_run_time", sa.Float, nullable=False, default=0.0),
    sa.Column("version", sa.String(255), nullable=True),
    sa.Column("empirical_policy", JSON, nullable=False, default=dict),
    *_stamps(),
    # a deployment's run: which deployment and queue, and the claim a worker holds on it (a lease
    # with a fencing token: only the holder of the current token may start it)
    sa.Column("deployment_id", UUID, nullable=True),
    sa.Column("work_queue_id", UUID, nullable=True),
    sa.Column("work_queue_name", sa.String(255), nullable=True),
    sa.Column("auto_scheduled", sa.Boolean, nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("job_variables", JSON, nullable=True),
    sa.Column("claim_token", sa.Integer, nullable=True),
    sa.Column("claimed_by", sa.String(255), nullable=True),
    sa.Column("lease_expires", Timestamp, nullable=True),
    sa.Column("infrastructure_pid", sa.String(512), nullable=True),
    sa.Column("heartbeat", Timestamp, nullable=True),
    # the process running it (a script's or a deployment's): the host (with its process-id
    # namespace when that is not the machine's own) and the pid
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Index(None, "flow_id", "created"),
    sa.Index(None, "state_type", "created"),
    sa.Index(None, "state_name", "created"),
    # one run per (deployment, scheduled time): the scheduler's key, held by the database
    sa.Index(None, "deployment_id", "idempotency_key", unique=True),
    sa.Index(None, "work_queue_id", "state_type", "expected_start_time"),
    sa.Index(None, "deployment_id", "expected_start_time"),
    sa.Index(None, "start_time"),
    sa.Index(None, "end_time"),  # retention: finished runs by end time
    sa.Index(None, "created"),
    sa.Index(None, "name"),  # sort name_asc
    sa.Index(None, "parent_task_run_id"),
    # the start_after/start_before filters compare coalesce(start_time, created)
    sa.Index("ix_flow_run__start_time_or_created", sa.text("coalesce(start_time, created)")),
    # PostgreSQL only (empty partial indexes on SQLite, which could not use them): name_like
    # (LIKE '%x%', pg_trgm trigrams) and tags_all (tags @> '[...]')
    sa.Index("ix_flow_run__name_trgm", "name", postgresql_using="gin",
             postgresql_ops={"name": "gin_trgm_ops"}, sqlite_where=sa.text("0")),
    sa.Index(None, "tags", postgresql_using="gin", postgresql_ops={"tags": "jsonb_path_ops"},
             sqlite_where=sa.text("0")),
    info={"optional_columns": frozenset({
        "deployment_id", "work_queue_id", "work_queue_name", "auto_scheduled", "idempotency_key",
        "job_variables", "claim_token", "claimed_by", "lease_expires", "infrastructure_pid",
        "heartbeat", "host", "pid"})},
)

task_run = sa.Table(
    "task_run",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column(
        "flow_run_id", UUID, sa.ForeignKey("flow_run.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("task_key", sa.String(512), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("dynamic_key", sa.String(64), nullable=False, default="0"),
    sa.Column("cache_key", sa.String(512), nullable=True),
    sa.Column("cache_expiration", Timestamp, nullable=True),
    *_state_columns(),
    # which upstream run fed which parameter: {"param": [{"input_type": "task_run", "id": ...}]}
    sa.Column("task_inputs", JSON, nullable=False, default=dict),
    sa.Column("tags", JSON, nullable=False, default=list),
    sa.Column("run_count", sa.Integer, nullable=False, default=0),
    sa.Column("expected_start_time", Timestamp, nullable=True),
    sa.Column("start_time", Timestamp, nullable=True),
    sa.Column("end_time", Timestamp, nullable=True),
    sa.Column("total_run_time", sa.Float, nullable=False, default=0.0),
    sa.Column("empirical_policy", JSON, nullable=False, default=dict),
    *_stamps(),
    sa.Index(None, "flow_run_id", "created"),
    sa.Index(None, "state_type", "created"),
    sa.Index(None, "cache_key"),
    sa.Index(None, "created"),
    sa.Index(None, "end_time"),  # retention: finished runs by end time
    # PostgreSQL only (empty partial indexes on SQLite: every index costs the embedded per-task
    # write path): start_after/start_before, name_like (pg_trgm) and tags_all
    sa.Index("ix_task_run__start_time_or_created", sa.text("coalesce(start_time, created)"),
             sqlite_where=sa.text("0")),
    sa.Index("ix_task_run__name_trgm", "name", postgresql_using="gin",
             postgresql_ops={"name": "gin_trgm_ops"}, sqlite_where=sa.text("0")),
    sa.Index(None, "tags", postgresql_using="gin", postgresql_ops={"tags": "jsonb_path_ops"},
             sqlite_where=sa.text("0")),
)


def _state_table(name: str, owner: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", UUID, primary_key=True),
        sa.Column(
            f"{owner}_id", UUID, sa.ForeignKey(f"{owner}.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("timestamp", Timestamp, nullable=False),
        # where a persisted result lives ({"storage_key": ..., "serializer": ...}), if any
        sa.Column("result", JSON, nullable=True),
        sa.Column("details", JSON, nullable=False, default=dict),
        sa.Index(None, f"{owner}_id", "timestamp"),
    )


flow_run_state = _state_table("flow_run_state", "flow_run")
task_run_state = _state_table("task_run_state", "task_run")
# the notification service scans the flow-run states newer than its cursor
sa.Index("ix_flow_run_state__timestamp", flow_run_state.c.timestamp)

log = sa.Table(
    "log",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("flow_run_id", UUID, nullable=True),
    sa.Column("task_run_id", UUID, nullable=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("timestamp", Timestamp, nullable=False),
    sa.Index(None, "flow_run_id", "timestamp"),
    sa.Index(None, "task_run_id", "timestamp"),
    sa.Index(None, "timestamp"),
)

cache_entry = sa.Table(
    "cache_entry",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("task_run_id", UUID, nullable=True),
    sa.Column("result", JSON, nullable=False),
    sa.Column("expiration", Timestamp, nullable=True),
    sa.Column("created", Timestamp, nullable=False),
)

# a tag's concurrency limit: at most ``concurrency_limit`` task runs with the tag Running at once;
# ``active_slots`` lists the task run ids holding a slot (taken on Running, given back on leaving it)
concurrency_limit = sa.Table(
    "concurrency_limit",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("tag", sa.String(255), nullable=False, unique=True),
    sa.Column("concurrency_limit", sa.Integer, nullable=False),
    sa.Column("active_slots", JSON, nullable=False, default=list),
    *_stamps(),
)

# -- blocks: typed configuration saved by name ----------------------------------------------------
# a block type (a Block class), addressed by its slug; ``module`` says where its class lives
block_type = sa.Table(
    "block_type",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("slug", sa.String(255), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("logo_url", sa.Text, nullable=True),
    sa.Column("documentation_url", sa.Text, nullable=True),
    sa.Column("code_example", sa.Text, nullable=True),
    sa.Column("module", sa.String(512), nullable=True),
    *_stamps(),
)

# a version of a type's fields (JSON schema, with secret_fields and block_schema_references)
block_schema = sa.Table(
    "block_schema",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("block_type_id", UUID, sa.ForeignKey("block_type.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("checksum", sa.String(128), nullable=False),
    sa.Column("fields", JSON, nullable=False),
    sa.Column("capabilities", JSON, nullable=False, default=list),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("created", Timestamp, nullable=False),
    sa.UniqueConstraint("block_type_id", "checksum"),
)

# a saved block; ``data`` is the document's JSON encrypted (Fernet), secrets and all
block_document = sa.Table(
    "block_document",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("block_type_id", UUID, sa.ForeignKey("block_type.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("block_schema_id", UUID, sa.ForeignKey("block_schema.id"), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("is_anonymous", sa.Boolean, nullable=False, default=False),
    *_stamps(),
    sa.UniqueConstraint("block_type_id", "name"),
)

# a field (dotted path) of a block that holds another saved block, by reference
block_document_reference = sa.Table(
    "block_document_reference",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("parent_block_document_id", UUID,
              sa.ForeignKey("block_document.id", ondelete="CASCADE"), nullable=False),
    sa.Column("reference_block_document_id", UUID, sa.ForeignKey("block_document.id"),
              nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created", Timestamp, nullable=False),
    sa.UniqueConstraint("parent_block_document_id", "name"),
    sa.Index(None, "reference_block_document_id"),
)


# -- deployments, work pools and queues, workers ---------------------------------------------------
# a work pool: where runs of a kind of infrastructure wait for workers; ``default-agent-pool`` holds
# the queues Prefect 2 agents poll
work_pool = sa.Table(
    "work_pool",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("base_job_template", JSON, nullable=False, default=dict),
    sa.Column("is_paused", sa.Boolean, nullable=False, default=False),
    sa.Column("concurrency_limit", sa.Integer, nullable=True),
    *_stamps(),
)

work_queue = sa.Table(
    "work_queue",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("work_pool_id", UUID, sa.ForeignKey("work_pool.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False, default=1),
    sa.Column("concurrency_limit", sa.Integer, nullable=True),
    sa.Column("is_paused", sa.Boolean, nullable=False, default=False),
    sa.Column("last_polled", Timestamp, nullable=True),
    *_stamps(),
    sa.UniqueConstraint("work_pool_id", "name"),
)

deployment = sa.Table(
    "deployment",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("flow_id", UUID, sa.ForeignKey("flow.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("version", sa.String(255), nullable=True),
    sa.Column("tags", JSON, nullable=False, default=list),
    sa.Column("parameters", JSON, nullable=False, default=dict),
    sa.Column("parameter_openapi_schema", JSON, nullable=True),
    sa.Column("enforce_parameter_schema", sa.Boolean, nullable=False, default=True),
    sa.Column("entrypoint", sa.String(1024), nullable=True),
    sa.Column("path", sa.String(1024), nullable=True),
    sa.Column("storage_document_id", UUID, nullable=True),
    sa.Column("infrastructure_document_id", UUID, nullable=True),
    sa.Column("job_variables", JSON, nullable=False, default=dict),
    sa.Column("pull_steps", JSON, nullable=True),
    sa.Column("work_queue_id", UUID, sa.ForeignKey("work_queue.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("work_queue_name", sa.String(255), nullable=True),
    sa.Column("work_pool_name", sa.String(255), nullable=True),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("retries", sa.Integer, nullable=True),
    *_stamps(),
    sa.UniqueConstraint("flow_id", "name"),
)

deployment_schedule = sa.Table(
    "deployment_schedule",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("deployment_id", UUID, sa.ForeignKey("deployment.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("schedule", JSON, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("parameters", JSON, nullable=False, default=dict),
    sa.Column("max_scheduled_runs", sa.Integer, nullable=True),
    *_stamps(),
    sa.Index(None, "deployment_id"),
)

# an agent's or worker's last sign of life, per pool
worker = sa.Table(
    "worker",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("work_pool_id", UUID, sa.ForeignKey("work_pool.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("queues", JSON, nullable=False, default=list),
    sa.Column("last_heartbeat", Timestamp, nullable=False),
    *_stamps(),
    sa.UniqueConstraint("work_pool_id", "name"),
)


# -- notifications: rules that send a message when a flow run enters a state ----------------------
# a rule: flow runs entering one of ``state_names`` (optionally only runs with one of ``tags`` or
# of one of ``deployment_ids``; empty lists match any) are announced through the notification
# block ``block_document_id``. The service scans flow_run_state up to ``scanned_until``; states
# before ``active_since`` (the rule's creation or its last re-activation) never notify.
flow_run_notification_policy = sa.Table(
    "flow_run_notification_policy",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("state_names", JSON, nullable=False, default=list),
    sa.Column("tags", JSON, nullable=False, default=list),
    sa.Column("deployment_ids", JSON, nullable=False, default=list),
    sa.Column("block_document_id", UUID, nullable=False),
    sa.Column("message_template", sa.Text, nullable=True),
    sa.Column("active_since", Timestamp, nullable=False),
    sa.Column("scanned_until", Timestamp, nullable=True),
    *_stamps(),
)

# one message to send: a (rule, flow-run state) pair, unique, so that a state is announced once
# per rule however many servers scan it; status pending -> sent, or failed after the attempts
notification_delivery = sa.Table(
    "notification_delivery",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("policy_id", UUID,
              sa.ForeignKey("flow_run_notification_policy.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("flow_run_id", UUID, nullable=False),
    sa.Column("flow_run_state_id", UUID, nullable=False),
    sa.Column("state_name", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_attempt", Timestamp, nullable=True),
    sa.Column("sent_at", Timestamp, nullable=True),
    sa.Column("created", Timestamp, nullable=False),
    sa.UniqueConstraint("policy_id", "flow_run_state_id"),
    sa.Index(None, "status", "next_attempt"),
    sa.Index(None, "created"),
)
