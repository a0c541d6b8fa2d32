"""Blocks: the saved blocks, the catalog of block types, and a block's page; a block is created
and edited with a form generated from its type's schema (nested blocks as pickers of the saved
blocks of their type, secrets as password fields that never show what is stored)."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from ...exceptions import BlockError, ConflictError, LegatoError, ObjectNotFound
from ...schemas.blocks import check_block_name
from ...store import models
from . import back, render
from .forms import FormField, build_fields, read_form

router = APIRouter()

SECRET_KINDS = ("password", "secret_json")
# the block's own name in the form: a key no schema property can have (pydantic keeps names
# with a leading underscore private), as many types have a field called "name"
NAME_KEY = "_block_name"


def _first_paragraph(text: str | None) -> Markup:
    """A type's description's first paragraph, its ``code`` spans (docstring style) as code."""
    plain = " ".join((text or "").strip().split("\n\n")[0].split())
    return Markup(re.sub(r"``(.+?)``", r"<code>\1</code>", str(escape(plain))))


def _type_names(db: Any) -> dict[str, str]:
    bt = models.block_type
    with db.read() as conn:
        return {r.slug: r.name for r in conn.execute(sa.select(bt.c.slug, bt.c.name))}


def _label_block_fields(fields: list[FormField], schema: dict[str, Any],
                        names: dict[str, str]) -> None:
    """A nested block's field without a title of its own is labelled with its type's name
    ("GCP Credentials"), not the class name its schema borrows."""
    for f in fields:
        if f.kind == "block" and not (schema.get("properties") or {}).get(f.name, {}).get("title"):
            f.label = names.get(f.block_type or "", f.label)


# -- the list ----------------------------------------------------------------------------------
@router.get("/blocks", response_class=HTMLResponse)
def blocks(request: Request, type: str = "") -> Response:  # noqa: A002 - the query's name
    bd, bt = models.block_document, models.block_type
    with request.app.state.db.read() as conn:
        counts = {r.slug: r.n for r in conn.execute(
            sa.select(bt.c.slug, sa.func.count().label("n"))
            .select_from(bd.join(bt, bt.c.id == bd.c.block_type_id))
            .where(bd.c.is_anonymous.is_(False)).group_by(bt.c.slug))}
        types = [dict(r) for r in conn.execute(
            sa.select(bt.c.slug, bt.c.name).order_by(bt.c.name)).mappings()]
        query = (sa.select(bd.c.id, bd.c.name, bd.c.updated, bt.c.slug, bt.c.name.label("type"))
                 .select_from(bd.join(bt, bt.c.id == bd.c.block_type_id))
                 .where(bd.c.is_anonymous.is_(False))
                 .order_by(bt.c.name, bd.c.name).limit(1000))
        if type:
            query = query.where(bt.c.slug == type)
        rows = [dict(r) for r in conn.execute(query).mappings()]
    used = [t for t in types if counts.get(t["slug"])]
    return render(request, "blocks.html", "blocks", rows=rows, types=used, counts=counts,
                  type=type, type_name=next((t["name"] for t in types if t["slug"] == type), type))


# -- the catalog -------------------------------------------------------------------------------
@router.get("/blocks/catalog", response_class=HTMLResponse)
def catalog(request: Request, q: str = "") -> Response:
    core = request.app.state.blocks
    capabilities: dict[str, list[str]] = {}
    for schema in core.read_block_schemas():  # newest first within each type
        capabilities.setdefault(schema["block_type_slug"], list(schema["capabilities"] or []))
    bd, bt = models.block_document, models.block_type
    with request.app.state.db.read() as conn:
        counts = {r.slug: r.n for r in conn.execute(
            sa.select(bt.c.slug, sa.func.count().label("n"))
            .select_from(bd.join(bt, bt.c.id == bd.c.block_type_id))
            .where(bd.c.is_anonymous.is_(False)).group_by(bt.c.slug))}
    wanted = q.strip().lower()
    cards = []
    for t in sorted(core.read_block_types(), key=lambda t: t["name"].lstrip("_").lower()):
        if wanted and wanted not in t["name"].lower() and wanted not in t["slug"]:
            continue
        cards.append({"slug": t["slug"], "name": t["name"],
                      "description": _first_paragraph(t["description"]),
                      "documentation_url": t["documentation_url"],
                      "capabilities": capabilities.get(t["slug"], []),
                      "saved": counts.get(t["slug"], 0)})
    return render(request, "blocks_catalog.html", "blocks", cards=cards, q=q)


# -- the form ----------------------------------------------------------------------------------
def _newest_schema(core: Any, slug: str) -> dict[str, Any]:
    schemas = core.read_block_schemas(slug)  # raises ObjectNotFound for an unknown type
    if not schemas:
        raise ObjectNotFound(f"Block type {slug!r} has no schema yet; register it again "
                             "(`legato block register -m MODULE`).")
    return schemas[0]


def _saved_of_types(db: Any, slugs: set[str], leave_out: str | None) -> dict[str, list]:
    """{slug: [(document id, name), ...]}: what a picker of each referenced type offers."""
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in slugs}
    if not slugs:
        return out
    bd, bt = models.block_document, models.block_type
    with db.read() as conn:
        for r in conn.execute(
                sa.select(bd.c.id, bd.c.name, bt.c.slug)
                .select_from(bd.join(bt, bt.c.id == bd.c.block_type_id))
                .where(bt.c.slug.in_(sorted(slugs)), bd.c.is_anonymous.is_(False))
                .order_by(bd.c.name)):
            if r.id != leave_out:
                out[r.slug].append((r.id, r.name))
    return out


def _fields(request: Request, schema_row: dict[str, Any], values: dict[str, Any] | None = None,
            references: dict[str, str] | None = None, stored: dict[str, Any] | None = None,
            doc_id: str | None = None) -> list[FormField]:
    """The type's fields; ``stored`` (an edited block's masked data) says which secrets are
    stored, and which nested blocks are held inline rather than as saved blocks."""
    fields_schema = schema_row["fields"] or {}
    slugs = {r.get("block_type_slug") for r in
             (fields_schema.get("block_schema_references") or {}).values()} - {None}
    fields = build_fields(fields_schema, values,
                          secret_fields=fields_schema.get("secret_fields") or [],
                          blocks_by_type=_saved_of_types(request.app.state.db, slugs, doc_id),
                          references=references, stored_secrets=stored is not None)
    _label_block_fields(fields, fields_schema, _type_names(request.app.state.db))
    for f in fields:
        if stored is None:
            continue
        if f.kind in SECRET_KINDS:
            f.has_stored = stored.get(f.name) is not None
        elif f.kind == "block" and not f.value and stored.get(f.name) is not None:
            f.help = ((f.help + " ") if f.help else "") + (
                "Now held inside this block (saved with it, not as a block of its own): "
                "leave “none” to keep it, or choose a saved block to use instead.")
    return fields


def _form_page(request: Request, *, slug: str, block_type: dict[str, Any],
               schema_row: dict[str, Any], fields: list[FormField], name: str,
               name_error: str | None = None, problem_text: str | None = None,
               doc: dict[str, Any] | None = None, status: int = 200) -> Response:
    return render(request, "block_form.html", "blocks", status=status, slug=slug,
                  type_name=block_type["name"], about=_first_paragraph(block_type["description"]),
                  documentation_url=block_type["documentation_url"],
                  capabilities=schema_row["capabilities"] or [],
                  has_secrets=bool((schema_row["fields"] or {}).get("secret_fields")),
                  fields=fields, name=name, name_error=name_error,
                  form_problem=problem_text, doc=doc, name_key=NAME_KEY,
                  action=f"/blocks/{doc['id']}/edit" if doc else f"/blocks/new/{slug}")


def _type_row(core: Any, slug: str) -> dict[str, Any]:
    return next(t for t in core.read_block_types() if t["slug"] == slug)


@router.get("/blocks/new/{slug}", response_class=HTMLResponse)
def new_block(request: Request, slug: str) -> Response:
    core = request.app.state.blocks
    try:
        schema_row = _newest_schema(core, slug)
    except ObjectNotFound as exc:
        return render(request, "missing.html", "blocks", status=404, message=str(exc))
    return _form_page(request, slug=slug, block_type=_type_row(core, slug),
                      schema_row=schema_row, fields=_fields(request, schema_row), name="")


def _name_problem(name: str) -> str | None:
    if not name:
        return "Name is required: the name code loads the block by, e.g. 'my-gcs-bucket'."
    try:
        check_block_name(name)
    except BlockError as exc:
        return str(exc)
    return None


def _save(request: Request, form: Any, slug: str, doc: dict[str, Any] | None) -> Response:
    """Read the submitted form and save the block (new, or ``doc`` replaced); on a mistake the
    form again with the messages, typed values kept but never a secret."""
    core = request.app.state.blocks
    try:
        schema_row = _newest_schema(core, slug)
    except ObjectNotFound as exc:
        return render(request, "missing.html", "blocks", status=404, message=str(exc))
    stored = doc["data"] if doc else None
    fields = _fields(request, schema_row, stored=stored, doc_id=doc["id"] if doc else None)
    values, refs, ok = read_form(fields, form)
    name = doc["name"] if doc else str(form.get(NAME_KEY) or "").strip()
    name_error = None if doc else _name_problem(name)
    block_type = doc["block_type"] if doc else _type_row(core, slug)
    page = dict(request=request, slug=slug, block_type=block_type, schema_row=schema_row,
                fields=fields, name=name, doc=doc)
    if not ok or name_error:
        return _form_page(**page, name_error=name_error, status=422,
                          problem_text="Nothing was saved: correct the fields marked below.")
    if doc is not None:
        # what the form leaves out is kept: stored secrets left empty, nested blocks held inline
        # (read with secrets here, on the server, to merge; never rendered)
        whole = core.read_block_document_by_id(doc["id"], include_secrets=True)
        kept_roots = set()
        for f in fields:
            if f.name in values or f.name in refs or whole["data"].get(f.name) is None:
                continue
            if f.kind in SECRET_KINDS or f.kind == "block":
                values[f.name] = whole["data"][f.name]
                kept_roots.add(f.name)
        for path, nested in whole["references"].items():
            if "." in path and path.split(".")[0] in kept_roots:
                refs[path] = nested["id"]
    try:
        saved = core.save_block_document(
            {"name": name, "block_type_slug": slug, "data": values, "references": refs},
            overwrite=doc is not None)
    except ConflictError as exc:
        return _form_page(**page, name_error=str(exc), status=409,
                          problem_text="Nothing was saved: that name is taken.")
    except (BlockError, ObjectNotFound) as exc:
        _mark_schema_errors(fields, str(exc))
        return _form_page(**page, status=422, problem_text=str(exc))
    verb = "Saved the changes to" if doc else "Created"
    return back(f"/blocks/{saved['id']}", notice=f"{verb} the {block_type['name']} block "
                f"{name!r}.")


def _mark_schema_errors(fields: list[FormField], message: str) -> None:
    """Show the store's schema errors ("... schema: a: expected ...; b.c: ...") at their fields
    too (the whole message stays at the top of the form)."""
    _, sep, problems = message.partition(" does not fit its type's schema: ")
    if not sep:
        return
    by_name = {f.name: f for f in fields}
    for problem in problems.removesuffix(" Nothing was saved.").rstrip(".").split("; "):
        path, sep, detail = problem.partition(": ")
        field = by_name.get(path.split(".")[0])
        if sep and field is not None and field.error is None:
            field.error = f"{field.label}: {path} {detail}." if "." in path else \
                f"{field.label}: {detail}."


@router.post("/blocks/new/{slug}", response_class=HTMLResponse)
async def create_block(request: Request, slug: str) -> Response:
    form = await request.form()
    return await run_in_threadpool(_save, request, form, slug, None)


# -- a block -----------------------------------------------------------------------------------
def _read(request: Request, doc_id: str) -> dict[str, Any] | Response:
    try:
        return request.app.state.blocks.read_block_document_by_id(doc_id)
    except ObjectNotFound as exc:
        return render(request, "missing.html", "blocks", status=404,
                      message=f"{exc} It may have been deleted.")


def _shown_fields(doc: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    """The page's rows: each field with how to show it (secret, nested block, value)."""
    fields_schema = doc["block_schema"]["fields"] or {}
    secret_roots = {s.split(".")[0] for s in fields_schema.get("secret_fields") or []}
    rows = []
    fields = build_fields(fields_schema, doc["data"],
                          secret_fields=fields_schema.get("secret_fields") or [])
    _label_block_fields(fields, fields_schema, names)
    for f in fields:
        value = doc["data"].get(f.name)
        row = {"name": f.name, "label": f.label, "help": f.help, "kind": "value", "value": value}
        nested = doc["references"].get(f.name)
        if f.kind == "block" and nested is not None:
            row.update(kind="block", value=nested)
        elif f.kind == "block" and value is not None:
            row.update(kind="inline")  # the core masked its secrets with the parent's schema
        elif f.kind in SECRET_KINDS or f.name in secret_roots:
            row.update(kind="secret", value=value is not None)
        elif value is None or value == "":
            row.update(kind="empty")
        elif not isinstance(value, (str, int, float, bool)):
            row.update(kind="json")
        rows.append(row)
    return rows


def _users(db: Any, doc_id: str) -> list[dict[str, Any]]:
    """The blocks that hold this one (one indexed query)."""
    bd, bt, ref = models.block_document, models.block_type, models.block_document_reference
    with db.read() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(bd.c.id, bd.c.name, bt.c.name.label("type"), ref.c.name.label("field"))
            .select_from(ref.join(bd, bd.c.id == ref.c.parent_block_document_id)
                         .join(bt, bt.c.id == bd.c.block_type_id))
            .where(ref.c.reference_block_document_id == doc_id)
            .order_by(bt.c.name, bd.c.name)).mappings()]


@router.get("/blocks/{doc_id}", response_class=HTMLResponse)
def block_page(request: Request, doc_id: str) -> Response:
    doc = _read(request, doc_id)
    if isinstance(doc, Response):
        return doc
    slug = doc["block_type"]["slug"]
    example = (doc["block_type"]["code_example"] or "").replace("BLOCK_NAME", doc["name"])
    return render(request, "block.html", "blocks", doc=doc, rows=_shown_fields(doc, _type_names(request.app.state.db)),
                  users=_users(request.app.state.db, doc_id), slug=slug, example=example,
                  capabilities=doc["block_schema"]["capabilities"] or [])


@router.get("/blocks/{doc_id}/edit", response_class=HTMLResponse)
def edit_block(request: Request, doc_id: str) -> Response:
    doc = _read(request, doc_id)
    if isinstance(doc, Response):
        return doc
    slug = doc["block_type"]["slug"]
    core = request.app.state.blocks
    schema_row = _newest_schema(core, slug)
    refs = {path: nested["id"] for path, nested in doc["references"].items()}
    fields = _fields(request, schema_row, values=doc["data"], references=refs,
                     stored=doc["data"], doc_id=doc_id)
    return _form_page(request, slug=slug, block_type=doc["block_type"],
                      schema_row=schema_row, fields=fields, name=doc["name"], doc=doc)


@router.post("/blocks/{doc_id}/edit", response_class=HTMLResponse)
async def save_block(request: Request, doc_id: str) -> Response:
    form = await request.form()

    def work() -> Response:
        doc = _read(request, doc_id)
        if isinstance(doc, Response):
            return doc
        return _save(request, form, doc["block_type"]["slug"], doc)

    return await run_in_threadpool(work)


@router.post("/blocks/{doc_id}/delete")
def delete_block(request: Request, doc_id: str) -> Response:
    core = request.app.state.blocks
    try:
        doc = core.read_block_document_by_id(doc_id)
        core.delete_block_document_by_id(doc_id)
    except ObjectNotFound:
        return back("/blocks", problem="That block no longer exists: it was already deleted.")
    except LegatoError as exc:  # held by another block
        return back(f"/blocks/{doc_id}", problem=str(exc))
    return back(f"/blocks?type={doc['block_type']['slug']}",
                notice=f"Deleted the {doc['block_type']['name']} block {doc['name']!r}.")
