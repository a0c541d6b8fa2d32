"""Validating and coercing flow parameters from type hints (pydantic), and storing them as JSON."""

from __future__ import annotations

import inspect
from typing import Any

from ..exceptions import ParameterTypeError


class ParameterValidator:
    """Built once per flow, on its first run (pydantic is imported then, not at import time)."""

    def __init__(self, fn: Any, flow_name: str) -> None:
        self.flow_name = flow_name
        sig = inspect.signature(fn)
        fields: dict[str, Any] = {}
        self.skip: set[str] = set()
        try:
            hints = _type_hints(fn)
        except Exception:  # noqa: BLE001 - unresolved forward refs: validate what we can
            hints = _type_hints_each(fn, sig)
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                self.skip.add(p.name)
                continue
            ann = hints.get(p.name, Any)
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (ann, default)
        self.fields = fields
        self.names = list(fields)
        # parameters whose value can be accepted as it is when its type is exactly the hint
        self._exact = {k: v[0] for k, v in fields.items() if v[0] is Any or v[0] in _SIMPLE}
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from pydantic import ConfigDict, create_model

            self._model = create_model(  # type: ignore[call-overload]
                f"{self.flow_name}Parameters",
                __config__=ConfigDict(arbitrary_types_allowed=True),
                **{_alias(k): (v[0], _field(k, v[1])) for k, v in self.fields.items()},
            )
        return self._model

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        exact = self._exact
        if len(exact) == len(self.names) and all(
            exact[k] is Any or type(params.get(k)) is exact[k] for k in self.names
        ):
            # every value already has exactly its hinted type: pydantic would return it as it
            # is, so skip it (its first use costs ~0.25 s of a short script's start-up)
            return params
        from pydantic import ValidationError

        data = {_alias(k): v for k, v in params.items() if k not in self.skip}
        try:
            model = self.model(**data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                loc = err["loc"]
                name = _unalias(str(loc[0])) if loc else "?"
                path = name + "".join(f"[{p!r}]" for p in loc[1:])
                problems.append(f"parameter {path!r}: {err['msg']} (got {_short_repr(err.get('input'))})")
            raise ParameterTypeError(
                f"Flow {self.flow_name!r} got invalid parameters: " + "; ".join(problems) + "."
            ) from None
        out = dict(params)
        for k in self.names:
            out[k] = getattr(model, _alias(k))
        return out


_SIMPLE = (int, float, str, bool, bytes)


def _field(name: str, default: Any) -> Any:
    from pydantic import Field

    return Field(default, alias=_alias(name)) if _alias(name) != name else default


def _alias(name: str) -> str:
    # pydantic reserves names starting with "model_" and underscores; rename them internally
    return f"p__{name}" if name.startswith(("model_", "_")) else name


def _unalias(name: str) -> str:
    return name[3:] if name.startswith("p__") else name


def _type_hints(fn: Any) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(fn)


def _type_hints_each(fn: Any, sig: inspect.Signature, include_extras: bool = False
                     ) -> dict[str, Any]:
    """Resolve annotations one parameter at a time, so one that cannot be resolved (a class
    local to a function, under ``from __future__ import annotations``) leaves only that
    parameter unvalidated. ``include_extras`` keeps ``Annotated`` metadata."""
    import types
    import typing

    try:
        local_ns = dict(inspect.getclosurevars(fn).nonlocals)
    except Exception:  # noqa: BLE001
        local_ns = {}
    hints: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.annotation is p.empty:
            continue
        holder = types.SimpleNamespace(__annotations__={p.name: p.annotation})
        try:
            hints.update(typing.get_type_hints(
                holder, globalns=getattr(fn, "__globals__", {}), localns=local_ns,
                include_extras=include_extras))
        except Exception:  # noqa: BLE001 - this one stays unvalidated
            continue
    return hints


def _short_repr(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def jsonable_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON for the history: big or odd values are summarised, never fail."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        out[k] = _jsonable(v, 0)
    return out


def _jsonable(v: Any, depth: int) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v if not isinstance(v, str) or len(v) <= 10_000 else v[:10_000] + "…"
    if depth < 5:
        if isinstance(v, (list, tuple)):
            if len(v) > 1000:
                return f"<{type(v).__name__} of {len(v)} items>"
            return [_jsonable(x, depth + 1) for x in v]
        if isinstance(v, dict):
            return {str(k): _jsonable(x, depth + 1) for k, x in list(v.items())[:1000]}
    try:
        from pydantic_core import to_jsonable_python

        out = to_jsonable_python(v)
        import json

        if len(json.dumps(out)) <= 10_000:
            return out
    except Exception:  # noqa: BLE001 - fall back to a summary
        pass
    return f"<{type(v).__name__}>"
