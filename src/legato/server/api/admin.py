from __future__ import annotations

from fastapi import APIRouter

from ...schemas.api import API_VERSION
from ...version import legato_version

router = APIRouter(tags=["Admin"])


@router.get("/health", summary="Is the server up (and its database reachable)?")
def health() -> bool:
    return True


@router.get("/version", summary="The server's and its API's versions.")
def version() -> dict[str, str]:
    return {"api_version": API_VERSION, "server_version": legato_version()}
