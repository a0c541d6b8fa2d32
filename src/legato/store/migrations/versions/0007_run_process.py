"""A flow run's process: the host and process id that run it (the embedded history's check for
runs whose process died reads them).

Revision ID: 0007_run_process
Revises: 0006_notifications
Create Date: 2026-12-10 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_run_process"
down_revision = "0006_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flow_run", sa.Column("host", sa.String(length=255), nullable=True))
    op.add_column("flow_run", sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("flow_run", "pid")
    op.drop_column("flow_run", "host")
