"""Blocks: block types, their schemas, saved block documents and the references between them.

Revision ID: 0004_blocks
Revises: 0003_indexes
Create Date: 2026-11-26 07:30:00
"""

import sqlalchemy as sa
from alembic import op

from legato.store.models import JSONDoc, Timestamp, UUIDText

revision = "0004_blocks"
down_revision = "0003_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "block_type",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("slug", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("logo_url", sa.Text(), nullable=True),
        sa.Column("documentation_url", sa.Text(), nullable=True),
        sa.Column("code_example", sa.Text(), nullable=True),
        sa.Column("module", sa.String(length=512), nullable=True),
        sa.Column("created", Timestamp(), nullable=False),
        sa.Column("updated", Timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_type")),
        sa.UniqueConstraint("slug", name=op.f("uq_block_type__slug")),
    )
    op.create_table(
        "block_schema",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("block_type_id", UUIDText(), nullable=False),
        sa.Column("checksum", sa.String(length=128), nullable=False),
        sa.Column("fields", JSONDoc(), nullable=False),
        sa.Column("capabilities", JSONDoc(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("created", Timestamp(), nullable=False),
        sa.ForeignKeyConstraint(["block_type_id"], ["block_type.id"],
                                name=op.f("fk_block_schema__block_type_id__block_type"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_schema")),
        sa.UniqueConstraint("block_type_id", "checksum",
                            name=op.f("uq_block_schema__block_type_id_checksum")),
    )
    op.create_table(
        "block_document",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("block_type_id", UUIDText(), nullable=False),
        sa.Column("block_schema_id", UUIDText(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("is_anonymous", sa.Boolean(), nullable=False),
        sa.Column("created", Timestamp(), nullable=False),
        sa.Column("updated", Timestamp(), nullable=False),
        sa.ForeignKeyConstraint(["block_schema_id"], ["block_schema.id"],
                                name=op.f("fk_block_document__block_schema_id__block_schema")),
        sa.ForeignKeyConstraint(["block_type_id"], ["block_type.id"],
                                name=op.f("fk_block_document__block_type_id__block_type"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_document")),
        sa.UniqueConstraint("block_type_id", "name",
                            name=op.f("uq_block_document__block_type_id_name")),
    )
    op.create_table(
        "block_document_reference",
        sa.Column("id", UUIDText(), nullable=False),
        sa.Column("parent_block_document_id", UUIDText(), nullable=False),
        sa.Column("reference_block_document_id", UUIDText(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created", Timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_block_document_id"], ["block_document.id"],
            name=op.f("fk_block_document_reference__parent_block_document_id__block_document"),
            ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["reference_block_document_id"], ["block_document.id"],
            name=op.f("fk_block_document_reference__reference_block_document_id__block_document")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_document_reference")),
        sa.UniqueConstraint("parent_block_document_id", "name",
                            name=op.f("uq_block_document_reference__parent_block_document_id_name")),
    )
    op.create_index(op.f("ix_block_document_reference__reference_block_document_id"),
                    "block_document_reference", ["reference_block_document_id"], unique=False)


def downgrade() -> None:
    op.drop_table("block_document_reference")
    op.drop_table("block_document")
    op.drop_table("block_schema")
    op.drop_table("block_type")
