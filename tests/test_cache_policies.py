from __future__ import annotations

import threading
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from legato.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
)
from legato.hashing import LegatoCacheWarning, task_input_hash


def double(x: int) -> int:
    return x * 2


def triple(x: int) -> int:
    return x * 3


def ctx(fn: Any = double, flow_run_id: Any = None) -> SimpleNamespace:
    return SimpleNamespace(
        task=SimpleNamespace(fn=fn, task_key=f"{fn.__qualname__}-key", name=fn.__name__),
        task_run=SimpleNamespace(id=uuid.uuid4(), flow_run_id=flow_run_id or uuid.uuid4()),
        parameters={},
    )


def key(policy: CachePolicy, inputs: dict[str, Any], c: Any = None, params: Any = None) -> Any:
    return policy.compute_key(c or ctx(), inputs, params or {})


def test_inputs_keys_by_argument_values() -> None:
    assert key(INPUTS, {"x": 1, "y": [1, 2]}) == key(INPUTS, {"y": [1, 2], "x": 1})
    assert key(INPUTS, {"x": 1}) != key(INPUTS, {"x": 2})


def test_excluding_an_input() -> None:
    policy = INPUTS - "client"
    assert policy == Inputs(exclude={"client"})
    assert key(policy, {"x": 1, "client": object()}) == key(policy, {"x": 1, "client": object()})
    assert key(policy, {"x": 1, "client": "a"}) == key(INPUTS, {"x": 1})
    assert (INPUTS - "a" - "b").exclude == {"a", "b"}  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="INPUTS - 'client'"):
        INPUTS - 3  # type: ignore[operator]


def test_excluding_an_unhashable_input_makes_the_run_cacheable() -> None:
    class Guard:  # a type of this test's own: the warning is shown once per type per process
        def __init__(self) -> None:
            self.lock = threading.Lock()

    inputs = {"x": 1, "lock": Guard()}
    with pytest.warns(LegatoCacheWarning, match="argument 'lock'.*Guard"):
        assert key(INPUTS, inputs) is None
    assert key(INPUTS - "lock", inputs) is not None
    assert key(DEFAULT - "lock", inputs, ctx(flow_run_id="run-1")) is not None


def test_task_source_changes_with_the_code() -> None:
    assert key(TASK_SOURCE, {}, ctx(double)) == key(TASK_SOURCE, {}, ctx(double))
    assert key(TASK_SOURCE, {}, ctx(double)) != key(TASK_SOURCE, {}, ctx(triple))


def test_task_source_without_source_file_uses_bytecode() -> None:
    namespace: dict[str, Any] = {}
    exec("def made(x):\n    return x + 1\n", namespace)
    exec("def other(x):\n    return x + 2\n", namespace)
    made_key = key(TASK_SOURCE, {}, ctx(namespace["made"]))
    assert made_key is not None
    assert made_key != key(TASK_SOURCE, {}, ctx(namespace["other"]))


def test_run_id_scopes_the_cache_to_a_flow_run() -> None:
    assert key(RUN_ID, {}, ctx(flow_run_id="r1")) == "r1"
    assert key(RUN_ID, {}, ctx(flow_run_id="r1")) != key(RUN_ID, {}, ctx(flow_run_id="r2"))
    outside_flow = SimpleNamespace(task_run=SimpleNamespace(id="task-run-9", flow_run_id=None))
    assert key(RUN_ID, {}, outside_flow) == "task-run-9"


def test_flow_parameters() -> None:
    assert key(FLOW_PARAMETERS, {}, params={"a": 1}) == key(
        FLOW_PARAMETERS, {"x": 5}, params={"a": 1}
    )
    assert key(FLOW_PARAMETERS, {}, params={"a": 1}) != key(FLOW_PARAMETERS, {}, params={"a": 2})


def test_default_is_inputs_source_and_run_id() -> None:
    assert DEFAULT == CompoundCachePolicy((INPUTS, TASK_SOURCE, RUN_ID))
    same_run = ctx(flow_run_id="r1")
    k = key(DEFAULT, {"x": 1}, same_run)
    assert k is not None
    assert key(DEFAULT, {"x": 1}, ctx(flow_run_id="r1")) == k
    assert key(DEFAULT, {"x": 2}, same_run) != k
    assert key(DEFAULT, {"x": 1}, ctx(flow_run_id="r2")) != k
    assert key(DEFAULT, {"x": 1}, ctx(triple, flow_run_id="r1")) != k


def test_compound_policies() -> None:
    combined = INPUTS + TASK_SOURCE + FLOW_PARAMETERS
    assert isinstance(combined, CompoundCachePolicy)
    assert combined.policies == (INPUTS, TASK_SOURCE, FLOW_PARAMETERS)  # flattened
    c = ctx()
    assert key(combined, {"x": 1}, c, {"p": 1}) == key(combined, {"x": 1}, c, {"p": 1})
    assert key(combined, {"x": 1}, c, {"p": 1}) != key(combined, {"x": 1}, c, {"p": 2})
    # the compound's key is not any single part's key
    assert key(combined, {"x": 1}, c) != key(INPUTS, {"x": 1}, c)


def test_compound_is_none_when_a_part_is_none() -> None:
    never = CacheKeyFnPolicy(lambda ctx, inputs: None)
    assert key(INPUTS + never, {"x": 1}) is None


def test_no_cache_absorbs_everything() -> None:
    assert key(NO_CACHE, {"x": 1}) is None
    assert INPUTS + NO_CACHE is NO_CACHE
    assert NO_CACHE + DEFAULT is NO_CACHE
    assert NO_CACHE - "x" is NO_CACHE


def test_cache_key_fn_policy_uses_prefect_signature() -> None:
    seen = []

    def by_x(context: Any, arguments: dict[str, Any]) -> str:
        seen.append((context, arguments))
        return f"x={arguments['x']}"

    c = ctx()
    policy = CachePolicy.from_cache_key_fn(by_x)
    assert policy == CacheKeyFnPolicy(by_x)
    assert key(policy, {"x": 3, "y": 4}, c) == "x=3"
    assert seen == [(c, {"x": 3, "y": 4})]
    assert key(CacheKeyFnPolicy(task_input_hash), {"x": 3}, c) == task_input_hash(c, {"x": 3})


def test_excluding_from_a_compound_reaches_its_inputs_part() -> None:
    policy = DEFAULT - "client"
    c = ctx(flow_run_id="r1")
    assert key(policy, {"x": 1, "client": "a"}, c) == key(policy, {"x": 1, "client": "b"}, c)
    assert key(DEFAULT, {"x": 1, "client": "a"}, c) != key(DEFAULT, {"x": 1, "client": "b"}, c)
    assert TASK_SOURCE - "client" == TASK_SOURCE
