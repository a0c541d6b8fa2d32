"""The API's calls, written once (:class:`_Calls`), run by a sync (:class:`SyncApi`) or an async
(:class:`AsyncApi`) caller over a :class:`~legato.client.transport.Transport`."""

from __future__ import annotations

from typing import Any

from ..states import State
from .transport import Transport, state_body


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _model(name: str) -> Any:
    from .. import schemas

    return getattr(schemas, name)


def _filter_body(flt: Any) -> Any:
    return flt.model_dump(mode="json", exclude_none=True) if flt is not None else {}


def _json(response: Any) -> Any:
    return response.json()


def _none(response: Any) -> None:
    return None


def _pool_query(pool_name: str | None) -> str:
    return f"?work_pool_name={_quote(pool_name)}" if pool_name else ""


class _Calls:
    """Each method returns (method, path, body, parse) for one API call."""

    @staticmethod
    def read_flow_runs(flt: Any = None) -> tuple:
        return ("POST", "/flow_runs/filter", _filter_body(flt),
                lambda r: [_model("FlowRun").model_validate(x) for x in r.json()])

    @staticmethod
    def count_flow_runs(flt: Any = None) -> tuple:
        return ("POST", "/flow_runs/count", _filter_body(flt), lambda r: r.json()["count"])

    @staticmethod
    def read_flow_run(run_id: str) -> tuple:
        return ("GET", f"/flow_runs/{_quote(run_id)}", None,
                lambda r: _model("FlowRun").model_validate(r.json()))

    @staticmethod
    def read_task_runs(flt: Any = None) -> tuple:
        return ("POST", "/task_runs/filter", _filter_body(flt),
                lambda r: [_model("TaskRun").model_validate(x) for x in r.json()])

    @staticmethod
    def read_task_run(run_id: str) -> tuple:
        return ("GET", f"/task_runs/{_quote(run_id)}", None,
                lambda r: _model("TaskRun").model_validate(r.json()))

    @staticmethod
    def read_flow_run_states(run_id: str) -> tuple:
        return ("GET", f"/flow_runs/{_quote(run_id)}/states", None,
                lambda r: [_model("StateRecord").model_validate(x) for x in r.json()])

    @staticmethod
    def read_task_run_states(run_id: str) -> tuple:
        return ("GET", f"/task_runs/{_quote(run_id)}/states", None,
                lambda r: [_model("StateRecord").model_validate(x) for x in r.json()])

    @staticmethod
    def read_logs(*, flow_run_id: str | None = None, task_run_id: str | None = None,
                  min_level: int = 0, limit: int | None = None,
                  include_task_logs: bool = True) -> tuple:
        body: dict[str, Any] = {"min_level": min_level, "include_task_logs": include_task_logs,
                                "limit": limit or 100_000}
        if flow_run_id is not None:
            body["flow_run_id"] = flow_run_id
        if task_run_id is not None:
            body["task_run_id"] = task_run_id
        return ("POST", "/logs/filter", body,
                lambda r: [_model("LogRecord").model_validate(x) for x in r.json()])

    @staticmethod
    def set_flow_run_state(run_id: str, state: State, *, new_attempt: bool = False,
                           force: bool = False) -> tuple:
        return ("POST", f"/flow_runs/{run_id}/set_state",
                {"state": state_body(state), "new_attempt": new_attempt, "force": force},
                lambda r: r.json())

    @staticmethod
    def delete_flow_run(run_id: str) -> tuple:
        return ("DELETE", f"/flow_runs/{run_id}", None, lambda r: None)

    @staticmethod
    def create_concurrency_limit(tag: str, limit: int) -> tuple:
        return ("POST", "/concurrency_limits/", {"tag": tag, "concurrency_limit": limit},
                lambda r: r.json())

    @staticmethod
    def read_concurrency_limit(tag: str) -> tuple:
        return ("GET", f"/concurrency_limits/tag/{_quote(tag)}", None, lambda r: r.json())

    @staticmethod
    def read_concurrency_limits() -> tuple:
        return ("POST", "/concurrency_limits/filter", {"limit": 10_000}, lambda r: r.json())

    @staticmethod
    def reset_concurrency_limit(tag: str) -> tuple:
        return ("POST", f"/concurrency_limits/tag/{_quote(tag)}/reset", None, lambda r: r.json())

    @staticmethod
    def delete_concurrency_limit(tag: str) -> tuple:
        return ("DELETE", f"/concurrency_limits/tag/{_quote(tag)}", None, lambda r: None)

    # blocks
    @staticmethod
    def register_block_type(block_type: dict[str, Any], block_schema: dict[str, Any]) -> tuple:
        return ("POST", "/block_types/", {"block_type": block_type, "block_schema": block_schema},
                _json)

    @staticmethod
    def read_block_types() -> tuple:
        return ("POST", "/block_types/filter", {}, _json)

    @staticmethod
    def read_block_type(slug: str) -> tuple:
        return ("GET", f"/block_types/slug/{_quote(slug)}", None, _json)

    @staticmethod
    def read_block_schemas(slug: str | None = None) -> tuple:
        return ("POST", "/block_schemas/filter", {"block_type_slug": slug}, _json)

    @staticmethod
    def delete_block_type(slug: str) -> tuple:
        return ("DELETE", f"/block_types/slug/{_quote(slug)}", None, _none)

    @staticmethod
    def save_block_document(doc: dict[str, Any], overwrite: bool = False) -> tuple:
        return ("POST", f"/block_documents/?overwrite={str(overwrite).lower()}", doc, _json)

    @staticmethod
    def read_block_document(slug: str, name: str, include_secrets: bool = False) -> tuple:
        return ("GET", f"/block_types/slug/{_quote(slug)}/block_documents/name/{_quote(name)}"
                f"?include_secrets={str(include_secrets).lower()}", None, _json)

    @staticmethod
    def read_block_document_by_id(doc_id: str, include_secrets: bool = False) -> tuple:
        return ("GET", f"/block_documents/{_quote(doc_id)}"
                f"?include_secrets={str(include_secrets).lower()}", None, _json)

    @staticmethod
    def read_block_documents(slug: str | None = None, *, name_like: str | None = None,
                             include_secrets: bool = False, limit: int = 200, offset: int = 0
                             ) -> tuple:
        body = {"block_type_slug": slug, "name_like": name_like,
                "include_secrets": include_secrets, "limit": limit, "offset": offset}
        return ("POST", "/block_documents/filter", body, _json)

    @staticmethod
    def delete_block_document(slug: str, name: str) -> tuple:
        return ("DELETE", f"/block_types/slug/{_quote(slug)}/block_documents/name/"
                f"{_quote(name)}", None, _none)

    @staticmethod
    def delete_block_document_by_id(doc_id: str) -> tuple:
        return ("DELETE", f"/block_documents/{_quote(doc_id)}", None, _none)

    # deployments, work pools and queues, workers' calls
    @staticmethod
    def apply_deployment(spec: dict[str, Any]) -> tuple:
        return ("POST", "/deployments/", spec, _json)

    @staticmethod
    def read_deployment(deployment_id: str) -> tuple:
        return ("GET", f"/deployments/{_quote(deployment_id)}", None, _json)

    @staticmethod
    def read_deployment_by_name(address: str) -> tuple:
        flow_name, _, name = address.partition("/")
        return ("GET", f"/deployments/name/{_quote(flow_name)}/{_quote(name)}", None, _json)

    @staticmethod
    def read_deployments(flow_name: str | None = None, limit: int = 200, offset: int = 0
                         ) -> tuple:
        return ("POST", "/deployments/filter",
                {"flow_name": flow_name, "limit": limit, "offset": offset}, _json)

    @staticmethod
    def delete_deployment(deployment_id: str) -> tuple:
        return ("DELETE", f"/deployments/{_quote(deployment_id)}", None, _none)

    @staticmethod
    def set_schedules_active(deployment_id: str, active: bool, schedule_id: str | None = None
                             ) -> tuple:
        return ("POST", f"/deployments/{_quote(deployment_id)}/schedules/active",
                {"active": active, "schedule_id": schedule_id}, _json)

    @staticmethod
    def replace_schedules(deployment_id: str, schedules: list[dict[str, Any]]) -> tuple:
        return ("PUT", f"/deployments/{_quote(deployment_id)}/schedules",
                schedules, _json)

    @staticmethod
    def create_flow_run_from_deployment(deployment_id: str, **body: Any) -> tuple:
        return ("POST", f"/deployments/{_quote(deployment_id)}/create_flow_run",
                {k: v for k, v in body.items() if v is not None}, _json)

    @staticmethod
    def backfill(deployment_id: str, start: Any, end: Any) -> tuple:
        return ("POST", f"/deployments/{_quote(deployment_id)}/backfill",
                {"start": start, "end": end}, _json)

    @staticmethod
    def create_work_pool(name: str, type: str = "process", **fields: Any) -> tuple:
        return ("POST", "/work_pools/", {"name": name, "type": type, **fields}, _json)

    @staticmethod
    def read_work_pool(name: str) -> tuple:
        return ("GET", f"/work_pools/{_quote(name)}", None, _json)

    @staticmethod
    def read_work_pools() -> tuple:
        return ("POST", "/work_pools/filter", {}, _json)

    @staticmethod
    def update_work_pool(name: str, **fields: Any) -> tuple:
        return ("PATCH", f"/work_pools/{_quote(name)}", fields, _json)

    @staticmethod
    def delete_work_pool(name: str) -> tuple:
        return ("DELETE", f"/work_pools/{_quote(name)}", None, _none)

    @staticmethod
    def create_work_queue(name: str, pool_name: str | None = None, **fields: Any) -> tuple:
        return ("POST", "/work_queues/",
                {"name": name, "work_pool_name": pool_name, **fields}, _json)

    @staticmethod
    def read_work_queue(name: str, pool_name: str | None = None) -> tuple:
        return ("GET", f"/work_queues/name/{_quote(name)}{_pool_query(pool_name)}", None, _json)

    @staticmethod
    def read_work_queues(pool_name: str | None = None) -> tuple:
        return ("POST", "/work_queues/filter", {"work_pool_name": pool_name}, _json)

    @staticmethod
    def update_work_queue(name: str, pool_name: str | None = None, **fields: Any) -> tuple:
        return ("PATCH", f"/work_queues/name/{_quote(name)}{_pool_query(pool_name)}",
                fields, _json)

    @staticmethod
    def delete_work_queue(name: str, pool_name: str | None = None) -> tuple:
        return ("DELETE", f"/work_queues/name/{_quote(name)}{_pool_query(pool_name)}", None,
                _none)

    @staticmethod
    def claim_flow_runs(worker_name: str, *, pool_name: str | None = None,
                        queue_names: list[str] | None = None, limit: int = 10,
                        lease_seconds: float = 30.0, wait_seconds: float = 0.0) -> tuple:
        return ("POST", "/work_pools/claim", {
            "worker_name": worker_name, "work_pool_name": pool_name, "queue_names": queue_names,
            "limit": limit, "lease_seconds": lease_seconds, "wait_seconds": wait_seconds}, _json)

    @staticmethod
    def release_claim(run_id: str, claim_token: int | None) -> tuple:
        return ("POST", f"/flow_runs/{_quote(run_id)}/release", {"claim_token": claim_token},
                _json)

    @staticmethod
    def start_flow_run(run_id: str, claim_token: int | None) -> tuple:
        return ("POST", f"/flow_runs/{_quote(run_id)}/start", {"claim_token": claim_token},
                _json)

    @staticmethod
    def set_infrastructure_pid(run_id: str, claim_token: int | None, pid: str) -> tuple:
        return ("POST", f"/flow_runs/{_quote(run_id)}/infrastructure_pid",
                {"claim_token": claim_token, "pid": pid}, _none)

    @staticmethod
    def heartbeat(run_id: str) -> tuple:
        return ("POST", f"/flow_runs/{_quote(run_id)}/heartbeat", {},
                lambda r: r.json()["state_type"])

    @staticmethod
    def cancel_flow_run(run_id: str) -> tuple:
        return ("POST", f"/flow_runs/{_quote(run_id)}/cancel", {}, _json)

    @staticmethod
    def end_deployed_flow_run(run_id: str, state_type: str, message: str,
                              claim_token: int | None = None) -> tuple:
        return ("POST", f"/flow_runs/{_quote(run_id)}/end",
                {"state_type": state_type, "message": message, "claim_token": claim_token},
                _json)

    @staticmethod
    def finish_cancellation(run_id: str) -> tuple:
        return ("POST", f"/flow_runs/{_quote(run_id)}/cancelled", {}, _none)

    @staticmethod
    def health() -> tuple:
        return ("GET", "/health", None, lambda r: r.json())

    @staticmethod
    def version() -> tuple:
        return ("GET", "/version", None, lambda r: r.json())


CALLS = [n for n in vars(_Calls) if not n.startswith("_")]


def _builder(name: str) -> Any:
    build = getattr(_Calls, name, None)
    if build is None or name.startswith("_"):
        raise AttributeError(name)
    return build


class SyncApi:
    """The API's calls, synchronously: ``api.read_flow_runs(FlowRunFilter(...))``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __getattr__(self, name: str) -> Any:
        build = _builder(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            method, path, body, parse = build(*args, **kwargs)
            return parse(self._t.request(method, path, body))

        return call

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> SyncApi:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncApi:
    """The same calls for async code: ``async with get_client() as c: await c.read_flow_runs()``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __getattr__(self, name: str) -> Any:
        build = _builder(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            method, path, body, parse = build(*args, **kwargs)
            return parse(await self._t.arequest(method, path, body))

        return call

    async def __aenter__(self) -> AsyncApi:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._t.aclose()
        self._t.close()

