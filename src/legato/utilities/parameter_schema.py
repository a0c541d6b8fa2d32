"""A flow's parameters as a JSON schema, checking run parameters against it, and ``--param``.

A deployment stores :func:`parameter_schema` of its flow. The API and the CLI check the
parameters of a run against that stored schema with :func:`validate_parameters` before the run is
queued, so a typo or a wrong type is refused at once, without the flow's code; the UI renders a
form from the same schema. :func:`parse_param_options` turns the CLI's ``--param k=v`` and
``--params '{...}'`` into a parameters dict.

The schema (JSON Schema draft 2020-12) looks like::

    {"title": "Parameters", "type": "object",
     "properties": {"year": {"title": "year", "position": 1, "type": "integer", "default": 2021}},
     "required": ["color"], "additionalProperties": false, "definitions": {...}}

- Each property holds the pydantic JSON schema of the parameter's type hint, its name as
  ``title`` (unless an ``Annotated[..., Field(title=...)]`` gives one), its place in the signature
  as ``position``, a ``description`` from the docstring's ``Args:`` section, and its ``default``
  when that default can be written as JSON (otherwise the parameter is optional with no default).
- Pydantic models, enums and other named types are in ``definitions`` (``$ref``
  ``#/definitions/Name``, as Prefect's stored schemas have them).
- A parameter without a hint, or with a type pydantic cannot describe (an arbitrary class), takes
  any value (``{}``), as at call time.
- ``*args`` is the property ``args`` (a list of the hinted type) and ``**kwargs`` the property
  ``kwargs`` (an object whose values have the hinted type): that is how a run's parameters record
  them, and how a deployment's parameters pass them (``{"kwargs": {"extra": 1}}``). Any other
  name is an unknown parameter (``additionalProperties: false``).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable
from typing import Any

from ..engine.parameters import _type_hints_each
from ..exceptions import ParameterError
from ..schemas.parameters import (  # noqa: F401 - validate_parameters re-exported
    _resolve_ref,
    _short,
    validate_parameters,
)

__all__ = ["parameter_schema", "validate_parameters", "parse_param_options", "resolve_type_hints"]

_REF_TEMPLATE = "#/definitions/{model}"


# --- the schema ------------------------------------------------------------------------------


def parameter_schema(flow_or_fn: Any) -> dict[str, Any]:
    """The JSON schema of a flow's (or a function's) parameters; plain JSON, see the module."""
    fn = getattr(flow_or_fn, "fn", flow_or_fn)
    if not callable(fn):
        raise ParameterError(
            f"parameter_schema needs a flow or a function; got {type(flow_or_fn).__name__}."
        )
    import warnings

    # lazy: pydantic costs ~0.25 s the first time; the CLI's other commands do not need it
    from pydantic import TypeAdapter

    sig = inspect.signature(fn)
    hints = resolve_type_hints(fn, sig)
    docs = _docstring_descriptions(inspect.getdoc(fn) or "")
    names: list[str] = []
    adapters: list[Any] = []
    for p in sig.parameters.values():
        hint = hints.get(p.name, Any)
        if p.kind is p.VAR_POSITIONAL:
            hint = list[hint]  # type: ignore[valid-type]
        elif p.kind is p.VAR_KEYWORD:
            hint = dict[str, hint]  # type: ignore[valid-type]
        try:
            adapter = TypeAdapter(hint)
        except Exception:  # noqa: BLE001 - a type pydantic cannot handle takes any value
            adapter = TypeAdapter(Any)
        names.append(p.name)
        adapters.append(adapter)
    with warnings.catch_warnings():
        # pydantic warns about model fields whose defaults are not JSON; it leaves them out
        warnings.simplefilter("ignore")
        type_schemas, definitions = _json_schemas(names, adapters)

    properties: dict[str, Any] = {}
    required: list[str] = []
    for position, p in enumerate(sig.parameters.values()):
        prop: dict[str, Any] = {"title": p.name}
        if docs.get(p.name):
            prop["description"] = docs[p.name]
        prop.update(type_schemas[p.name])
        prop["position"] = position
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            pass  # never required, no default
        elif p.default is p.empty:
            required.append(p.name)
        else:
            ok, value = _json_default(p.default)
            if ok:
                prop["default"] = value
        properties[p.name] = prop
    schema = {
        "title": "Parameters",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        "definitions": definitions,
    }
    return json.loads(json.dumps(schema))  # plain JSON, and a copy the caller may change


def _json_schemas(names: list[str], adapters: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every parameter's type schema, generated together so named types share one definition."""
    from pydantic import TypeAdapter  # lazy: see parameter_schema

    while True:
        try:
            by_key, top = TypeAdapter.json_schemas(
                [(n, "validation", a) for n, a in zip(names, adapters, strict=True)],
                ref_template=_REF_TEMPLATE,
            )
            break
        except Exception:  # noqa: BLE001 - find the types that cannot be described, make them Any
            bad = [i for i, a in enumerate(adapters) if not _describable(a)]
            if not bad:
                raise
            for i in bad:
                adapters[i] = TypeAdapter(Any)
    return {n: by_key[(n, "validation")] for n in names}, dict(top.get("$defs", {}))


def _describable(adapter: Any) -> bool:
    try:
        adapter.json_schema(ref_template=_REF_TEMPLATE)
    except Exception:  # noqa: BLE001 - e.g. a Callable hint
        return False
    return True


def _json_default(value: Any) -> tuple[bool, Any]:
    """(True, the default as JSON) or (False, None) when it has no JSON form."""
    try:
        from pydantic_core import to_jsonable_python  # lazy: see parameter_schema

        out = to_jsonable_python(value)
        json.dumps(out, allow_nan=False)
    except Exception:  # noqa: BLE001 - an object, a function, NaN: no default in the schema
        return False, None
    return True, out


def resolve_type_hints(fn: Callable[..., Any], sig: inspect.Signature | None = None) -> dict[str, Any]:
    """The parameters' type hints with ``Annotated`` metadata kept (constraints, descriptions).

    When some hints cannot be resolved (a class local to a function under ``from __future__
    import annotations``), each is resolved on its own and only the unresolvable ones are left
    out (they then take any value)."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - fall back to one parameter at a time
        return _type_hints_each(fn, sig or inspect.signature(fn), include_extras=True)


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$")
_GOOGLE_ITEM = re.compile(r"^\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ITEM = re.compile(r"^\**(\w+)\s*(?::.*)?$")


def _docstring_descriptions(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style (``Args:``) or NumPy-style docstring."""
    lines = doc.expandtabs().splitlines()
    out: dict[str, str] = {}
    section: int | None = None  # the indent of the Args:/Parameters header we are under
    numpy, current, item_indent = False, "", 0
    for i, line in enumerate(lines):
        text, indent = line.strip(), len(line) - len(line.lstrip())
        underlined = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
        if _SECTION.match(line) or (text == "Parameters" and underlined):
            section, numpy, current = indent, underlined, ""
        elif section is None or not text or set(text) == {"-"}:
            continue
        elif indent < section or (indent == section and (underlined or not numpy)):
            section = None  # the next section began
        elif indent == section or (not numpy and (not current or indent <= item_indent)):
            item = (_NUMPY_ITEM if numpy else _GOOGLE_ITEM).match(text)
            if item:
                current, item_indent = item.group(1), indent
                out[current] = "" if numpy else item.group(2).strip()
        elif current:
            out[current] = (out[current] + " " + text).strip()
    return {k: v for k, v in out.items() if v}


# --- validating run parameters ---------------------------------------------------------------


def parse_param_options(
    params: list[str] | None, params_json: str | None, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Parameters from ``--params '{"k": 1}'`` and repeatable ``--param k=v`` (which win).

    A ``--param`` value is read as JSON when it is JSON (``year=2020`` is 2020,
    ``months=[1,2]`` a list, ``flag=true`` True) and kept as the text given otherwise, or when the
    schema says the parameter is a string (``color=2020`` stays ``"2020"``). Raises
    :class:`~legato.exceptions.ParameterError` for a malformed option.
    """
    out: dict[str, Any] = {}
    if params_json is not None and params_json.strip():
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            raise ParameterError(
                f"--params is not valid JSON ({exc}): {_short(params_json)}; pass an object such "
                """as '{"year": 2021, "months": [1, 2]}'."""
            ) from None
        if not isinstance(loaded, dict):
            raise ParameterError(
                f"--params must be a JSON object mapping parameter names to values; got "
                f"{type(loaded).__name__} {_short(loaded)}."
            )
        out.update(loaded)
    props = (schema or {}).get("properties") or {}
    for option in params or ():
        name, sep, text = option.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(
                f"--param {option!r} is not of the form name=value (e.g. --param year=2021 or "
                "--param months=[1,2])."
            )
        if name in props and _is_string(props[name], schema or {}):
            out[name] = text
        else:
            out[name] = _json_or_text(text)
    return out


def _json_or_text(text: str) -> Any:
    def no_constant(token: str) -> Any:
        raise ValueError(token)  # NaN and Infinity stay text

    try:
        return json.loads(text, parse_constant=no_constant)
    except ValueError:
        return text


def _is_string(schema: Any, root: dict[str, Any], depth: int = 0) -> bool:
    """Whether every value the schema allows (``null`` aside) is a string."""
    if not isinstance(schema, dict) or depth > 5:
        return False
    if "$ref" in schema:
        return _is_string(_resolve_ref(schema["$ref"], root), root, depth + 1)
    if "enum" in schema:
        return all(isinstance(v, str) for v in schema["enum"] if v is not None)
    if "const" in schema:
        return isinstance(schema["const"], str)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            subs = [s for s in schema[key] if not (isinstance(s, dict) and s.get("type") == "null")]
            return bool(subs) and all(_is_string(s, root, depth + 1) for s in subs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds == ["string"]
    return kind == "string"
