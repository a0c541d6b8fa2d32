"""Flow parameters: binding, coercion from type hints, clear errors, what the history stores."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import BaseModel

from legato import flow, task
from legato.exceptions import ParameterBindError, ParameterError, ParameterTypeError
from legato.states import StateType


class BucketConfig(BaseModel):
    bucket: str
    retries: int = 1


def test_parameters_are_coerced_from_type_hints(history, h):
    seen = {}

    @flow
    def etl(year: int, month: int = 1, ratio: float = 0.5, day: dt.date | None = None):
        seen.update(year=year, month=month, ratio=ratio, day=day)
        return year + month

    assert etl("2021", month="3", ratio="0.25", day="2021-03-04") == 2024
    assert seen == {"year": 2021, "month": 3, "ratio": 0.25, "day": dt.date(2021, 3, 4)}
    assert type(seen["year"]) is int
    fr = h.only_flow_run()
    assert fr.parameters == {"year": 2021, "month": 3, "ratio": 0.25, "day": "2021-03-04"}
    assert fr.state_name == "Completed"


def test_defaults_are_recorded(history, h):
    @flow
    def f(a: int, b: str = "x"):
        return a

    f(1)
    assert h.only_flow_run().parameters == {"a": 1, "b": "x"}


def test_bad_parameter_is_refused_naming_it_and_recorded_failed(history, h):
    ran = []

    @flow
    def etl(year: int, color: str = "red"):
        ran.append(year)

    with pytest.raises(ParameterTypeError) as info:
        etl("not-a-year")
    msg = str(info.value)
    assert "'year'" in msg
    assert "not-a-year" in msg
    assert "color" not in msg
    assert ran == []  # the function never ran
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED
    assert "year" in fr.state_message
    assert fr.state_message == msg
    # no half-written run: a name, the raw parameters, a full state history
    assert fr.name
    assert fr.parameters == {"year": "not-a-year", "color": "red"} or fr.parameters == {
        "year": "not-a-year"
    }
    assert h.flow_states(fr.id)[0] == "Pending"
    assert h.flow_states(fr.id)[-1] == "Failed"
    assert fr.end_time is not None


def test_bad_parameter_with_return_state(history, h):
    @flow
    def f(n: int):
        return n

    state = f("x", return_state=True)
    assert state.is_failed()
    assert "'n'" in state.message
    with pytest.raises(ParameterTypeError):
        state.result()


def test_nested_bad_parameter_names_the_path(history):
    @flow
    def f(items: list[int]):
        return items

    assert f(["1", 2]) == [1, 2]
    with pytest.raises(ParameterTypeError, match=r"items"):
        f([1, "two"])


def test_unknown_argument_is_a_bind_error(history, h):
    @flow
    def f(a: int):
        return a

    with pytest.raises(ParameterBindError) as info:
        f(1, b=2)
    assert "b" in str(info.value)
    assert "a" in str(info.value)
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED


def test_missing_argument_is_a_bind_error(history, h):
    @flow
    def f(a: int, b: int):
        return a + b

    with pytest.raises(ParameterBindError, match="b"):
        f(1)
    assert h.only_flow_run().state_type is StateType.FAILED


def test_bind_errors_are_parameter_errors_and_type_errors():
    assert issubclass(ParameterBindError, ParameterError)
    assert issubclass(ParameterBindError, TypeError)
    assert issubclass(ParameterTypeError, TypeError)


def test_validate_parameters_false_skips_coercion(history, h):
    seen = []

    @flow(validate_parameters=False)
    def f(year: int):
        seen.append(year)
        return year

    assert f("2021") == "2021"
    assert seen == ["2021"]
    assert h.only_flow_run().parameters == {"year": "2021"}


def test_parameters_without_hints_are_passed_unchanged(history):
    obj = object()

    @flow
    def f(x, y=None):
        return x, y

    assert f(obj) == (obj, None)


def test_keyword_only_varargs_and_kwargs(history, h):
    @flow
    def f(a: int, *rest, scale: int = 1, **extra):
        return (a + sum(rest)) * scale, extra

    assert f("1", 2, 3, scale="2", tag="x") == (12, {"tag": "x"})
    fr = h.only_flow_run()
    assert fr.parameters["a"] == 1 and fr.parameters["scale"] == 2


def test_reserved_pydantic_names_work(history):
    @flow
    def f(model_name: str, _private: int = 0):
        return model_name, _private

    assert f("m", _private="3") == ("m", 3)


def test_odd_parameter_values_are_summarised_not_fatal(history, h):
    class Thing:
        pass

    @flow
    def f(thing, path: Path, big: list):
        return 1

    assert f(Thing(), "/tmp/x", list(range(5000))) == 1
    params = h.only_flow_run().parameters
    assert params["path"] == "/tmp/x"
    assert "Thing" in str(params["thing"])
    assert isinstance(params["big"], str)  # summarised


def test_task_parameters_bind_errors(history):
    @task
    def t(a, b):
        return a + b

    @flow
    def f():
        return t(1, c=3)

    with pytest.raises(ParameterBindError, match="'t'"):
        f()


def test_task_parameters_bind_keywords_and_defaults(history):
    @task
    def t(a, b=10, *, c=100):
        return a + b + c

    @flow
    def f():
        return t(1), t(1, 2), t(a=1, c=0), t.submit(1, b=1, c=1).result()

    assert f() == (111, 103, 11, 3)


def test_pydantic_model_parameter_from_a_dict(history, h):
    @flow
    def f(cfg: BucketConfig):
        return type(cfg).__name__, cfg.bucket, cfg.retries

    assert f({"bucket": "b", "retries": "3"}) == ("BucketConfig", "b", 3)
    assert h.only_flow_run().parameters == {"cfg": {"bucket": "b", "retries": 3}}
    with pytest.raises(ParameterTypeError, match="cfg"):
        f({"retries": 2})


def test_one_unresolvable_annotation_does_not_disable_the_others(history):
    class Local:  # a local class named in a string annotation cannot be resolved
        pass

    @flow
    def f(year: int, thing: Local = None):
        return year

    assert f("2021") == 2021
    with pytest.raises(ParameterTypeError, match="year"):
        f("x")
