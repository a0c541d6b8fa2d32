"""Block types, schemas and documents: ``/api/block_types``, ``/api/block_schemas``,
``/api/block_documents``. Documents are answered with secret fields masked unless
``include_secrets=true`` is asked for (the SDK asks, to use the block)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from ...core.blocks import BlockCore
from ...schemas.blocks import (
    SLUG_PATTERN,
    BlockDocumentCreate,
    BlockDocumentFilter,
    BlockTypeRegister,
)
from .deps import CONFLICT, NOT_FOUND, UUID_PATTERN


def get_blocks(request: Request) -> BlockCore:
    return request.app.state.blocks


Blocks = Annotated[BlockCore, Depends(get_blocks)]
SlugPath = Annotated[str, Path(pattern=SLUG_PATTERN, max_length=255)]
NamePath = Annotated[str, Path(min_length=1, max_length=255)]
DocId = Annotated[str, Path(pattern=UUID_PATTERN)]
Secrets = Annotated[bool, Query(description="Answer secret values in clear (to use the block).")]

router = APIRouter(tags=["Blocks"])


@router.post("/block_types/", summary="Register a block type and a schema of it (idempotent).")
def register_type(body: BlockTypeRegister, blocks: Blocks) -> dict[str, Any]:
    return blocks.register_block_type(body.block_type.model_dump(),
                                      body.block_schema.model_dump())


@router.post("/block_types/filter", summary="Every registered block type.")
def filter_types(blocks: Blocks) -> list[dict[str, Any]]:
    return blocks.read_block_types()


@router.get("/block_types/slug/{slug}", responses=NOT_FOUND,
            summary="A block type, with its schemas (newest first).")
def read_type(slug: SlugPath, blocks: Blocks) -> dict[str, Any]:
    return blocks.read_block_type(slug)


@router.delete("/block_types/slug/{slug}", status_code=204, responses={**NOT_FOUND, **CONFLICT})
def delete_type(slug: SlugPath, blocks: Blocks) -> Response:
    blocks.delete_block_type(slug)
    return Response(status_code=204)


@router.post("/block_schemas/filter", responses=NOT_FOUND,
             summary="Block schemas, of one type or all.")
def filter_schemas(blocks: Blocks, body: BlockDocumentFilter | None = None
                   ) -> list[dict[str, Any]]:
    return blocks.read_block_schemas(body.block_type_slug if body else None)


@router.post("/block_documents/", status_code=201, responses={**NOT_FOUND, **CONFLICT},
             summary="Save a block (409 if the name is taken, unless overwrite=true).")
def save_document(body: BlockDocumentCreate, blocks: Blocks,
                  overwrite: Annotated[bool, Query()] = False) -> dict[str, Any]:
    return blocks.save_block_document(body.model_dump(), overwrite=overwrite)


@router.post("/block_documents/filter", responses=NOT_FOUND, summary="Saved blocks.")
def filter_documents(blocks: Blocks, body: BlockDocumentFilter | None = None
                     ) -> list[dict[str, Any]]:
    flt = body or BlockDocumentFilter()
    return blocks.read_block_documents(
        flt.block_type_slug, name_like=flt.name_like, include_secrets=flt.include_secrets,
        limit=flt.limit, offset=flt.offset)


@router.get("/block_documents/{doc_id}", responses=NOT_FOUND)
def read_document(doc_id: DocId, blocks: Blocks, include_secrets: Secrets = False
                  ) -> dict[str, Any]:
    return blocks.read_block_document_by_id(doc_id, include_secrets)


@router.delete("/block_documents/{doc_id}", status_code=204, responses={**NOT_FOUND, **CONFLICT})
def delete_document(doc_id: DocId, blocks: Blocks) -> Response:
    blocks.delete_block_document_by_id(doc_id)
    return Response(status_code=204)


@router.get("/block_types/slug/{slug}/block_documents/name/{name}", responses=NOT_FOUND,
            summary="A saved block by type and name.")
def read_document_by_name(slug: SlugPath, name: NamePath, blocks: Blocks,
                          include_secrets: Secrets = False) -> dict[str, Any]:
    return blocks.read_block_document(slug, name, include_secrets)


@router.delete("/block_types/slug/{slug}/block_documents/name/{name}", status_code=204,
               responses={**NOT_FOUND, **CONFLICT})
def delete_document_by_name(slug: SlugPath, name: NamePath, blocks: Blocks) -> Response:
    blocks.delete_block_document(slug, name)
    return Response(status_code=204)
