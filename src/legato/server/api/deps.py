"""What every route gets: the database and the core, from the app's state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from ...core.server_core import ServerCore
from ...schemas.api import ErrorBody
from ...store.database import Database

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ID_OR_PREFIX = r"^[0-9a-fA-F-]{4,36}$"


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_core(request: Request) -> ServerCore:
    return request.app.state.core


DB = Annotated[Database, Depends(get_db)]
Core = Annotated[ServerCore, Depends(get_core)]
RunId = Annotated[str, Path(pattern=UUID_PATTERN, description="The run's id (a UUID).")]
RunIdOrPrefix = Annotated[str, Path(
    pattern=ID_OR_PREFIX, description="The run's id, or a unique prefix of it (4+ characters).")]


# the error answers a route documents besides those every route may give (see app.py)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "An id, name or tag that the history does not hold."}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The data contradicts the history (an id that "
                                             "exists already, a run it points at that does not)."}}
