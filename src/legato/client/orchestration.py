"""``get_client()`` for user code, as in Prefect: ``async with get_client() as client: ...``.

Through a server (LEGATO_API_URL set) it is the HTTP API client (:class:`AsyncApi`, or
:class:`SyncApi` with ``sync_client=True``); in embedded mode the same read calls run against the
local history. Calls: ``read_flow_runs(FlowRunFilter(...))``, ``read_flow_run(id)``,
``read_task_runs(TaskRunFilter(...))``, ``read_task_run(id)``, ``read_flow_run_states(id)``,
``read_task_run_states(id)``, ``read_logs(flow_run_id=...)``, and through a server also
``count_flow_runs``, ``set_flow_run_state``, ``delete_flow_run``, the concurrency-limit calls,
``health()`` and ``version()``.
"""

from __future__ import annotations

from typing import Any

from ..settings import get_settings
from .factory import get_client as engine_client


class _Embedded:
    """The embedded client's reads, with the context-manager shape of the API clients."""

    def __init__(self, asynchronous: bool) -> None:
        self._client = engine_client()
        self._async = asynchronous

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._client, name)
        if not self._async or not callable(fn):
            return fn

        async def call(*args: Any, **kwargs: Any) -> Any:
            import asyncio

            return await asyncio.to_thread(fn, *args, **kwargs)

        return call

    def __enter__(self) -> _Embedded:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    async def __aenter__(self) -> _Embedded:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        pass


def get_client(sync_client: bool = False) -> Any:
    s = get_settings()
    if not s.api_url:
        return _Embedded(asynchronous=not sync_client)
    # lazy: httpx, only when a server is configured
    from .api import AsyncApi, SyncApi
    from .transport import Transport

    transport = Transport(s.api_url, s.api_key, timeout=s.api_request_timeout,
                          retries=s.api_request_retries,
                          outage_window=s.api_outage_window_seconds)
    return SyncApi(transport) if sync_client else AsyncApi(transport)
