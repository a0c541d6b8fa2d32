"""The ``Block`` base class: typed configuration saved in Legato's store and loaded by name.

A block is a pydantic model. Its class is a *block type* (addressed by a slug, ``gcs-bucket``), its
fields' JSON schema a *block schema*, and a saved instance a *block document* with a name: the
pair ``type-slug/name`` addresses it everywhere (code, CLI, API, deployments' ``-sb``).

- **Nested blocks.** A field whose value is a saved block is stored as a reference to that
  document, so saving the outer block does not copy the inner one, and loading the outer block
  loads the inner one as it is now. A nested block that was never saved is stored inline.
- **Secrets.** ``SecretStr`` and :class:`~legato.blocks.fields.SecretDict` fields are listed in the
  schema's ``secret_fields``. The store encrypts every document at rest, listings show secret
  values as ``********``, and code reads one only through ``.get_secret_value()``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import importlib
import inspect
import json
import re
import types
import typing
from typing import Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretBytes, SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from .. import redaction
from ..exceptions import BlockError, ObjectNotFound
from ..schemas.blocks import check_block_name, split_address
from .fields import SecretDict

# block classes by type slug, filled as block classes are defined (imported)
_REGISTRY: dict[str, type[Block]] = {}
# each class's block schema and its checksum, computed once
_SCHEMAS: dict[type, dict[str, Any]] = {}
_CHECKSUMS: dict[type, str] = {}

# what a block can do, for the UI and deployments (storage needs get-directory)
_CAPABILITIES = {
    "read_path": "read-path", "write_path": "write-path", "get_directory": "get-directory",
    "put_directory": "put-directory", "notify": "notify",
}


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _camel_words(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)


def _unwrap_optional(annotation: Any) -> list[Any]:
    """The types a field may hold: ``X | None`` and ``Union[X, Y]`` give their members."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return _unwrap_optional(typing.get_args(annotation)[0])
    return [annotation]


def _is_block_class(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, Block)


class _HybridMethod:
    """``Cls.delete(name)`` and ``instance.delete()`` in one name (as Prefect allows both)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __get__(self, obj: Any, cls: Any) -> Any:
        target = obj if obj is not None else cls

        def bound(*args: Any, **kwargs: Any) -> Any:
            return self.fn(target, *args, **kwargs)

        bound.__doc__ = self.fn.__doc__
        return bound


class Block(BaseModel):
    """Base class of every block. Subclass it, declare fields, optionally set the class
    variables below; then ``MyBlock(...).save("name")`` and ``MyBlock.load("name")``."""

    # hide_input_in_errors: a validation error must not echo a secret given in clear
    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True,
                              hide_input_in_errors=True, ignored_types=(_HybridMethod,))

    _block_type_name: ClassVar[str | None] = None
    _block_type_slug: ClassVar[str | None] = None
    _logo_url: ClassVar[str | None] = None
    _description: ClassVar[str | None] = None
    _documentation_url: ClassVar[str | None] = None
    _code_example: ClassVar[str | None] = None

    _block_document_id: str | None = PrivateAttr(default=None)
    _block_document_name: str | None = PrivateAttr(default=None)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # each class is a type of its own: the name and slug are read from the class itself
        _REGISTRY[cls.get_block_type_slug()] = cls

    # -- the type ------------------------------------------------------------------------------
    @classmethod
    def get_block_type_name(cls) -> str:
        return cls.__dict__.get("_block_type_name") or _camel_words(cls.__name__)

    @classmethod
    def get_block_type_slug(cls) -> str:
        return cls.__dict__.get("_block_type_slug") or slugify(cls.get_block_type_name())

    @classmethod
    def get_description(cls) -> str | None:
        if cls._description:
            return cls._description
        doc = inspect.getdoc(cls)
        return doc.split("\n\n")[0].strip() if doc and cls.__doc__ else None

    @classmethod
    def get_block_capabilities(cls) -> list[str]:
        return sorted(cap for attr, cap in _CAPABILITIES.items()
                      if callable(getattr(cls, attr, None)))

    @classmethod
    def _secret_fields(cls, prefix: str = "") -> list[str]:
        out: list[str] = []
        for name, field in cls.model_fields.items():
            path = f"{prefix}{name}"
            for tp in _unwrap_optional(field.annotation):
                if tp in (SecretStr, SecretBytes):
                    out.append(path)
                elif tp is SecretDict:
                    out.append(f"{path}.*")
                elif _is_block_class(tp):
                    out.extend(tp._secret_fields(f"{path}."))
                elif typing.get_origin(tp) is dict and SecretStr in typing.get_args(tp):
                    out.append(f"{path}.*")
        return sorted(set(out))

    @classmethod
    def _block_references(cls) -> dict[str, dict[str, Any]]:
        refs: dict[str, dict[str, Any]] = {}
        for name, field in cls.model_fields.items():
            blocks = [tp for tp in _unwrap_optional(field.annotation) if _is_block_class(tp)]
            if blocks:
                refs[name] = {"block_type_slug": blocks[0].get_block_type_slug()}
        return refs

    @classmethod
    def get_block_schema(cls) -> dict[str, Any]:
        """The JSON schema stored as this type's block schema (the UI builds forms from it)."""
        cached = _SCHEMAS.get(cls)
        if cached is None:
            cached = _SCHEMAS[cls] = cls._build_block_schema()
        return copy.deepcopy(cached)

    @classmethod
    def _build_block_schema(cls) -> dict[str, Any]:
        schema = cls.model_json_schema()
        schema.pop("description", None)
        schema["block_type_slug"] = cls.get_block_type_slug()
        schema["secret_fields"] = cls._secret_fields()
        schema["block_schema_references"] = cls._block_references()
        nested = {tp.__name__: tp for tp in cls._nested_block_classes(deep=True)}
        for name, definition in schema.get("$defs", {}).items():
            if name in nested:
                definition["block_type_slug"] = nested[name].get_block_type_slug()
        return schema

    @classmethod
    def get_block_schema_checksum(cls) -> str:
        checksum = _CHECKSUMS.get(cls)
        if checksum is None:
            text = json.dumps(cls.get_block_schema(), sort_keys=True, separators=(",", ":"))
            checksum = _CHECKSUMS[cls] = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        return checksum

    @classmethod
    def block_type_info(cls) -> dict[str, Any]:
        return {
            "slug": cls.get_block_type_slug(), "name": cls.get_block_type_name(),
            "description": cls.get_description(), "logo_url": cls._logo_url,
            "documentation_url": cls._documentation_url, "code_example": cls._code_example,
            "module": f"{cls.__module__}:{cls.__qualname__}",
        }

    @classmethod
    def block_schema_info(cls) -> dict[str, Any]:
        return {"checksum": cls.get_block_schema_checksum(), "fields": cls.get_block_schema(),
                "capabilities": cls.get_block_capabilities()}

    @classmethod
    def register_type_and_schema(cls, client: Any = None) -> None:
        """Record this block type and its schema in the store (done by ``save`` too)."""
        c = _client(client)
        for tp in cls._nested_block_classes():
            tp.register_type_and_schema(c)
        c.register_block_type(cls.block_type_info(), cls.block_schema_info())

    @classmethod
    def _ensure_registered(cls, client: Any) -> None:
        """Register once per client and process (``save`` calls this; a type deleted since is
        registered again when the save finds it missing)."""
        done = client.__dict__.setdefault("_registered_block_schemas", set())
        key = (cls.get_block_type_slug(), cls.get_block_schema_checksum())
        if key not in done:
            cls.register_type_and_schema(client)
            done.add(key)

    @classmethod
    def _nested_block_classes(cls, deep: bool = False) -> list[type[Block]]:
        out: list[type[Block]] = []
        for field in cls.model_fields.values():
            for tp in _unwrap_optional(field.annotation):
                if _is_block_class(tp) and tp is not cls and tp not in out:
                    out.append(tp)
                    if deep:
                        out.extend(t for t in tp._nested_block_classes(True) if t not in out)
        return out

    # -- documents -----------------------------------------------------------------------------
    def _to_document(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(data with secrets revealed, {field path: referenced document id})."""
        data: dict[str, Any] = {}
        refs: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Block):
                if value._block_document_id is not None:
                    refs[name] = value._block_document_id
                    continue
                inner, inner_refs = value._to_document()
                data[name] = inner
                refs.update({f"{name}.{k}": v for k, v in inner_refs.items()})
            else:
                data[name] = _reveal(value)
        return data, refs

    def save(self, name: str | None = None, overwrite: bool = False, client: Any = None) -> Any:
        """Save this block as ``name`` (of its type); returns the document id. A name that is
        taken is refused unless ``overwrite=True``. Called in async code (a running event
        loop), it returns an awaitable, as Prefect's does: ``await block.save("name")``."""
        return _sync_or_awaitable(self._save, name, overwrite, client)

    async def asave(self, name: str | None = None, overwrite: bool = False,
                    client: Any = None) -> str:
        return await asyncio.to_thread(self._save, name, overwrite, client)

    def _save(self, name: str | None, overwrite: bool, client: Any) -> str:
        name = name or self._block_document_name
        if name is None:
            raise BlockError("Give the block a name: block.save('my-block').")
        check_block_name(name)
        c = _client(client)
        cls = type(self)
        cls._ensure_registered(c)
        data, refs = self._to_document()
        body = {"name": name, "block_type_slug": cls.get_block_type_slug(),
                "block_schema_checksum": cls.get_block_schema_checksum(),
                "data": data, "references": refs}
        try:
            doc = c.save_block_document(body, overwrite=overwrite)
        except ObjectNotFound:
            # the type (or this schema of it) was deleted since this process registered it
            cls.register_type_and_schema(c)
            doc = c.save_block_document(body, overwrite=overwrite)
        self._block_document_id = str(doc["id"])
        self._block_document_name = name
        redaction.register(secret_texts(self))  # its secrets are masked in this process's logs
        return self._block_document_id

    @classmethod
    def load(cls, name: str, validate: bool = True, client: Any = None) -> Any:
        """Load the block saved as ``name``; on the base class (or any class) ``"type/name"``
        names the type too. In async code it returns an awaitable: ``await MyBlock.load(n)``."""
        return _sync_or_awaitable(cls._load, name, validate, client)

    @classmethod
    async def aload(cls, name: str, validate: bool = True, client: Any = None) -> Any:
        return await asyncio.to_thread(cls._load, name, validate, client)

    @classmethod
    def _load(cls, name: str, validate: bool, client: Any) -> Any:
        if "/" in name:
            slug, name = split_address(name)
        elif cls is Block:
            split_address(name)  # raises: the base class needs the type
            raise AssertionError("unreachable")
        else:
            slug = cls.get_block_type_slug()
        doc = _client(client).read_block_document(slug, name, include_secrets=True)
        target = cls if cls is not Block and cls.get_block_type_slug() == slug else None
        return block_from_document(doc, target, validate=validate)

    @_HybridMethod
    def delete(target: Any, name: str | None = None, client: Any = None) -> Any:  # noqa: N805
        """``block.delete()`` deletes this saved block; ``MyBlock.delete("name")`` one by name
        (awaitable in async code)."""
        return _sync_or_awaitable(_delete, target, name, client)

    @_HybridMethod
    async def adelete(target: Any, name: str | None = None, client: Any = None  # noqa: N805
                      ) -> None:
        await asyncio.to_thread(_delete, target, name, client)


def _delete(target: Any, name: str | None, client: Any) -> None:
    if isinstance(target, Block):
        name = name or target._block_document_name
        slug = target.get_block_type_slug()
    else:
        if name is None:
            raise BlockError("Say which block to delete: MyBlock.delete('name').")
        slug = target.get_block_type_slug() if target is not Block else None
        if slug is None or "/" in name:
            slug, name = split_address(name)
    if name is None:
        raise BlockError("This block was never saved, so there is nothing to delete.")
    _client(client).delete_block_document(slug, name)
    if isinstance(target, Block):
        target._block_document_id = None
        target._block_document_name = None


def _sync_or_awaitable(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` now, or, inside a running event loop (async code), an awaitable running it
    in a worker thread (the store's I/O must not block the loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    return asyncio.to_thread(fn, *args)


def _reveal(value: Any) -> Any:
    if isinstance(value, (SecretStr, SecretBytes)):
        secret = value.get_secret_value()
        return secret.decode() if isinstance(secret, bytes) else secret
    if isinstance(value, SecretDict):
        return to_jsonable_python(value.get_secret_value())
    if isinstance(value, dict):
        return {str(k): _reveal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_reveal(v) for v in value]
    if isinstance(value, BaseModel):
        return {k: _reveal(getattr(value, k)) for k in type(value).model_fields}
    return to_jsonable_python(value)


def block_class_for(slug: str, module: str | None = None) -> type[Block] | None:
    """The class of a block type: imported already, or importable from where it was registered
    (only Legato's own modules and ones already imported are trusted to be imported here)."""
    cls = _REGISTRY.get(slug)
    if cls is None and module:
        mod_name, _, qual = module.partition(":")
        if mod_name.startswith("legato.") or mod_name == "legato":
            try:
                obj: Any = importlib.import_module(mod_name)
                for part in qual.split("."):
                    obj = getattr(obj, part)
                cls = obj if _is_block_class(obj) else None
            except (ImportError, AttributeError):
                cls = None
    return cls


def block_from_document(doc: dict[str, Any], target: type[Block] | None = None,
                        validate: bool = True) -> Any:
    """A block instance from a stored document (as the client returns it, secrets included),
    its references loaded as the block instances they are."""
    slug = doc["block_type"]["slug"]
    cls = target or block_class_for(slug, doc["block_type"].get("module"))
    if cls is None:
        raise BlockError(
            f"The block {slug}/{doc['name']} is of type {slug!r}, whose class is not imported "
            "in this process. Import the module that defines it, or load it with that class: "
            "MyBlock.load(name).")
    data = dict(doc["data"])
    for path, ref in sorted((doc.get("references") or {}).items(), key=lambda kv: kv[0].count(".")):
        field_cls = _field_class(cls, path)
        nested = block_from_document(ref, field_cls, validate=validate)
        _set_path(data, path, nested)
    try:
        block = cls.model_validate(data) if validate else cls.model_construct(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(block)'}: {e['msg']}" for e in exc.errors())
        raise BlockError(
            f"The saved block {slug}/{doc['name']} does not fit the {cls.__name__} class: "
            f"{problems}. Save it again with the current class, or fix the class.") from None
    block._block_document_id = str(doc["id"])
    block._block_document_name = None if doc.get("is_anonymous") else doc["name"]
    redaction.register(secret_texts(block))  # its secrets are masked in this process's logs
    return block


def secret_texts(value: Any) -> list[str]:
    """The clear text of every secret a block holds (its secret fields, its nested blocks')."""
    if isinstance(value, (SecretStr, SecretBytes, SecretDict)):
        return _texts(_reveal(value))
    if isinstance(value, BaseModel):
        return [t for name in type(value).model_fields for t in secret_texts(getattr(value, name))]
    if isinstance(value, dict):
        return [t for v in value.values() for t in secret_texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in secret_texts(v)]
    return []


def _texts(revealed: Any) -> list[str]:
    if isinstance(revealed, dict):
        return [t for v in revealed.values() for t in _texts(v)]
    if isinstance(revealed, list):
        return [t for v in revealed for t in _texts(v)]
    return [revealed] if isinstance(revealed, str) else []


def _field_class(cls: type[Block], path: str) -> type[Block] | None:
    current: Any = cls
    found: list[Any] = []
    for part in path.split("."):
        field = current.model_fields.get(part) if _is_block_class(current) else None
        if field is None:
            return None
        found = [tp for tp in _unwrap_optional(field.annotation) if _is_block_class(tp)]
        current = found[0] if found else None
    return current if len(found) == 1 else None


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def _client(client: Any) -> Any:
    if client is not None:
        return client
    from ..client.factory import get_client  # lazy: the store loads only when a block is used

    return get_client()
