"""``@task`` and the Task object: call it, ``.submit()`` it, ``.map()`` it.

Inside a flow run, calling a task creates a task run (recorded in the history, with retries,
caching and timeouts). Outside any flow run a task call is a plain function call, as in Prefect 2:
nothing is recorded, no retries apply.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .context import flow_run_ctx
from .engine.common import Binder, exponential_backoff
from .exceptions import MappingError, MissingContextError
from .futures import LegatoFuture, LegatoFutureList
from .settings import get_settings, settings_loaded
from .utilities.annotations import unmapped

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["task", "Task", "task_input_hash", "exponential_backoff"]


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Cache key from the task and its inputs (see legato.hashing for what is hashed)."""
    from .hashing import task_input_hash as _impl  # lazy: only tasks that cache load hashing

    return _impl(context, arguments)


class Task(Generic[P, R]):
    """A function made into a task. Create it with ``@task``."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        retries: int | None = None,
        retry_delay_seconds: Any = None,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[..., bool] | None = None,
        timeout_seconds: float | None = None,
        cache_key_fn: Callable[..., str | None] | None = None,
        cache_policy: Any = None,
        cache_expiration: dt.timedelta | None = None,
        refresh_cache: bool | None = None,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        log_prints: bool | None = None,
        task_run_name: str | Callable[[], str] | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        cache_result_in_memory: bool = True,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task needs a function; got {type(fn).__name__}.")
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description or inspect.getdoc(fn)
        self.tags = frozenset(tags or ())
        self.version = version
        self.is_async = inspect.iscoroutinefunction(fn)
        self.task_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', self.name)}"
        # retries=None: LEGATO_TASK_DEFAULT_RETRIES, read now if the settings are loaded, else on
        # the first run (importing a module of tasks does not load the settings)
        self._default_retries = retries is None
        if retries is None:
            retries = get_settings().task_default_retries if settings_loaded() else 0
            self._default_retries = not settings_loaded()
        if retries < 0:
            raise ValueError(f"retries must be 0 or more; got {retries}.")
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        if retry_jitter_factor is not None and retry_jitter_factor < 0:
            raise ValueError(f"retry_jitter_factor must be 0 or more; got {retry_jitter_factor}.")
        self.retry_jitter_factor = retry_jitter_factor
        self.retry_condition_fn = retry_condition_fn
        if timeout_seconds is not None and timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive; got {timeout_seconds}.")
        self.timeout_seconds = timeout_seconds
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = bool(refresh_cache)
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.log_prints = log_prints
        self.task_run_name = task_run_name
        self.on_completion = list(on_completion or ())
        self.on_failure = list(on_failure or ())
        self.cache_policy = _resolve_cache_policy(cache_policy, cache_key_fn)
        self.binder = Binder(fn)
        self.policy = {"retries": retries} if retries else {}
        self._options = dict(
            name=name, description=description, tags=tags, version=version,
            retries=None if self._default_retries else retries,
            retry_delay_seconds=retry_delay_seconds, retry_jitter_factor=retry_jitter_factor,
            retry_condition_fn=retry_condition_fn, timeout_seconds=timeout_seconds,
            cache_key_fn=cache_key_fn, cache_policy=cache_policy,
            cache_expiration=cache_expiration, refresh_cache=refresh_cache,
            persist_result=persist_result, result_storage=result_storage,
            result_serializer=result_serializer, log_prints=log_prints,
            task_run_name=task_run_name, on_completion=on_completion, on_failure=on_failure,
        )
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def resolve_default_retries(self, settings: Any) -> None:
        """Apply LEGATO_TASK_DEFAULT_RETRIES to a task decorated before the settings loaded."""
        retries = settings.task_default_retries
        self.retries = retries
        self.policy = {"retries": retries} if retries else {}
        self._options["retries"] = retries
        self._default_retries = False

    def should_persist(self, settings: Any, caching: bool) -> bool:
        if self.persist_result is not None:
            return self.persist_result
        return bool(caching or self.result_storage is not None
                    or self.result_serializer is not None
                    or settings.results_persist_by_default)

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options changed."""
        return Task(self.fn, **{**self._options, **changes})

    def on_completion_hook(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.on_completion.append(fn)
        return fn

    def on_failure_hook(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.on_failure.append(fn)
        return fn

    # -- calling ---------------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fctx = flow_run_ctx.get()
        if fctx is None:
            return self.fn(*args, **kwargs)  # outside a flow: a plain call (Prefect 2 behaviour)
        return_state = kwargs.pop("return_state", False)  # type: ignore[misc]
        wait_for = kwargs.pop("wait_for", None)  # type: ignore[misc]
        params = self.binder.bind(args, kwargs, f"Task {self.name!r}")
        from .engine.task_engine import TaskRunEngine  # lazy: the engine is ~60 ms of start-up

        engine = TaskRunEngine(self, fctx, params, wait_for)
        if self.is_async:
            if _loop_running():
                return _async_call(engine, return_state)  # type: ignore[return-value]
            import asyncio  # lazy: asyncio costs ~70 ms of `import legato`

            state = asyncio.run(engine.run_async())  # an async task called from a sync flow
        else:
            state = engine.run_sync()
        if return_state:
            return state  # type: ignore[return-value]
        return state.result()

    def submit(self, *args: Any, return_state: bool = False, wait_for: Any = None,
               **kwargs: Any) -> LegatoFuture:
        """Run the task on the flow's task runner; returns a future at once."""
        fctx = self._require_flow("submit")
        params = self.binder.bind(args, kwargs, f"Task {self.name!r}")
        return self._submit(fctx, params, wait_for)

    def _submit(self, fctx: Any, params: dict[str, Any], wait_for: Any) -> LegatoFuture:
        from .engine.task_engine import TaskRunEngine  # lazy: the engine is ~60 ms of start-up

        engine = TaskRunEngine(self, fctx, params, wait_for)
        fut = LegatoFuture(engine.info.id, engine.info.name,
                           fctx.task_runner.submit(engine.run_in_worker))
        fctx.futures.append(fut)
        return fut

    def map(self, *args: Any, wait_for: Any = None, return_state: bool = False,
            **kwargs: Any) -> LegatoFutureList:
        """Submit one task run per element of the iterable arguments (``unmapped`` ones are
        passed whole to every run). All iterables must have the same length."""
        fctx = self._require_flow("map")
        params = self.binder.bind(args, kwargs, f"Task {self.name!r}")
        iterables: dict[str, list[Any]] = {}
        static: dict[str, Any] = {}
        for name, value in params.items():
            if isinstance(value, unmapped):
                static[name] = value.value
            elif isinstance(value, LegatoFuture):
                iterables[name] = list(value.result())
            elif isinstance(value, (str, bytes, dict)) or not _is_iterable(value):
                static[name] = value
            else:
                iterables[name] = list(value)
        if not iterables:
            raise MappingError(
                f"Task {self.name!r}.map() got no iterable argument to map over. Pass a list "
                "(or other iterable) for at least one parameter; wrap values meant for every "
                "run in unmapped(...)."
            )
        lengths = {k: len(v) for k, v in iterables.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
            raise MappingError(
                f"Task {self.name!r}.map() got iterables of different lengths ({detail}). Give "
                "them equal lengths, or wrap the ones meant for every run in unmapped(...)."
            )
        n = next(iter(lengths.values()))
        futures = LegatoFutureList()
        names = list(iterables)
        columns = [iterables[k] for k in names]
        for i in range(n):
            call = dict(static)
            for k, col in zip(names, columns, strict=True):
                call[k] = col[i]
            futures.append(self._submit(fctx, {k: call[k] for k in params}, wait_for))
        return futures

    def _require_flow(self, what: str) -> Any:
        fctx = flow_run_ctx.get()
        if fctx is None:
            raise MissingContextError(
                f"Task {self.name!r}.{what}() was called outside a flow run. Call it inside a "
                f"@flow function (or call the task directly for a plain function call)."
            )
        return fctx

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"


async def _async_call(engine: Any, return_state: bool) -> Any:
    state = await engine.run_async()
    return state if return_state else state.result()


def _loop_running() -> bool:
    import asyncio  # lazy: asyncio costs ~70 ms of `import legato`

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _is_iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _resolve_cache_policy(cache_policy: Any, cache_key_fn: Any) -> Any:
    if cache_key_fn is not None:
        # lazy: the cache modules (hashing, ~25 ms) load only for tasks that cache
        from .cache_policies import CacheKeyFnPolicy

        return CacheKeyFnPolicy(cache_key_fn)
    if cache_policy is None:
        return None
    from .cache_policies import NoCache  # lazy, as above

    if isinstance(cache_policy, NoCache):
        return None
    return cache_policy


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...
@overload
def task(**kwargs: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Any = None, **kwargs: Any) -> Any:
    """Make a function a task: ``@task`` or ``@task(retries=3, cache_key_fn=task_input_hash)``."""
    if __fn is not None:
        return Task(__fn, **kwargs)
    return lambda fn: Task(fn, **kwargs)
