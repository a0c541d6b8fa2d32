"""What every route gets: the database and the core, from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from ...core.server_core import ServerCore
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
