"""The one interface the engine, CLI and server use to reach the orchestration core."""

from .base import OrchestrationClient
from .factory import get_client

__all__ = ["OrchestrationClient", "get_client"]
