"""Cache policies (Prefect 3's ``cache_policy=``): what a task run's cache key is made of.

A policy turns a task run into a key; runs with equal keys share one cached result. Policies
combine with ``+`` (the key covers every part) and ``INPUTS - "name"`` leaves an argument out,
for inputs such as clients or locks that cannot or should not be hashed::

    @task(cache_policy=INPUTS + TASK_SOURCE)
    @task(cache_policy=DEFAULT - "db_client")

A key of None means "do not cache this run"; a compound policy gives None as soon as one part
does, because a key missing a part would wrongly match runs that differ in it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from .hashing import hash_inputs, stable_hash

__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "FlowParameters",
    "Inputs",
    "NoCache",
    "RunId",
    "TaskSource",
]


class CachePolicy:
    """Base class: subclasses say how a task run becomes a cache key."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        raise NotImplementedError

    @classmethod
    def from_cache_key_fn(
        cls, cache_key_fn: Callable[[Any, dict[str, Any]], str | None]
    ) -> CachePolicy:
        """The policy for a Prefect-style ``cache_key_fn(context, arguments)``."""
        return CacheKeyFnPolicy(cache_key_fn)

    def __add__(self, other: object) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(self, NoCache) or isinstance(other, NoCache):
            return NO_CACHE
        return CompoundCachePolicy((*_parts(self), *_parts(other)))

    def __sub__(self, name: object) -> CachePolicy:
        """Leave the argument ``name`` out of the key. A policy that does not look at the
        arguments is unchanged."""
        _check_name(name)
        return self


def _parts(policy: CachePolicy) -> tuple[CachePolicy, ...]:
    return policy.policies if isinstance(policy, CompoundCachePolicy) else (policy,)


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(
            f"A cache policy can exclude an argument by its name (a str), not {name!r}; "
            "write e.g. INPUTS - 'client'."
        )


@dataclasses.dataclass(frozen=True)
class CompoundCachePolicy(CachePolicy):
    """Several policies at once: the key is a hash of every part's key."""

    policies: tuple[CachePolicy, ...] = ()

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        keys = []
        for policy in self.policies:
            key = policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
            if key is None:
                return None
            keys.append(key)
        return stable_hash(keys)

    def __sub__(self, name: object) -> CachePolicy:
        _check_name(name)
        return CompoundCachePolicy(tuple(p - name for p in self.policies))


@dataclasses.dataclass(frozen=True)
class Inputs(CachePolicy):
    """The task's arguments, except those named in ``exclude``."""

    exclude: frozenset[str] = frozenset()

    def __init__(self, exclude: Iterable[str] = ()) -> None:
        object.__setattr__(self, "exclude", frozenset(exclude))

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        kept = {k: v for k, v in (inputs or {}).items() if k not in self.exclude}
        return hash_inputs(kept)

    def __sub__(self, name: object) -> CachePolicy:
        _check_name(name)
        return Inputs(self.exclude | {name})  # type: ignore[operator]


@functools.lru_cache(maxsize=1024)
def _source_key(fn: Callable[..., Any]) -> str | None:
    # Cached per function: getsource re-tokenizes the whole file, and a file edited while the
    # process runs is not reloaded anyway.
    try:
        return stable_hash(inspect.getsource(fn))
    except (OSError, TypeError):
        # No source file (a REPL, a notebook cell that is gone, a C function): fall back to
        # the bytecode, which still changes when the code does.
        code = getattr(fn, "__code__", None)
        return stable_hash(code) if code is not None else None


@dataclasses.dataclass(frozen=True)
class TaskSource(CachePolicy):
    """The task function's source code: editing the task invalidates its cache."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        fn = getattr(getattr(task_ctx, "task", None), "fn", None)
        if fn is None:
            return None
        try:
            return _source_key(fn)
        except TypeError:  # an unhashable callable object: lru_cache cannot key on it
            return _source_key.__wrapped__(fn)


@dataclasses.dataclass(frozen=True)
class RunId(CachePolicy):
    """The flow run's id: results are reused within one flow run only (e.g. across retries).

    A task run outside any flow uses its own id."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        task_run = getattr(task_ctx, "task_run", None)
        run_id = getattr(task_run, "flow_run_id", None) or getattr(task_run, "id", None)
        return None if run_id is None else str(run_id)


@dataclasses.dataclass(frozen=True)
class FlowParameters(CachePolicy):
    """The parameters of the flow run the task runs in."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return hash_inputs(flow_parameters or {})


@dataclasses.dataclass(frozen=True)
class NoCache(CachePolicy):
    """Never cache. Adding it to any policy gives NO_CACHE again."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return None


@dataclasses.dataclass(frozen=True)
class CacheKeyFnPolicy(CachePolicy):
    """A Prefect ``cache_key_fn(context, arguments) -> str | None`` as a policy."""

    cache_key_fn: Callable[[Any, dict[str, Any]], str | None]

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        key = self.cache_key_fn(task_ctx, inputs)
        return None if key is None else str(key)


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
NO_CACHE = NoCache()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID
