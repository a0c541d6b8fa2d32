"""Deployments, their schedules, work pools and queues, workers; a flow run's deployment, queue
and claim (a lease with a fencing token).

Revision ID: 0005_deployments
Revises: 0004_blocks
Create Date: 2026-11-26 08:00:00
"""

import sqlalchemy as sa
from alembic import op

from legato.store.models import JSONDoc, Timestamp, UUIDText

revision = "0005_deployments"
down_revision = "0004_blocks"
branch_labels = None
depends_on = None

_FLOW_RUN_COLUMNS = [
    sa.Column("deployment_id", UUIDText(), nullable=True),
    sa.Column("work_queue_id", UUIDText(), nullable=True),
    sa.Column("work_queue_name", sa.String(length=255), nullable=True),
    sa.Column("auto_scheduled", sa.Boolean(), nullable=True),
    sa.Column("idempotency_key", sa.String(length=255), nullable=True),
    sa.Column("job_variables", JSONDoc(), nullable=True),
    sa.Column("claim_token", sa.Integer(), nullable=True),
    sa.Column("claimed_by", sa.String(length=255), nullable=True),
    sa.Column("lease_expires", Timestamp(), nullable=True),
    sa.Column("infrastructure_pid", sa.String(length=512), nullable=True),
    sa.Column("heartbeat", Timestamp(), nullable=True),
]


def _stamps() -> list[sa.Column]:
    return [sa.Column("created", Timestamp(), nullable=False),
            sa.Column("updated", Timestamp(), nullable=False)]


def upgrade() -> None:
    for column in _FLOW_RUN_COLUMNS:
        op.add_column("flow_run", column)
    op.create_index(op.f("ix_flow_run__deployment_id_idempotency_key"), "flow_run",
                    ["deployment_id", "idempotency_key"], unique=True)
    op.create_index(op.f("ix_flow_run__work_queue_id_state_type_expected_start_time"), "flow_run",
                    ["work_queue_id", "state_type", "expected_start_time"], unique=False)
    op.create_index(op.f("ix_flow_run__deployment_id_expected_start_time"), "flow_run",
                    ["deployment_id", "expected_start_time"], unique=False)
    op.create_table(
        "work_pool",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("base_job_template", JSONDoc(), nullable=False),
        sa.Column("is_paused", sa.Boolean(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_pool")),
        sa.UniqueConstraint("name", name=op.f("uq_work_pool__name")),
    )
    op.create_table(
        "work_queue",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("work_pool_id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("is_paused", sa.Boolean(), nullable=False),
        sa.Column("last_polled", Timestamp(), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["work_pool_id"], ["work_pool.id"],
                                name=op.f("fk_work_queue__work_pool_id__work_pool"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_queue")),
        sa.UniqueConstraint("work_pool_id", "name", name=op.f("uq_work_queue__work_pool_id_name")),
    )
    op.create_table(
        "deployment",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("flow_id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("version", sa.String(length=255), nullable=True),
        sa.Column("tags", JSONDoc(), nullable=False),
        sa.Column("parameters", JSONDoc(), nullable=False),
        sa.Column("parameter_openapi_schema", JSONDoc(), nullable=True),
        sa.Column("enforce_parameter_schema", sa.Boolean(), nullable=False),
        sa.Column("entrypoint", sa.String(length=1024), nullable=True),
        sa.Column("path", sa.String(length=1024), nullable=True),
        sa.Column("storage_document_id", UUIDText(), nullable=True),
        sa.Column("infrastructure_document_id", UUIDText(), nullable=True),
        sa.Column("job_variables", JSONDoc(), nullable=False),
        sa.Column("pull_steps", JSONDoc(), nullable=True),
        sa.Column("work_queue_id", UUIDText(), nullable=True),
        sa.Column("work_queue_name", sa.String(length=255), nullable=True),
        sa.Column("work_pool_name", sa.String(length=255), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["flow_id"], ["flow.id"],
                                name=op.f("fk_deployment__flow_id__flow"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["work_queue_id"], ["work_queue.id"],
                                name=op.f("fk_deployment__work_queue_id__work_queue"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment")),
        sa.UniqueConstraint("flow_id", "name", name=op.f("uq_deployment__flow_id_name")),
    )
    op.create_table(
        "deployment_schedule",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("deployment_id", UUIDText(), nullable=False),
        sa.Column("schedule", JSONDoc(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("parameters", JSONDoc(), nullable=False),
        sa.Column("max_scheduled_runs", sa.Integer(), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployment.id"],
                                name=op.f("fk_deployment_schedule__deployment_id__deployment"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_schedule")),
    )
    op.create_index(op.f("ix_deployment_schedule__deployment_id"), "deployment_schedule",
                    ["deployment_id"], unique=False)
    op.create_table(
        "worker",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("work_pool_id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("queues", JSONDoc(), nullable=False),
        sa.Column("last_heartbeat", Timestamp(), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["work_pool_id"], ["work_pool.id"],
                                name=op.f("fk_worker__work_pool_id__work_pool"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker")),
        sa.UniqueConstraint("work_pool_id", "name", name=op.f("uq_worker__work_pool_id_name")),
    )


def downgrade() -> None:
    for table in ("worker", "deployment_schedule", "deployment", "work_queue", "work_pool"):
        op.drop_table(table)
    for name in ("deployment_id_expected_start_time", "work_queue_id_state_type_expected_start_time",
                 "deployment_id_idempotency_key"):
        op.drop_index(op.f(f"ix_flow_run__{name}"), table_name="flow_run")
    for column in reversed(_FLOW_RUN_COLUMNS):
        op.drop_column("flow_run", column.name)
