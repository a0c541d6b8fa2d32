"""Blocks in the API: how a block is named and addressed, and the bodies of the block routes."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..exceptions import BlockError
from .api import Id, storable_text

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
_NAME_RE = re.compile(NAME_PATTERN)
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


def check_block_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > 255:
        raise BlockError(
            f"Invalid block name {name!r}: use lowercase letters, digits, '-' and '_' "
            "(starting with a letter or digit), for example 'my-gcs-bucket'.")
    return name


def split_address(address: str) -> tuple[str, str]:
    """``type-slug/name`` -> (slug, name)."""
    slug, sep, name = address.partition("/")
    if not sep or not slug or not name or "/" in name:
        raise BlockError(
            f"{address!r} is not a block address: write it as TYPE/NAME, for example "
            "'gcs-bucket/my-bucket' (`legato block ls` lists them).")
    return slug, name


def _name(value: str) -> str:
    try:
        return check_block_name(value)
    except BlockError as exc:
        raise ValueError(str(exc)) from None


BlockName = Annotated[str, Field(max_length=255), AfterValidator(_name)]
Slug = Annotated[str, Field(min_length=1, max_length=255, pattern=SLUG_PATTERN)]
Text = Annotated[str, AfterValidator(storable_text)]
FieldPath = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z_][\w.]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class BlockTypeCreate(_Body):
    slug: Slug
    name: Text = Field(min_length=1, max_length=255)
    description: Text | None = None
    logo_url: Text | None = Field(None, max_length=2000)
    documentation_url: Text | None = Field(None, max_length=2000)
    code_example: Text | None = None
    module: Text | None = Field(None, max_length=512)


class BlockSchemaCreate(_Body):
    checksum: Text = Field(min_length=1, max_length=128)
    fields: dict[str, Any]
    capabilities: list[Annotated[Text, Field(max_length=64)]] = Field(default_factory=list)
    version: Text | None = Field(None, max_length=64)


class BlockTypeRegister(_Body):
    block_type: BlockTypeCreate
    block_schema: BlockSchemaCreate


class BlockDocumentCreate(_Body):
    name: BlockName
    block_type_slug: Slug
    block_schema_checksum: Text | None = Field(
        None, max_length=128, description="The schema the data follows (default: the type's "
        "newest schema).")
    data: dict[str, Any] = Field(default_factory=dict)
    references: dict[FieldPath, Id] = Field(
        default_factory=dict, description="Field path -> id of the saved block it holds.")


class BlockDocumentFilter(_Body):
    block_type_slug: Slug | None = None
    name_like: Text | None = Field(None, max_length=255)
    include_secrets: bool = False
    limit: int = Field(200, ge=1, le=10_000)
    offset: int = Field(0, ge=0, le=10_000_000)
