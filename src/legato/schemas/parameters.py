"""Checking a run's parameters against its deployment's parameter schema (JSON Schema), without
the flow's code: the API and CLI refuse a bad parameter before anything is queued, with a message
naming each bad parameter and what it expected."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..exceptions import ParameterError, ParameterTypeError


def validate_parameters(schema: dict[str, Any], parameters: dict[str, Any]) -> None:
    """Check a run's parameters against a stored parameter schema, without the flow's code.

    Raises :class:`~legato.exceptions.ParameterTypeError` naming every bad parameter and what it
    should be (``Parameter 'year' must be an integer (got 'twenty')``), every missing required
    one and every unknown one; the list is also on the exception's ``problems``. Strings for
    dates, times, UUIDs and durations are checked as the flow will parse them. An empty schema
    accepts anything.
    """
    if not isinstance(parameters, dict):
        raise ParameterTypeError(
            f"Parameters must be a mapping of parameter names to values; got "
            f"{type(parameters).__name__}."
        )
    if not schema:
        return
    # lazy: jsonschema (and referencing) cost ~0.1 s to import, only this check needs them
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ParameterError(
            f"The parameter schema is not a valid JSON schema ({exc.message}); rebuild the "
            "deployment to store its flow's schema again."
        ) from None
    instance = _as_json(parameters)
    validator = Draft202012Validator(schema, format_checker=_format_checker())
    props: dict[str, Any] = schema.get("properties") or {}
    problems: list[tuple[float, str]] = []
    seen: set[str] = set()

    def add(name: str | None, text: str) -> None:
        if text not in seen:
            seen.add(text)
            # in the flow's parameter order; unknown parameters last
            order = props.get(name, {}).get("position") if name else None
            problems.append((order if isinstance(order, (int, float)) else float("inf"), text))

    try:
        errors = list(validator.iter_errors(instance))
    except Exception as exc:  # noqa: BLE001 - a $ref that leads nowhere and the like
        raise ParameterError(
            f"The parameter schema could not be used ({exc}); rebuild the deployment to store "
            "its flow's schema again."
        ) from None
    for err in errors:
        path = list(err.absolute_path)
        name = str(path[0]) if path else None
        if not path and err.validator == "required":
            for missing in err.validator_value:
                if missing not in instance:
                    add(missing, f"Missing required parameter {missing!r}")
        elif not path and err.validator == "additionalProperties":
            known = ", ".join(props) or "none"
            for extra in instance:
                if extra not in props:
                    add(None, f"Unknown parameter {extra!r} (the flow's parameters are: {known})")
        else:
            for text in _describe(err, schema):
                add(name, text)
    if problems:
        texts = [t for _, t in sorted(problems, key=lambda p: p[0])]
        exc = ParameterTypeError("; ".join(texts) + ".")
        exc.problems = texts  # type: ignore[attr-defined]
        raise exc


def _describe(err: Any, root: dict[str, Any]) -> list[str]:
    """What is wrong, in words. For a union (``Optional[Model]``), when the value has the type
    of only one member, the problems inside that member are told rather than the whole union."""
    if err.validator in ("anyOf", "oneOf") and err.context:
        branches: dict[Any, list[Any]] = {}
        for sub in err.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        near = [subs for subs in branches.values() if not any(
            sub.validator == "type" and not sub.relative_path for sub in subs)]
        if len(near) == 1:
            return [text for sub in near[0] for text in _describe(sub, root)]
    return [_describe_error(err, list(err.absolute_path), root)]


def _describe_error(err: Any, path: list[Any], root: dict[str, Any]) -> str:
    where = f"Parameter {_location(path)!r}" if path else "The parameters"
    got = _short(err.instance)
    if err.validator in ("type", "anyOf", "oneOf", "enum", "const", "format", "$ref"):
        return f"{where} must be {_expected(err.schema, root)} (got {got})"
    if err.validator == "required":
        missing = [m for m in err.validator_value if m not in (err.instance or {})]
        return f"{where} is missing required field(s) {', '.join(map(repr, missing))}"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties") or {}
        extra = [k for k in err.instance if k not in allowed]
        return f"{where} has unknown field(s) {', '.join(map(repr, extra))}"
    return f"{where}: {err.message}"


def _location(path: list[Any]) -> str:
    """``months[1]`` for a list item, ``config.retries`` for a field of an object."""
    out = str(path[0])
    for part in path[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_TYPES = {
    "integer": "an integer", "number": "a number", "string": "a string",
    "boolean": "true or false", "array": "a list", "object": "an object (a JSON mapping)",
    "null": "null",
}
_FORMATS = {
    "date-time": "a date-time (ISO 8601, e.g. 2024-01-31T12:00:00)",
    "date": "a date (YYYY-MM-DD)", "time": "a time (HH:MM[:SS])", "uuid": "a UUID",
    "duration": "a duration (ISO 8601, e.g. PT1H30M, or HH:MM:SS)", "uri": "a URL",
}
_PLURALS = {"integer": "integers", "number": "numbers", "string": "strings",
            "boolean": "booleans", "array": "lists", "object": "objects"}


def _expected(schema: Any, root: dict[str, Any], depth: int = 0) -> str:
    """In words, what a value matching ``schema`` is."""
    if not isinstance(schema, dict) or depth > 5:
        return "any value"
    if "$ref" in schema:
        target = _resolve_ref(schema["$ref"], root)
        return _expected(target, root, depth + 1) if target is not None else "a valid value"
    if "enum" in schema:
        return "one of " + ", ".join(_short(v) for v in schema["enum"])
    if "const" in schema:
        return _short(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            words: list[str] = []
            for sub in schema[key]:
                w = _expected(sub, root, depth + 1)
                if w not in words:
                    words.append(w)
            return " or ".join(words)
    if "allOf" in schema and schema["allOf"]:
        return _expected(schema["allOf"][0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(_TYPES.get(k, k) for k in kind)
    if kind == "string" and schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    if kind == "array" and isinstance(schema.get("items"), dict):
        item = schema["items"].get("type")
        if item in _PLURALS:
            return f"a list of {_PLURALS[item]}"
    if kind == "object" and schema.get("title") and "properties" in schema:
        return f"an object ({schema['title']})"
    if kind in _TYPES:
        return _TYPES[kind]
    return "any value"


def _resolve_ref(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def _as_json(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON sees them (tuples are lists, datetimes strings), as they will be stored."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        try:
            out[str(key)] = json.loads(json.dumps(value, default=_json_fallback, allow_nan=False))
        except (TypeError, ValueError):
            raise ParameterTypeError(
                f"Parameter {key!r} cannot be sent as JSON (got {_short(value)}); pass a value "
                "made of strings, numbers, booleans, lists and mappings."
            ) from None
    return out


def _json_fallback(value: Any) -> Any:
    from pydantic_core import to_jsonable_python  # lazy: only for dates, enums, models

    return to_jsonable_python(value)


_FORMAT_CHECKER: Any = None


def _format_checker() -> Any:
    """Dates, times, UUIDs, durations and URLs checked as the flow will parse them (pydantic,
    lax), so the API accepts exactly the strings a run can start with."""
    global _FORMAT_CHECKER
    if _FORMAT_CHECKER is None:
        import datetime
        import functools
        import uuid

        from jsonschema import FormatChecker

        # lazy: pydantic only when some parameter's value has one of these formats
        @functools.cache
        def adapter(kind: Any) -> Any:
            import pydantic

            return pydantic.TypeAdapter(pydantic.AnyUrl if kind == "uri" else kind)

        def checker_for(kind: Any) -> Callable[[Any], bool]:
            # a pydantic ValidationError is a ValueError
            return lambda v: not isinstance(v, str) or adapter(kind).validate_python(v) or True

        checker = FormatChecker(formats=())
        for fmt, kind in {"date-time": datetime.datetime, "date": datetime.date, "uuid": uuid.UUID,
                          "time": datetime.time, "duration": datetime.timedelta,
                          "uri": "uri"}.items():
            checker.checks(fmt, raises=ValueError)(checker_for(kind))
        _FORMAT_CHECKER = checker
    return _FORMAT_CHECKER


# --- the CLI's --param and --params ----------------------------------------------------------
