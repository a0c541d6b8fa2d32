"""HTML forms generated from JSON schemas (a deployment's parameters, a block type's fields):
one field per property, and the submitted text turned back into typed values with a message
per field that is wrong.

Kinds: ``text``, ``password`` (a secret: never filled with the stored value), ``integer``,
``number``, ``boolean`` (a checkbox), ``select`` (an enum), ``json`` (objects, lists and
anything else, typed as JSON), ``secret_json`` (a secret object) and ``block`` (a picker of the
saved blocks of the referenced type).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_MISSING = object()


@dataclass
class FormField:
    name: str
    label: str
    kind: str
    required: bool = False
    help: str = ""
    value: Any = None  # what the input shows
    options: list[tuple[str, str]] = field(default_factory=list)  # (value, label)
    error: str | None = None
    block_type: str | None = None  # for kind "block": the slug
    has_stored: bool = False  # a secret with a stored value (left empty = kept)


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """A property with its $ref followed (one level: pydantic's $defs / definitions)."""
    ref = prop.get("$ref")
    if not ref:
        all_of = prop.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
            ref = all_of[0]["$ref"]
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return {**target, **{k: v for k, v in prop.items() if k not in ("$ref", "allOf")}}
    return prop


def _types(prop: dict[str, Any]) -> tuple[set[str], dict[str, Any]]:
    """The JSON types a property allows (null aside) and the one non-null branch, if single."""
    branches = prop.get("anyOf") or prop.get("oneOf")
    if not branches:
        t = prop.get("type")
        types = set(t) if isinstance(t, list) else ({t} if t else set())
        return types - {"null"}, prop
    non_null = [b for b in branches if b.get("type") != "null"]
    types: set[str] = set()
    for b in non_null:
        t = b.get("type")
        types |= set(t) if isinstance(t, list) else ({t} if t else {"any"})
    return types, (non_null[0] if len(non_null) == 1 else {})


def _is_secret(prop: dict[str, Any], branch: dict[str, Any]) -> bool:
    for p in (prop, branch, *(prop.get("anyOf") or [])):
        if p.get("writeOnly") or p.get("format") in ("password", "secret-dict"):
            return True
    return False


def build_fields(schema: dict[str, Any], values: dict[str, Any] | None = None, *,
                 secret_fields: list[str] | tuple[str, ...] = (),
                 blocks_by_type: dict[str, list[tuple[str, str]]] | None = None,
                 references: dict[str, str] | None = None,
                 stored_secrets: bool = False) -> list[FormField]:
    """The form's fields for ``schema``'s properties, showing ``values`` (defaults otherwise).
    Secrets never show a value: ``stored_secrets`` says one is stored (left empty = kept)."""
    values = values or {}
    references = references or {}
    required = set(schema.get("required") or [])
    secret_roots = {s.split(".")[0] for s in secret_fields}
    out: list[FormField] = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = _resolve(schema, raw)
        types, branch = _types(prop)
        label = prop.get("title") or name.replace("_", " ").capitalize()
        ff = FormField(name=name, label=label, kind="json", required=name in required,
                       help=(prop.get("description") or "").split("\n\n")[0])
        value = values.get(name, prop.get("default", _MISSING))
        slug = prop.get("block_type_slug") or branch.get("block_type_slug")
        if slug:
            ff.kind, ff.block_type = "block", slug
            ff.options = list((blocks_by_type or {}).get(slug, []))
            ff.value = references.get(name, "")
        elif name in secret_roots or _is_secret(prop, branch):
            ff.kind = "secret_json" if "object" in types and "string" not in types else "password"
            ff.has_stored = stored_secrets
            ff.value = ""
        elif "enum" in branch or "enum" in prop:
            ff.kind = "select"
            ff.options = [(str(v), str(v)) for v in (branch.get("enum") or prop.get("enum"))]
            ff.value = "" if value is _MISSING or value is None else str(value)
        elif types == {"boolean"}:
            ff.kind = "boolean"
            ff.value = bool(value) if value is not _MISSING else False
        elif types == {"integer"}:
            ff.kind = "integer"
            ff.value = "" if value is _MISSING or value is None else str(value)
        elif types <= {"number", "integer"} and types:
            ff.kind = "number"
            ff.value = "" if value is _MISSING or value is None else str(value)
        elif types == {"string"}:
            ff.kind = "text"
            ff.value = "" if value is _MISSING or value is None else str(value)
        else:
            ff.value = "" if value is _MISSING else json.dumps(value, indent=2, default=str)
        out.append(ff)
    return out


def read_form(fields: list[FormField], form: Any) -> tuple[dict[str, Any], dict[str, str], bool]:
    """(values, references, ok): the submitted text as typed values; each field that is wrong
    gets its ``error`` set (and shows back what was typed). Empty optional fields are left out
    (the default applies); empty secrets with a stored value are left out (kept)."""
    values: dict[str, Any] = {}
    refs: dict[str, str] = {}
    ok = True
    for ff in fields:
        raw = form.get(ff.name)
        text = "" if raw is None else str(raw)
        if ff.kind == "boolean":
            values[ff.name] = ff.value = raw is not None and text not in ("", "false", "off")
            continue
        if ff.kind not in ("password", "secret_json"):
            ff.value = text
        if not text.strip():
            if ff.required and not (ff.has_stored and ff.kind in ("password", "secret_json")):
                ff.error = f"{ff.label} is required."
                ok = False
            continue
        try:
            if ff.kind == "block":
                if ff.options and text not in {v for v, _ in ff.options}:
                    raise ValueError(f"choose a saved {ff.block_type} block")
                refs[ff.name] = text
            elif ff.kind == "integer":
                try:
                    values[ff.name] = int(text.strip())
                except ValueError:
                    raise ValueError(f"must be a whole number (got {text.strip()[:40]!r})") \
                        from None
            elif ff.kind == "number":
                try:
                    values[ff.name] = float(text.strip())
                except ValueError:
                    raise ValueError(f"must be a number (got {text.strip()[:40]!r})") from None
            elif ff.kind in ("json", "secret_json"):
                try:
                    values[ff.name] = json.loads(text)
                except json.JSONDecodeError as exc:
                    # a secret's text is never echoed
                    raise ValueError(f"is not valid JSON ({exc.msg} at line {exc.lineno}, "
                                     f"column {exc.colno})") from None
            else:
                values[ff.name] = text
        except ValueError as exc:
            ff.error = f"{ff.label} {exc}."
            ok = False
    return values, refs, ok
