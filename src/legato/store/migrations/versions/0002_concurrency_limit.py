"""Tag concurrency limits.

Revision ID: 0002_concurrency_limit
Revises: 0001_initial
Create Date: 2026-11-26 04:05:00
"""

import sqlalchemy as sa
from alembic import op

from legato.store.models import JSONDoc, Timestamp, UUIDText

revision = "0002_concurrency_limit"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "concurrency_limit",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("tag", sa.String(length=255), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=False),
        sa.Column("active_slots", JSONDoc(), nullable=False),
        sa.Column("created", Timestamp(), nullable=False),
        sa.Column("updated", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concurrency_limit")),
        sa.UniqueConstraint("tag", name=op.f("uq_concurrency_limit__tag")),
    )


def downgrade() -> None:
    op.drop_table("concurrency_limit")
