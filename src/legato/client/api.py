"""The API's calls, written once (:class:`_Calls`), run by a sync (:class:`SyncApi`) or an async
(:class:`AsyncApi`) caller over a :class:`~legato.client.http.Transport`."""

from __future__ import annotations

from typing import Any

from ..states import State
from .http import Transport, _state_body


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
                {"state": _state_body(state), "new_attempt": new_attempt, "force": force},
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

