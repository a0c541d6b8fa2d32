"""The client interface. The embedded client implements it in-process; the HTTP client of the
server issue implements it over the API. The engine knows nothing else about the history."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Protocol

from ..core.rules import Decision
from ..states import State

if TYPE_CHECKING:
    from ..schemas import FlowRun, FlowRunFilter, LogRecord, StateRecord, TaskRun, TaskRunFilter


class OrchestrationClient(Protocol):
    # -- writes: hot path; implementations batch them --------------------------------------------
    def create_flow_run(
        self,
        *,
        id: str,
        flow_name: str,
        name: str,
        state: State,
        parameters: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        parent_task_run_id: str | None = None,
        version: str | None = None,
        empirical_policy: dict[str, Any] | None = None,
    ) -> None: ...

    def create_task_run(
        self,
        *,
        id: str,
        flow_run_id: str | None,
        task_key: str,
        name: str,
        dynamic_key: str,
        state: State,
        tags: list[str] | None = None,
        task_inputs: dict[str, list[dict[str, Any]]] | None = None,
        empirical_policy: dict[str, Any] | None = None,
    ) -> None: ...

    def set_flow_run_state(
        self, run_id: str, state: State, *, new_attempt: bool = False,
        result: dict[str, Any] | None = None, force: bool = False,
    ) -> Decision: ...

    def set_task_run_state(
        self, run_id: str, state: State, *, new_attempt: bool = False,
        result: dict[str, Any] | None = None, force: bool = False,
    ) -> Decision: ...

    def set_task_run_cache_key(
        self, run_id: str, cache_key: str | None, expiration: dt.datetime | None
    ) -> None: ...

    def write_log(self, row: dict[str, Any]) -> None: ...

    def read_cache(self, key: str) -> dict[str, Any] | None: ...

    def write_cache(
        self, key: str, *, task_run_id: str, result: dict[str, Any], expiration: dt.datetime | None
    ) -> None: ...

    def flush(self) -> None:
        """Make every write so far durable (in the database, or acknowledged by the server)."""

    def abandon_flow_run(self, run_id: str, exc: BaseException) -> None:
        """The flow run was created but could not start: forget it (never leave it Running)."""

    def end_flow_run(self, run_id: str) -> None:
        """The flow run is over: flush and drop what was kept in memory about it."""

    # -- reads -----------------------------------------------------------------------------------
    def read_flow_runs(self, flt: FlowRunFilter | None = None) -> list[FlowRun]: ...
    def read_flow_run(self, run_id: str) -> FlowRun: ...
    def read_task_runs(self, flt: TaskRunFilter | None = None) -> list[TaskRun]: ...
    def read_task_run(self, run_id: str) -> TaskRun: ...
    def read_flow_run_states(self, run_id: str) -> list[StateRecord]: ...
    def read_task_run_states(self, run_id: str) -> list[StateRecord]: ...
    def read_logs(
        self, *, flow_run_id: str | None = None, task_run_id: str | None = None,
        min_level: int = 0, limit: int | None = None,
    ) -> list[LogRecord]: ...

    def delete_flow_run(self, run_id: str) -> None:
        """Delete a flow run with its task runs, states, logs and subflow runs."""

    # -- tag concurrency limits --------------------------------------------------------------
    def set_concurrency_limit(self, tag: str, limit: int) -> dict[str, Any]: ...
    def read_concurrency_limit(self, tag: str) -> dict[str, Any]: ...
    def read_concurrency_limits(self) -> list[dict[str, Any]]: ...
    def reset_concurrency_limit(self, tag: str) -> dict[str, Any]: ...
    def delete_concurrency_limit(self, tag: str) -> None: ...


# Blocks: both clients answer these calls (the embedded one through legato.core.blocks, the HTTP
# one through the server's block routes), with the same arguments and answers:
#   register_block_type(block_type: dict, block_schema: dict) -> {"block_type", "block_schema"}
#   read_block_types() -> list; read_block_type(slug) -> dict (with "block_schemas")
#   read_block_schemas(slug=None) -> list; delete_block_type(slug)
#   save_block_document(doc: dict, overwrite=False) -> the saved document (secrets masked)
#   read_block_document(slug, name, include_secrets=False) -> dict
#   read_block_document_by_id(id, include_secrets=False) -> dict
#   read_block_documents(slug=None, *, name_like=None, include_secrets=False, limit=200,
#                        offset=0) -> list
#   delete_block_document(slug, name); delete_block_document_by_id(id)
BLOCK_CALLS = frozenset({
    "register_block_type", "read_block_types", "read_block_type", "read_block_schemas",
    "delete_block_type", "save_block_document", "read_block_document",
    "read_block_document_by_id", "read_block_documents", "delete_block_document",
    "delete_block_document_by_id",
})

# Deployments, work pools and queues, and the calls workers make (legato.core.run_control's
# Deployments embedded; the server's /api/deployments, /api/work_pools, /api/work_queues routes)
DEPLOYMENT_CALLS = frozenset({
    "apply_deployment", "read_deployment", "read_deployment_by_name", "read_deployments",
    "delete_deployment", "set_schedules_active", "replace_schedules",
    "create_flow_run_from_deployment", "backfill", "create_work_pool", "read_work_pool",
    "read_work_pools", "update_work_pool", "delete_work_pool", "create_work_queue",
    "read_work_queue", "read_work_queues", "update_work_queue", "delete_work_queue",
    "claim_flow_runs", "release_claim", "start_flow_run", "set_infrastructure_pid", "heartbeat",
    "cancel_flow_run", "finish_cancellation", "end_deployed_flow_run",
})
