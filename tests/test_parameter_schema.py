"""A flow's parameter schema, checking run parameters against it, and the CLI's --param.

The schema is what a deployment stores and the UI renders; validate_parameters is what the API
and CLI run before a run is queued (no flow code); values it accepts must then run the flow.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import Annotated, Any, Literal, Optional, Union

import pytest
from pydantic import BaseModel, Field

from legato import flow
from legato.engine.parameters import jsonable_parameters
from legato.exceptions import ParameterError, ParameterTypeError
from legato.utilities.parameter_schema import (
    parameter_schema,
    parse_param_options,
    validate_parameters,
)


@flow(name="Parent GCP flow")
def gather_flow(color: str, year: int, months: list[int]) -> None:
    """The seed's parent flow (same signature)."""


class Color(enum.Enum):
    yellow = "yellow"
    green = "green"


class BucketConfig(BaseModel):
    bucket: str
    retries: int = 1


class Opaque:
    """A class pydantic cannot describe."""


def problems(schema: dict[str, Any], params: dict[str, Any]) -> str:
    with pytest.raises(ParameterTypeError) as info:
        validate_parameters(schema, params)
    return str(info.value)


# --- the schema ------------------------------------------------------------------------------


def test_seed_gather_flow_schema():
    assert parameter_schema(gather_flow) == {
        "title": "Parameters",
        "type": "object",
        "properties": {
            "color": {"title": "color", "position": 0, "type": "string"},
            "year": {"title": "year", "position": 1, "type": "integer"},
            "months": {"title": "months", "position": 2, "type": "array",
                       "items": {"type": "integer"}},
        },
        "required": ["color", "year", "months"],
        "additionalProperties": False,
        "definitions": {},
    }


def test_plain_function_works_too_and_defaults_are_included():
    def etl(color: str = "yellow", year: int = 2021, ratio: float = 0.5, dry: bool = False,
            tags: list[str] | None = None, extra: dict[str, Any] = {}):  # noqa: B006
        pass

    schema = parameter_schema(etl)
    props = schema["properties"]
    assert schema["required"] == []
    assert {k: p["default"] for k, p in props.items()} == {
        "color": "yellow", "year": 2021, "ratio": 0.5, "dry": False, "tags": None, "extra": {}}
    assert props["ratio"]["type"] == "number" and props["dry"]["type"] == "boolean"
    assert props["tags"]["anyOf"] == [{"type": "array", "items": {"type": "string"}},
                                      {"type": "null"}]
    assert props["extra"]["type"] == "object"


def test_literal_enum_dates_and_models():
    @flow
    def f(mode: Literal["fast", "slow"], color: Color = Color.green,
          day: dt.date = dt.date(2021, 3, 4), when: dt.datetime | None = None,
          config: BucketConfig = BucketConfig(bucket="b"), other: BucketConfig | None = None,
          n: int | str = 1):
        pass

    schema = parameter_schema(f)
    props = schema["properties"]
    assert props["mode"]["enum"] == ["fast", "slow"]
    assert props["color"]["$ref"] == "#/definitions/Color"
    assert props["color"]["default"] == "green"
    assert schema["definitions"]["Color"]["enum"] == ["yellow", "green"]
    assert props["day"] == {"title": "day", "position": 2, "type": "string", "format": "date",
                            "default": "2021-03-04"}
    assert {"type": "string", "format": "date-time"} in props["when"]["anyOf"]
    # one definition shared by both parameters of that model
    assert props["config"]["$ref"] == "#/definitions/BucketConfig"
    assert {"$ref": "#/definitions/BucketConfig"} in props["other"]["anyOf"]
    assert props["config"]["default"] == {"bucket": "b", "retries": 1}
    assert schema["definitions"]["BucketConfig"]["required"] == ["bucket"]
    assert props["n"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]


def test_unannotated_and_undescribable_parameters_take_any_value():
    marker = Opaque()

    @flow
    def f(a, b: Opaque = marker, c=object(), d: Any = 3):
        pass

    props = parameter_schema(f)["properties"]
    assert props["a"] == {"title": "a", "position": 0}
    assert props["b"] == {"title": "b", "position": 1}  # no default: it is not JSON
    assert props["c"] == {"title": "c", "position": 2}
    assert props["d"] == {"title": "d", "position": 3, "default": 3}
    validate_parameters(parameter_schema(f), {"a": [1, {"x": None}], "b": "anything"})


def test_var_args_and_kwargs_are_the_args_and_kwargs_properties():
    @flow
    def f(x: int, *args: int, flag: bool = True, **kwargs: str):
        return x, args, flag, kwargs

    schema = parameter_schema(f)
    props = schema["properties"]
    assert props["args"] == {"title": "args", "position": 1, "type": "array",
                             "items": {"type": "integer"}}
    assert props["kwargs"] == {"title": "kwargs", "position": 3, "type": "object",
                               "additionalProperties": {"type": "string"}}
    assert schema["required"] == ["x"]
    # the parameters a run records for such a call fit the schema
    recorded = jsonable_parameters(f.binder.bind((1, 2, 3), {"flag": False, "k": "v"}, "f"))
    assert recorded == {"x": 1, "args": [2, 3], "flag": False, "kwargs": {"k": "v"}}
    validate_parameters(schema, recorded)
    assert "Parameter 'kwargs.k' must be a string (got 1)" in problems(
        schema, {"x": 1, "kwargs": {"k": 1}})
    assert "Unknown parameter 'k'" in problems(schema, {"x": 1, "k": "v"})


def test_annotated_constraints_and_docstring_descriptions():
    def f(year: Annotated[int, Field(ge=2009, description="Trip year")],
          color: str = "yellow", months: list[int] = [1]):  # noqa: B006
        """Gather taxi trips.

        Args:
            year: ignored, the Field description wins
            color (str): Taxi colour: yellow
                or green.
            months: Months to fetch.

        Returns:
            nothing
        """

    props = parameter_schema(f)["properties"]
    assert props["year"]["minimum"] == 2009
    assert props["year"]["description"] == "Trip year"
    assert props["color"]["description"] == "Taxi colour: yellow or green."
    assert props["months"]["description"] == "Months to fetch."
    assert "Parameter 'year': 2001 is less than the minimum of 2009" in problems(
        parameter_schema(f), {"year": 2001})


def test_numpy_style_docstring():
    def f(color: str, year: int):
        """Gather.

        Parameters
        ----------
        color : str
            Taxi colour.
        year : int
            Trip year.
        """

    props = parameter_schema(f)["properties"]
    assert props["color"]["description"] == "Taxi colour."
    assert props["year"]["description"] == "Trip year."


def test_reserved_pydantic_names_and_unresolvable_hints():
    def g():
        class Local(BaseModel):
            a: int

        def f(model_name: str, _private: int = 1, local: Local | None = None,
              later: NotDefinedAnywhere = None):  # noqa: F821
            pass

        return f

    props = parameter_schema(g())["properties"]
    assert props["model_name"]["type"] == "string"
    assert props["_private"]["type"] == "integer"
    assert props["later"] == {"title": "later", "position": 3, "default": None}


def test_schema_is_plain_json():
    @flow
    def f(when: dt.datetime = dt.datetime(2021, 1, 1, 12), color: Color = Color.yellow,
          config: BucketConfig = BucketConfig(bucket="b"), pair: tuple[int, str] = (1, "a"),
          nan: float = float("nan")):
        pass

    schema = parameter_schema(f)
    assert json.loads(json.dumps(schema, allow_nan=False)) == schema
    assert schema["properties"]["when"]["default"] == "2021-01-01T12:00:00"
    assert schema["properties"]["pair"]["default"] == [1, "a"]
    assert "default" not in schema["properties"]["nan"]


def test_typing_optional_and_union_as_ported_prefect_code_writes_them():
    def old_style(a: Optional[int] = None, b: Union[int, str] = 1):  # noqa: UP007, UP045
        pass

    def new_style(a: int | None = None, b: int | str = 1):
        pass

    assert parameter_schema(old_style) == parameter_schema(new_style)


def test_not_a_function():
    with pytest.raises(ParameterError, match="needs a flow or a function; got int"):
        parameter_schema(3)


# --- validating ------------------------------------------------------------------------------


def test_valid_parameters_pass():
    schema = parameter_schema(gather_flow)
    validate_parameters(schema, {"color": "yellow", "year": 2021, "months": [1, 2]})
    validate_parameters(schema, {"color": "yellow", "year": 2021.0, "months": (1, 2)})


def test_wrong_type_names_the_parameter_and_the_expected_type():
    schema = parameter_schema(gather_flow)
    msg = problems(schema, {"color": "yellow", "year": "twenty", "months": [1]})
    assert msg == "Parameter 'year' must be an integer (got 'twenty')."
    assert "Parameter 'year' must be an integer (got 'x')" in problems(
        schema, {"color": "yellow", "year": "x", "months": [1]})
    # strings are not coerced at this door, and true is not an integer
    assert "'year' must be an integer (got True)" in problems(
        schema, {"color": "c", "year": True, "months": []})
    assert "Parameter 'months' must be a list of integers (got 3)" in problems(
        schema, {"color": "c", "year": 1, "months": 3})
    assert "Parameter 'months[1]' must be an integer (got 'x')" in problems(
        schema, {"color": "c", "year": 1, "months": [1, "x"]})


def test_missing_and_unknown_parameters_are_named():
    schema = parameter_schema(gather_flow)
    with pytest.raises(ParameterTypeError) as info:
        validate_parameters(schema, {"colour": "yellow", "year": "x"})
    msg = str(info.value)
    assert "Missing required parameter 'color'" in msg
    assert "Missing required parameter 'months'" in msg
    assert "Parameter 'year' must be an integer (got 'x')" in msg
    assert "Unknown parameter 'colour' (the flow's parameters are: color, year, months)" in msg
    # every problem is listed, in the flow's parameter order, unknown ones last
    assert info.value.problems == [
        "Missing required parameter 'color'",
        "Parameter 'year' must be an integer (got 'x')",
        "Missing required parameter 'months'",
        "Unknown parameter 'colour' (the flow's parameters are: color, year, months)",
    ]


def test_unions_enums_models_and_formats():
    @flow
    def f(mode: Literal["fast", "slow"] = "fast", color: Color = Color.green,
          day: dt.date | None = None, when: dt.datetime | None = None,
          config: BucketConfig | None = None, n: int | str = 1):
        pass

    schema = parameter_schema(f)
    validate_parameters(schema, {
        "mode": "slow", "color": "yellow", "day": "2021-03-04", "when": "2021-03-04T05:06:07Z",
        "config": {"bucket": "b"}, "n": "x"})
    # Python values are checked as the JSON they are sent as
    validate_parameters(schema, {"color": Color.yellow, "day": dt.date(2021, 3, 4),
                                 "config": BucketConfig(bucket="b")})
    msg = problems(schema, {"mode": "medium", "color": "red", "day": "2021-13-01",
                            "when": "yesterday", "config": {"retries": "x"}, "n": 1.5})
    assert "Parameter 'mode' must be one of 'fast', 'slow' (got 'medium')" in msg
    assert "Parameter 'color' must be one of 'yellow', 'green' (got 'red')" in msg
    assert "Parameter 'day' must be a date (YYYY-MM-DD) (got '2021-13-01')" in msg
    assert "Parameter 'when' must be a date-time" in msg and "(got 'yesterday')" in msg
    assert "Parameter 'config' is missing required field(s) 'bucket'" in msg
    assert "Parameter 'config.retries' must be an integer (got 'x')" in msg
    assert "Parameter 'n' must be an integer or a string (got 1.5)" in msg


def test_what_the_schema_accepts_the_flow_accepts():
    """Strings for dates are checked as the flow parses them, so an accepted run can start."""
    seen: dict[str, Any] = {}

    @flow
    def f(day: dt.date, when: dt.datetime, wait: dt.timedelta, config: BucketConfig,
          months: list[int]):
        seen.update(day=day, when=when, wait=wait, config=config, months=months)

    schema = parameter_schema(f)
    params = {"day": "2021-03-04", "when": "2021-03-04 05:06", "wait": "PT1H",
              "config": {"bucket": "b"}, "months": [1, 2]}
    validate_parameters(schema, params)
    f(**params)
    assert seen == {"day": dt.date(2021, 3, 4), "when": dt.datetime(2021, 3, 4, 5, 6),
                    "wait": dt.timedelta(hours=1), "config": BucketConfig(bucket="b"),
                    "months": [1, 2]}
    assert "Parameter 'wait' must be a duration" in problems(schema, {**params, "wait": "soon"})


def test_not_json_and_not_a_mapping():
    schema = parameter_schema(gather_flow)
    assert "Parameter 'color' cannot be sent as JSON" in problems(
        schema, {"color": object(), "year": 1, "months": []})
    with pytest.raises(ParameterTypeError, match="must be a mapping of parameter names"):
        validate_parameters(schema, [1, 2])  # type: ignore[arg-type]


def test_empty_schema_accepts_anything_and_a_broken_schema_is_reported():
    validate_parameters({}, {"anything": object()})
    with pytest.raises(ParameterError, match="not a valid JSON schema"):
        validate_parameters({"type": "no-such-type"}, {})
    with pytest.raises(ParameterError, match="could not be used"):
        validate_parameters({"properties": {"x": {"$ref": "#/definitions/Gone"}}}, {"x": 1})


def test_validation_needs_no_flow_code():
    """A stored schema (JSON text) is all the API has."""
    stored = json.dumps(parameter_schema(gather_flow))
    assert "'year' must be an integer" in problems(json.loads(stored), {
        "color": "c", "year": "x", "months": []})


# --- --param / --params ----------------------------------------------------------------------


def test_param_values_are_json_decoded_unless_the_parameter_is_a_string():
    schema = parameter_schema(gather_flow)
    params = parse_param_options(["color=2020", "year=2020", "months=[1,2]"], None, schema)
    assert params == {"color": "2020", "year": 2020, "months": [1, 2]}
    validate_parameters(schema, params)


def test_param_without_schema_and_plain_text():
    assert parse_param_options(
        ["a=1", "b=1.5", "c=true", "d=null", 'e={"k": [1]}', "f=hello", "g=", "h=a=b", "i=NaN"],
        None, None,
    ) == {"a": 1, "b": 1.5, "c": True, "d": None, "e": {"k": [1]}, "f": "hello", "g": "",
          "h": "a=b", "i": "NaN"}


def test_string_like_parameters_stay_text():
    @flow
    def f(color: Color, day: dt.date, tag: str | None = None, mode: Literal["1", "2"] = "1",
          n: int | str = 0):
        pass

    schema = parameter_schema(f)
    assert parse_param_options(
        ["color=yellow", "day=2021-03-04", "tag=123", "mode=2", "n=5"], None, schema
    ) == {"color": "yellow", "day": "2021-03-04", "tag": "123", "mode": "2", "n": 5}


def test_param_wins_over_params():
    schema = parameter_schema(gather_flow)
    params = parse_param_options(
        ["year=2022"], '{"color": "green", "year": 2021, "months": [3]}', schema)
    assert params == {"color": "green", "year": 2022, "months": [3]}
    assert parse_param_options([], '{"color": 2020}', schema) == {"color": 2020}  # JSON as given
    assert parse_param_options(None, None, schema) == {}


def test_malformed_options_are_named():
    with pytest.raises(ParameterError, match=r"--param 'novalue' is not of the form name=value"):
        parse_param_options(["year=1", "novalue"], None, None)
    with pytest.raises(ParameterError, match=r"--param '=3' is not of the form name=value"):
        parse_param_options(["=3"], None, None)
    with pytest.raises(ParameterError, match=r"--params is not valid JSON .*\{year: 1\}"):
        parse_param_options([], "{year: 1}", None)
    with pytest.raises(ParameterError, match="--params must be a JSON object .* got list"):
        parse_param_options([], "[1, 2]", None)
