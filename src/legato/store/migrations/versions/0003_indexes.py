"""Indexes for every filter and sort the API offers, and for retention (end_time).

On PostgreSQL the trigram (name LIKE '%x%') and tag (tags @> '[...]') indexes are GIN indexes and
need the pg_trgm extension (a trusted extension since PostgreSQL 13: the database's owner may create
it); on SQLite they, and task_run's time index, are empty partial indexes (``WHERE 0``) that cost
nothing, so both backends keep one schema.

On a big PostgreSQL history this migration builds the indexes while holding the tables (minutes
for ~10M task runs).

Revision ID: 0003_indexes
Revises: 0002_concurrency_limit
Create Date: 2026-11-26 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_indexes"
down_revision = "0002_concurrency_limit"
branch_labels = None
depends_on = None

_NONE_ON_SQLITE = {"sqlite_where": sa.text("0")}


def _gin(column: str, ops: str) -> dict:
    return {"postgresql_using": "gin", "postgresql_ops": {column: ops}, **_NONE_ON_SQLITE}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    op.create_index(op.f("ix_flow_run__state_name_created"), "flow_run",
                    ["state_name", "created"], unique=False)
    op.create_index(op.f("ix_flow_run__end_time"), "flow_run", ["end_time"], unique=False)
    op.create_index(op.f("ix_flow_run__name"), "flow_run", ["name"], unique=False)
    op.create_index(op.f("ix_flow_run__start_time_or_created"), "flow_run",
                    [sa.text("coalesce(start_time, created)")], unique=False)
    op.create_index(op.f("ix_flow_run__name_trgm"), "flow_run", ["name"], unique=False,
                    **_gin("name", "gin_trgm_ops"))
    op.create_index(op.f("ix_flow_run__tags"), "flow_run", ["tags"], unique=False,
                    **_gin("tags", "jsonb_path_ops"))

    op.drop_index(op.f("ix_task_run__state_type"), table_name="task_run")
    op.create_index(op.f("ix_task_run__state_type_created"), "task_run",
                    ["state_type", "created"], unique=False)
    op.create_index(op.f("ix_task_run__end_time"), "task_run", ["end_time"], unique=False)
    op.create_index(op.f("ix_task_run__start_time_or_created"), "task_run",
                    [sa.text("coalesce(start_time, created)")], unique=False, **_NONE_ON_SQLITE)
    op.create_index(op.f("ix_task_run__name_trgm"), "task_run", ["name"], unique=False,
                    **_gin("name", "gin_trgm_ops"))
    op.create_index(op.f("ix_task_run__tags"), "task_run", ["tags"], unique=False,
                    **_gin("tags", "jsonb_path_ops"))


def downgrade() -> None:
    for name in ("ix_task_run__tags", "ix_task_run__name_trgm",
                 "ix_task_run__start_time_or_created", "ix_task_run__end_time",
                 "ix_task_run__state_type_created"):
        op.drop_index(op.f(name), table_name="task_run")
    op.create_index(op.f("ix_task_run__state_type"), "task_run", ["state_type"], unique=False)
    for name in ("ix_flow_run__tags", "ix_flow_run__name_trgm",
                 "ix_flow_run__start_time_or_created", "ix_flow_run__name",
                 "ix_flow_run__end_time", "ix_flow_run__state_name_created"):
        op.drop_index(op.f(name), table_name="flow_run")
    # pg_trgm stays: other objects may use it
