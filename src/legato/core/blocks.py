"""Blocks in the store: types, schemas and saved documents, as the embedded client and the server
both use them (one implementation, two doors).

Every call is one transaction: a document is saved with its references whole or not at all.
A document's data is encrypted at rest (:mod:`legato.store.encryption`); answers mask its secret
fields (listed in the schema's ``secret_fields``) unless ``include_secrets`` is asked for.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from ..exceptions import BlockError, ConflictError, ObjectNotFound
from ..ids import new_id
from ..schemas.blocks import check_block_name
from ..store import models
from ..store.cleaning import _clean_json
from ..store.database import Database
from ..store.encryption import Cipher
from ..store.queries import _escape_like
from .orchestrator import _insert_for

MASK = "********"
_MAX_DEPTH = 16  # nested references deeper than this are a cycle
_TYPE_FIELDS = ("slug", "name", "description", "logo_url", "documentation_url", "code_example",
                "module")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def mask_secrets(data: dict[str, Any], secret_fields: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with the values at ``secret_fields`` paths (``a.b``, ``a.*``) masked."""
    out = copy.deepcopy(data)
    for path in secret_fields:
        for parent, key in list(_at_path(out, path.split("."))):
            if parent[key] is not None:
                parent[key] = MASK
    return out


def secret_values(data: dict[str, Any], secret_fields: list[str]) -> list[str]:
    """The text of every value at ``secret_fields`` paths (a secret object's every leaf)."""
    return [text for path in secret_fields for parent, key in _at_path(data, path.split("."))
            for text in _leaves(parent[key])]


def _at_path(node: Any, parts: list[str]) -> Iterator[tuple[dict[str, Any], str]]:
    """(container, key) of each value a dotted path (``*`` for any key) names in ``node``."""
    if not isinstance(node, dict) or not parts:
        return
    head, rest = parts[0], parts[1:]
    keys = list(node) if head == "*" else [head] if head in node else []
    for key in keys:
        if rest:
            yield from _at_path(node[key], rest)
        else:
            yield node, key


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for sub in value.values() for text in _leaves(sub)]
    return [] if value is None else [str(value)]


class BlockCore:
    def __init__(self, db: Database, cipher: Cipher) -> None:
        self.db = db
        self.cipher = cipher

    # -- types and schemas ---------------------------------------------------------------------
    def register_block_type(self, block_type: dict[str, Any], schema: dict[str, Any]
                            ) -> dict[str, Any]:
        """Record a block type (updating its description etc.) and a schema of it; idempotent."""
        bt, bs = models.block_type, models.block_schema
        now = _now()
        values = {k: block_type.get(k) for k in _TYPE_FIELDS}
        with self.db.write() as conn:
            row = conn.execute(sa.select(bt).where(bt.c.slug == values["slug"])).mappings().first()
            if row is None:
                conn.execute(_insert_for(conn.dialect.name)(bt).values(
                    id=new_id(), created=now, updated=now, **values
                ).on_conflict_do_nothing(index_elements=["slug"]))
            elif any(row[k] != values[k] for k in _TYPE_FIELDS):
                conn.execute(bt.update().where(bt.c.id == row["id"]).values(updated=now, **values))
            type_row = conn.execute(
                sa.select(bt).where(bt.c.slug == values["slug"])).mappings().one()
            found = conn.execute(sa.select(bs).where(
                bs.c.block_type_id == type_row["id"], bs.c.checksum == schema["checksum"])
            ).mappings().first()
            if found is None:
                conn.execute(_insert_for(conn.dialect.name)(bs).values(
                    id=new_id(), block_type_id=type_row["id"], checksum=schema["checksum"],
                    fields=_clean_json(schema["fields"]),
                    capabilities=list(schema.get("capabilities") or []),
                    version=schema.get("version"), created=now,
                ).on_conflict_do_nothing(index_elements=["block_type_id", "checksum"]))
                found = conn.execute(sa.select(bs).where(
                    bs.c.block_type_id == type_row["id"], bs.c.checksum == schema["checksum"])
                ).mappings().one()
        return {"block_type": dict(type_row), "block_schema": dict(found)}

    def read_block_types(self) -> list[dict[str, Any]]:
        bt = models.block_type
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(sa.select(bt).order_by(bt.c.slug)).mappings()]

    def read_block_type(self, slug: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = _type_by_slug(conn, slug)
            schemas = _schemas_of(conn, row["id"])
        return {**row, "block_schemas": schemas}

    def read_block_schemas(self, slug: str | None = None) -> list[dict[str, Any]]:
        bs, bt = models.block_schema, models.block_type
        query = sa.select(bs, bt.c.slug.label("block_type_slug")).join(
            bt, bt.c.id == bs.c.block_type_id).order_by(bt.c.slug, bs.c.created.desc())
        with self.db.read() as conn:
            if slug is not None:
                query = query.where(bt.c.id == _type_by_slug(conn, slug)["id"])
            return [dict(r) for r in conn.execute(query).mappings()]

    def delete_block_type(self, slug: str) -> None:
        bt, bd = models.block_type, models.block_document
        with self.db.write() as conn:
            row = _type_by_slug(conn, slug)
            names = conn.execute(sa.select(bd.c.name).where(
                bd.c.block_type_id == row["id"]).order_by(bd.c.name).limit(11)).scalars().all()
            if names:
                raise ConflictError(
                    f"Block type {slug!r} still has saved blocks ({_names(names)}); delete them "
                    "first.")
            conn.execute(bt.delete().where(bt.c.id == row["id"]))

    # -- documents -----------------------------------------------------------------------------
    def save_block_document(self, doc: dict[str, Any], overwrite: bool = False
                            ) -> dict[str, Any]:
        """Save (or, with ``overwrite``, replace) a document; its references must exist."""
        name = check_block_name(doc["name"])
        slug = doc["block_type_slug"]
        refs: dict[str, str] = dict(doc.get("references") or {})
        data = _clean_json(dict(doc.get("data") or {}))
        bd, ref = models.block_document, models.block_document_reference
        now = _now()
        with self.db.write() as conn:
            type_row = _type_by_slug(conn, slug)
            schema = _schema_for(conn, type_row, doc.get("block_schema_checksum"))
            existing = conn.execute(sa.select(bd.c.id).where(
                bd.c.block_type_id == type_row["id"], bd.c.name == name)).first()
            if existing is not None and not overwrite:
                raise ConflictError(
                    f"A {slug} block named {name!r} already exists. Pass overwrite=True "
                    f"(`save({name!r}, overwrite=True)`) to replace it, or choose another name.")
            doc_id = existing[0] if existing is not None else new_id()
            resolved = self._resolve_references(conn, schema, refs, doc_id)
            _validate(slug, name, schema["fields"], data, resolved)
            token = self.cipher.encrypt(json.dumps(data, separators=(",", ":")))
            if existing is None:
                conn.execute(bd.insert().values(
                    id=doc_id, name=name, block_type_id=type_row["id"],
                    block_schema_id=schema["id"], data=token, is_anonymous=False,
                    created=now, updated=now))
            else:
                conn.execute(bd.update().where(bd.c.id == doc_id).values(
                    block_schema_id=schema["id"], data=token, updated=now))
                conn.execute(ref.delete().where(ref.c.parent_block_document_id == doc_id))
            for path, target in refs.items():
                conn.execute(ref.insert().values(
                    id=new_id(), parent_block_document_id=doc_id,
                    reference_block_document_id=target, name=path, created=now))
            row = conn.execute(sa.select(bd).where(bd.c.id == doc_id)).mappings().one()
            return self._document(conn, row, include_secrets=False)

    def _resolve_references(self, conn: sa.Connection, schema: dict[str, Any],
                            refs: dict[str, str], doc_id: str) -> dict[str, Any]:
        """{path: the referenced document, secrets included}; each must exist and be of the
        type the field holds."""
        expected = (schema["fields"] or {}).get("block_schema_references") or {}
        bd = models.block_document
        out: dict[str, Any] = {}
        for path, target in refs.items():
            if not isinstance(path, str) or not path or not isinstance(target, str):
                raise BlockError(f"Invalid block reference {path!r}: {target!r}.")
            if target == doc_id:
                raise BlockError(f"A block cannot hold itself (field {path!r}).")
            row = conn.execute(sa.select(bd).where(bd.c.id == target)).mappings().first()
            if row is None:
                raise BlockError(
                    f"The block in field {path!r} (id {target}) no longer exists: it was "
                    "deleted. Save that block again (or load another) and save this one with it.")
            nested = self._document(conn, row, include_secrets=True)
            want = (expected.get(path) or {}).get("block_type_slug")
            if want and nested["block_type"]["slug"] != want:
                raise BlockError(
                    f"Field {path!r} holds a {want} block, not the "
                    f"{nested['block_type']['slug']} block {nested['name']!r}.")
            out[path] = nested
        return out

    def read_block_document(self, slug: str, name: str, include_secrets: bool = False
                            ) -> dict[str, Any]:
        bd = models.block_document
        with self.db.read() as conn:
            if conn.execute(sa.select(models.block_type.c.id).where(
                    models.block_type.c.slug == slug)).first() is None:
                known = conn.execute(sa.select(models.block_type.c.slug)).scalars().all()
                raise ObjectNotFound(
                    f"No {slug} block named {name!r}. No {slug} block is saved yet (block type "
                    f"{slug!r} is not registered; registered types: {_names(sorted(known), 40)}"
                    f"{'' if known else 'none'}).")
            type_row = _type_by_slug(conn, slug)
            row = conn.execute(sa.select(bd).where(
                bd.c.block_type_id == type_row["id"], bd.c.name == name)).mappings().first()
            if row is None:
                names = conn.execute(sa.select(bd.c.name).where(
                    bd.c.block_type_id == type_row["id"], bd.c.is_anonymous.is_(False)
                ).order_by(bd.c.name).limit(21)).scalars().all()
                saved = (f"Saved {slug} blocks: {_names(names, 20)}." if names else
                         f"No {slug} block is saved yet.")
                raise ObjectNotFound(f"No {slug} block named {name!r}. {saved}")
            return self._document(conn, row, include_secrets)

    def read_block_document_by_id(self, doc_id: str, include_secrets: bool = False
                                  ) -> dict[str, Any]:
        bd = models.block_document
        with self.db.read() as conn:
            row = conn.execute(sa.select(bd).where(bd.c.id == doc_id)).mappings().first()
            if row is None:
                raise ObjectNotFound(f"No block with id {doc_id}.")
            return self._document(conn, row, include_secrets)

    def read_block_documents(self, slug: str | None = None, *, name_like: str | None = None,
                             include_secrets: bool = False, limit: int = 200, offset: int = 0
                             ) -> list[dict[str, Any]]:
        bd, bt = models.block_document, models.block_type
        query = (sa.select(bd).join(bt, bt.c.id == bd.c.block_type_id)
                 .where(bd.c.is_anonymous.is_(False))
                 .order_by(bt.c.slug, bd.c.name).limit(limit).offset(offset))
        with self.db.read() as conn:
            if slug is not None:
                query = query.where(bd.c.block_type_id == _type_by_slug(conn, slug)["id"])
            if name_like:
                query = query.where(bd.c.name.like(f"%{_escape_like(name_like)}%", escape="\\"))
            rows = conn.execute(query).mappings().all()
            return [self._document(conn, r, include_secrets) for r in rows]

    def delete_block_document(self, slug: str, name: str) -> None:
        bd = models.block_document
        with self.db.write() as conn:
            type_row = _type_by_slug(conn, slug)
            row = conn.execute(sa.select(bd.c.id).where(
                bd.c.block_type_id == type_row["id"], bd.c.name == name)).first()
            if row is None:
                raise ObjectNotFound(f"No {slug} block named {name!r}.")
            self._delete(conn, row[0], f"{slug}/{name}")

    def delete_block_document_by_id(self, doc_id: str) -> None:
        bd = models.block_document
        with self.db.write() as conn:
            if conn.execute(sa.select(bd.c.id).where(bd.c.id == doc_id)).first() is None:
                raise ObjectNotFound(f"No block with id {doc_id}.")
            self._delete(conn, doc_id, f"block {doc_id}")

    def _delete(self, conn: sa.Connection, doc_id: str, label: str) -> None:
        bd, bt, ref = models.block_document, models.block_type, models.block_document_reference
        users = conn.execute(
            sa.select(bt.c.slug, bd.c.name, ref.c.name.label("field"))
            .select_from(ref.join(bd, bd.c.id == ref.c.parent_block_document_id)
                         .join(bt, bt.c.id == bd.c.block_type_id))
            .where(ref.c.reference_block_document_id == doc_id)
            .order_by(bt.c.slug, bd.c.name)).all()
        if users:
            shown = ", ".join(f"{u.slug}/{u.name} (field {u.field!r})" for u in users[:10])
            raise ConflictError(
                f"Cannot delete {label}: other blocks hold it: {shown}. Delete those blocks, or "
                "save them without it, first.")
        conn.execute(bd.delete().where(bd.c.id == doc_id))

    # -- answers ---------------------------------------------------------------------------------
    def _document(self, conn: sa.Connection, row: Any, include_secrets: bool, depth: int = 0
                  ) -> dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise BlockError("Block references nest too deep (a cycle?).")
        bt, bs, ref = models.block_type, models.block_schema, models.block_document_reference
        bd = models.block_document
        type_row = dict(conn.execute(sa.select(bt).where(bt.c.id == row["block_type_id"]))
                        .mappings().one())
        schema = dict(conn.execute(sa.select(bs).where(bs.c.id == row["block_schema_id"]))
                      .mappings().one())
        data = json.loads(self.cipher.decrypt(
            row["data"], f"the {type_row['slug']} block {row['name']!r}"))
        if not include_secrets:
            data = mask_secrets(data, (schema["fields"] or {}).get("secret_fields") or [])
        references = {}
        for r in conn.execute(sa.select(ref.c.name, ref.c.reference_block_document_id)
                              .where(ref.c.parent_block_document_id == row["id"])
                              .order_by(ref.c.name)).all():
            nested = conn.execute(sa.select(bd).where(
                bd.c.id == r.reference_block_document_id)).mappings().one()
            references[r.name] = self._document(conn, nested, include_secrets, depth + 1)
        return {
            "id": row["id"], "name": row["name"], "is_anonymous": row["is_anonymous"],
            "created": row["created"], "updated": row["updated"],
            "block_type": type_row,
            "block_schema": {k: schema[k] for k in ("id", "checksum", "fields", "capabilities")},
            "data": data, "references": references,
        }


def _names(names: list[str], most: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (", ..." if len(names) > most else "")


def _type_by_slug(conn: sa.Connection, slug: str) -> dict[str, Any]:
    bt = models.block_type
    row = conn.execute(sa.select(bt).where(bt.c.slug == slug)).mappings().first()
    if row is None:
        known = conn.execute(sa.select(bt.c.slug).order_by(bt.c.slug)).scalars().all()
        raise ObjectNotFound(
            f"Unknown block type {slug!r}. Register it with `legato block register -m MODULE` "
            f"(or save a block of it from Python); registered types: {_names(known, 40) or 'none'}.")
    return dict(row)


def _schemas_of(conn: sa.Connection, type_id: str) -> list[dict[str, Any]]:
    bs = models.block_schema
    return [dict(r) for r in conn.execute(sa.select(bs).where(
        bs.c.block_type_id == type_id).order_by(bs.c.created.desc())).mappings()]


def _schema_for(conn: sa.Connection, type_row: dict[str, Any], checksum: str | None
                ) -> dict[str, Any]:
    schemas = _schemas_of(conn, type_row["id"])
    if checksum is not None:
        schemas = [s for s in schemas if s["checksum"] == checksum]
    if not schemas:
        raise ObjectNotFound(
            f"Block type {type_row['slug']!r} has no schema "
            f"{'with checksum ' + repr(checksum) if checksum else 'yet'}; register the type "
            "again (`legato block register -m MODULE`).")
    return schemas[0]


def _validate(slug: str, name: str, fields: dict[str, Any], data: dict[str, Any],
              refs: dict[str, Any]) -> None:
    """Check the document (with its references' data in place) against the type's JSON schema."""
    # lazy: jsonschema loads only where documents are saved
    import jsonschema  # noqa: PLC0415

    whole = _with_references(data, refs)
    validator = jsonschema.Draft202012Validator(fields)
    errors = sorted(validator.iter_errors(whole), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.absolute_path) or '(block)'}: {_short(e)}"
            for e in errors[:5])
        raise BlockError(f"The {slug} block {name!r} does not fit its type's schema: {problems}."
                         " Nothing was saved.")


def _with_references(data: dict[str, Any], refs: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each referenced document's whole data at its field path."""
    whole = copy.deepcopy(data)
    for path, nested in sorted(refs.items(), key=lambda kv: kv[0].count(".")):
        node = whole
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _with_references(nested["data"], nested.get("references") or {})
    return whole


def _short(error: Any) -> str:
    # a secret's value must not be echoed back: name the rule, not the instance
    if error.validator in ("type", "format", "enum", "const", "pattern"):
        return f"expected {error.validator} {error.validator_value!r}"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    return error.validator if error.validator in ("additionalProperties",) else (
        f"fails {error.validator} {error.validator_value!r}")
