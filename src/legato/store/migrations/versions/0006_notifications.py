"""Flow-run notification policies and their deliveries; flow-run states by time (the
notification service's scan).

Revision ID: 0006_notifications
Revises: 0005_deployments
Create Date: 2026-12-03 08:00:00
"""

import sqlalchemy as sa
from alembic import op

from legato.store.models import JSONDoc, Timestamp, UUIDText

revision = "0006_notifications"
down_revision = "0005_deployments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_flow_run_state__timestamp"), "flow_run_state", ["timestamp"],
                    unique=False)
    op.create_table(
        "flow_run_notification_policy",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("state_names", JSONDoc(), nullable=False),
        sa.Column("tags", JSONDoc(), nullable=False),
        sa.Column("deployment_ids", JSONDoc(), nullable=False),
        sa.Column("block_document_id", UUIDText(), nullable=False),
        sa.Column("message_template", sa.Text(), nullable=True),
        sa.Column("active_since", Timestamp(), nullable=False),
        sa.Column("scanned_until", Timestamp(), nullable=True),
        sa.Column("created", Timestamp(), nullable=False),
        sa.Column("updated", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_run_notification_policy")),
    )
    op.create_table(
        "notification_delivery",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("policy_id", UUIDText(), nullable=False),
        sa.Column("flow_run_id", UUIDText(), nullable=False),
        sa.Column("flow_run_state_id", UUIDText(), nullable=False),
        sa.Column("state_name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt", Timestamp(), nullable=True),
        sa.Column("sent_at", Timestamp(), nullable=True),
        sa.Column("created", Timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["flow_run_notification_policy.id"],
            name=op.f("fk_notification_delivery__policy_id__flow_run_notification_policy"),
            ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_delivery")),
        sa.UniqueConstraint("policy_id", "flow_run_state_id",
                            name=op.f("uq_notification_delivery__policy_id_flow_run_state_id")),
    )
    op.create_index(op.f("ix_notification_delivery__status_next_attempt"),
                    "notification_delivery", ["status", "next_attempt"], unique=False)
    op.create_index(op.f("ix_notification_delivery__created"), "notification_delivery",
                    ["created"], unique=False)


def downgrade() -> None:
    op.drop_table("notification_delivery")
    op.drop_table("flow_run_notification_policy")
    op.drop_index(op.f("ix_flow_run_state__timestamp"), table_name="flow_run_state")
