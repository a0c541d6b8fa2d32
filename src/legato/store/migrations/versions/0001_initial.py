"""The initial run-history schema: flows, flow runs, task runs, their states, logs, cache.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26 01:33:29.675488
"""

import sqlalchemy as sa
from alembic import op

from legato.store.models import JSONDoc, Timestamp, UUIDText

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "cache_entry",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("task_run_id", UUIDText(), nullable=True),
        sa.Column(
            "result",
            JSONDoc(),
            nullable=False,
        ),
        sa.Column("expiration", Timestamp(), nullable=True),
        sa.Column("created", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_cache_entry")),
    )
    op.create_table(
        "flow",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created", Timestamp(), nullable=False),
        sa.Column("updated", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow")),
        sa.UniqueConstraint("name", name=op.f("uq_flow__name")),
    )
    op.create_table(
        "log",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("flow_run_id", UUIDText(), nullable=True),
        sa.Column("task_run_id", UUIDText(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("timestamp", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log")),
    )
    with op.batch_alter_table("log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_log__flow_run_id_timestamp"), ["flow_run_id", "timestamp"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_log__task_run_id_timestamp"), ["task_run_id", "timestamp"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_log__timestamp"), ["timestamp"], unique=False)

    op.create_table(
        "flow_run",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("flow_id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("state_type", sa.String(length=16), nullable=True),
        sa.Column("state_name", sa.String(length=64), nullable=True),
        sa.Column("state_message", sa.Text(), nullable=True),
        sa.Column("state_timestamp", Timestamp(), nullable=True),
        sa.Column(
            "parameters",
            JSONDoc(),
            nullable=False,
        ),
        sa.Column(
            "tags",
            JSONDoc(),
            nullable=False,
        ),
        sa.Column("parent_task_run_id", UUIDText(), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("expected_start_time", Timestamp(), nullable=True),
        sa.Column("start_time", Timestamp(), nullable=True),
        sa.Column("end_time", Timestamp(), nullable=True),
        sa.Column("total_run_time", sa.Float(), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=True),
        sa.Column(
            "empirical_policy",
            JSONDoc(),
            nullable=False,
        ),
        sa.Column("created", Timestamp(), nullable=False),
        sa.Column("updated", Timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flow.id"], name=op.f("fk_flow_run__flow_id__flow"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_run")),
    )
    with op.batch_alter_table("flow_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flow_run__created"), ["created"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flow_run__flow_id_created"), ["flow_id", "created"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flow_run__parent_task_run_id"), ["parent_task_run_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_flow_run__start_time"), ["start_time"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flow_run__state_type_created"), ["state_type", "created"], unique=False
        )

    op.create_table(
        "flow_run_state",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("flow_run_id", UUIDText(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("timestamp", Timestamp(), nullable=False),
        sa.Column(
            "result",
            JSONDoc(),
            nullable=True,
        ),
        sa.Column(
            "details",
            JSONDoc(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["flow_run_id"],
            ["flow_run.id"],
            name=op.f("fk_flow_run_state__flow_run_id__flow_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_run_state")),
    )
    with op.batch_alter_table("flow_run_state", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_run_state__flow_run_id_timestamp"),
            ["flow_run_id", "timestamp"],
            unique=False,
        )

    op.create_table(
        "task_run",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("flow_run_id", UUIDText(), nullable=True),
        sa.Column("task_key", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("dynamic_key", sa.String(length=64), nullable=False),
        sa.Column("cache_key", sa.String(length=512), nullable=True),
        sa.Column("cache_expiration", Timestamp(), nullable=True),
        sa.Column("state_type", sa.String(length=16), nullable=True),
        sa.Column("state_name", sa.String(length=64), nullable=True),
        sa.Column("state_message", sa.Text(), nullable=True),
        sa.Column("state_timestamp", Timestamp(), nullable=True),
        sa.Column(
            "task_inputs",
            JSONDoc(),
            nullable=False,
        ),
        sa.Column(
            "tags",
            JSONDoc(),
            nullable=False,
        ),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("expected_start_time", Timestamp(), nullable=True),
        sa.Column("start_time", Timestamp(), nullable=True),
        sa.Column("end_time", Timestamp(), nullable=True),
        sa.Column("total_run_time", sa.Float(), nullable=False),
        sa.Column(
            "empirical_policy",
            JSONDoc(),
            nullable=False,
        ),
        sa.Column("created", Timestamp(), nullable=False),
        sa.Column("updated", Timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_run_id"],
            ["flow_run.id"],
            name=op.f("fk_task_run__flow_run_id__flow_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_run")),
    )
    with op.batch_alter_table("task_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_run__cache_key"), ["cache_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_run__created"), ["created"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_task_run__flow_run_id_created"), ["flow_run_id", "created"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_task_run__state_type"), ["state_type"], unique=False)

    op.create_table(
        "task_run_state",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("task_run_id", UUIDText(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("timestamp", Timestamp(), nullable=False),
        sa.Column(
            "result",
            JSONDoc(),
            nullable=True,
        ),
        sa.Column(
            "details",
            JSONDoc(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["task_run_id"],
            ["task_run.id"],
            name=op.f("fk_task_run_state__task_run_id__task_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_run_state")),
    )
    with op.batch_alter_table("task_run_state", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_task_run_state__task_run_id_timestamp"),
            ["task_run_id", "timestamp"],
            unique=False,
        )


def downgrade() -> None:

    with op.batch_alter_table("task_run_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_run_state__task_run_id_timestamp"))

    op.drop_table("task_run_state")
    with op.batch_alter_table("task_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_run__state_type"))
        batch_op.drop_index(batch_op.f("ix_task_run__flow_run_id_created"))
        batch_op.drop_index(batch_op.f("ix_task_run__created"))
        batch_op.drop_index(batch_op.f("ix_task_run__cache_key"))

    op.drop_table("task_run")
    with op.batch_alter_table("flow_run_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_run_state__flow_run_id_timestamp"))

    op.drop_table("flow_run_state")
    with op.batch_alter_table("flow_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_run__state_type_created"))
        batch_op.drop_index(batch_op.f("ix_flow_run__start_time"))
        batch_op.drop_index(batch_op.f("ix_flow_run__parent_task_run_id"))
        batch_op.drop_index(batch_op.f("ix_flow_run__flow_id_created"))
        batch_op.drop_index(batch_op.f("ix_flow_run__created"))

    op.drop_table("flow_run")
    with op.batch_alter_table("log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_log__timestamp"))
        batch_op.drop_index(batch_op.f("ix_log__task_run_id_timestamp"))
        batch_op.drop_index(batch_op.f("ix_log__flow_run_id_timestamp"))

    op.drop_table("log")
    op.drop_table("flow")
    op.drop_table("cache_entry")
