"""``@flow`` and the Flow object.

Calling a flow runs it and records the run; a flow called inside another flow is a subflow run,
linked to its parent through a task run in the parent. An async flow's call returns a coroutine.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .context import flow_run_ctx
from .engine.common import Binder
from .engine.parameters import ParameterValidator
from .tasks import _loop_running

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["flow", "Flow"]


class Flow(Generic[P, R]):
    """A function made into a flow. Create it with ``@flow``."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        description: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | list[float] | None = None,
        task_runner: Any = None,
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        log_prints: bool | None = None,
        tags: Iterable[str] | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_crashed: list[Callable[..., Any]] | None = None,
        on_cancellation: list[Callable[..., Any]] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow needs a function; got {type(fn).__name__}.")
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.description = description or inspect.getdoc(fn)
        self.version = version
        self.flow_run_name = flow_run_name
        if retries is not None and retries < 0:
            raise ValueError(f"retries must be 0 or more; got {retries}.")
        self.retries = retries or 0
        self._default_retries = retries is None  # then LEGATO_FLOW_DEFAULT_RETRIES, at run time
        self.retry_delay_seconds = retry_delay_seconds
        if isinstance(task_runner, type):
            task_runner = task_runner()
        self.task_runner = task_runner
        if timeout_seconds is not None and timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive; got {timeout_seconds}.")
        self.timeout_seconds = timeout_seconds
        self.validate_parameters = validate_parameters
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.log_prints = log_prints
        self.tags = frozenset(tags or ())
        self.on_completion = list(on_completion or ())
        self.on_failure = list(on_failure or ())
        self.on_crashed = list(on_crashed or ())
        self.on_cancellation = list(on_cancellation or ())
        self.is_async = inspect.iscoroutinefunction(fn)
        self.binder = Binder(fn)
        self._validator: Any = None
        self._options = dict(
            name=name, description=description, version=version, flow_run_name=flow_run_name,
            retries=retries, retry_delay_seconds=retry_delay_seconds, task_runner=task_runner,
            timeout_seconds=timeout_seconds, validate_parameters=validate_parameters,
            persist_result=persist_result, result_storage=result_storage,
            result_serializer=result_serializer, log_prints=log_prints, tags=tags,
            on_completion=on_completion, on_failure=on_failure, on_crashed=on_crashed,
            on_cancellation=on_cancellation,
        )
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def validator(self) -> Any:
        if self._validator is None:
            self._validator = ParameterValidator(self.fn, self.name)
        return self._validator

    def with_options(self, **changes: Any) -> Flow[P, R]:
        return Flow(self.fn, **{**self._options, **changes})

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return_state = bool(kwargs.pop("return_state", False))  # type: ignore[misc]
        # lazy: the engine (and what it loads) is ~60 ms of `from legato import flow`
        from .engine.flow_engine import FlowRunEngine, outcome

        if self.is_async:
            async def run() -> Any:
                engine = FlowRunEngine(self, args, kwargs)
                return outcome(await engine.run_async(), return_state)

            if flow_run_ctx.get() is not None and not _loop_running():
                # an async subflow called from a sync flow runs to completion (as in Prefect 2)
                import asyncio  # lazy: asyncio costs ~70 ms of `import legato`

                return asyncio.run(run())
            return run()  # type: ignore[return-value]
        engine = FlowRunEngine(self, args, kwargs)
        return outcome(engine.run_sync(), return_state)

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    # -- deployments: legato.deployments.runner (docs/deployments-prefect3.md) ------------------
    def to_deployment(self, name: str, **options: Any) -> Any:
        """A deployment of this flow (schedules, parameters, ...), recorded when served with
        ``legato.serve(...)`` or deployed to a work pool."""
        return _deployments().to_deployment(self, name, **options)

    def serve(self, name: str | None = None, **options: Any) -> None:
        """Record a deployment of this flow and run its flow runs from this process (each in a
        subprocess) until Ctrl-C or SIGTERM."""
        _deployments().serve_flow(self, name, **options)

    def deploy(self, name: str, work_pool_name: str | None = None, **options: Any) -> str:
        """Record a deployment of this flow on a work pool, for its workers; returns its id."""
        return _deployments().deploy_flow(self, name, work_pool_name, **options)

    @classmethod
    def from_source(cls, source: Any, entrypoint: str) -> Flow[Any, Any]:
        """The flow ``entrypoint`` names in ``source`` (a folder, a git URL or a storage
        block); its deployments make workers pull the code from ``source``."""
        return _deployments().flow_from_source(source, entrypoint)


def _deployments() -> Any:
    # lazy and by name: deployments sit above flows (pydantic, the store, the workers) and
    # load only when a flow is served or deployed
    return importlib.import_module("legato.deployments.runner")


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...
@overload
def flow(**kwargs: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Any = None, **kwargs: Any) -> Any:
    """Make a function a flow: ``@flow`` or ``@flow(name="GCP flow", retries=1)``."""
    if __fn is not None:
        return Flow(__fn, **kwargs)
    return lambda fn: Flow(fn, **kwargs)


# Prefect 3 users write `flow.from_source(...)` with the decorator itself
flow.from_source = Flow.from_source  # type: ignore[attr-defined]
