"""The block types Legato ships, registered in the store by the server on start and by
``legato block type ls`` / ``legato block register`` (so the UI and CLI list them before any
block of them is saved). Their modules import no cloud SDK until a block is used."""

from __future__ import annotations

import importlib
from typing import Any

from .core import Block

BUILTIN_MODULES = (
    "legato.blocks.system",
    "legato.filesystems",
    "legato.gcp",
    "legato.aws",
    "legato.blocks.notifications",
    "legato.blocks.warehouse",
    "legato.infrastructure",
)


def builtin_block_classes() -> list[type[Block]]:
    classes: list[type[Block]] = []
    for name in BUILTIN_MODULES:
        classes.extend(block_classes_in(importlib.import_module(name)))
    return classes


def block_classes_in(module: Any) -> list[type[Block]]:
    """The block classes a module defines or exports (each once, in a stable order); a module
    may name them in ``__block_types__`` (leaving out an abstract base)."""
    seen: dict[str, type[Block]] = {}
    for value in getattr(module, "__block_types__", None) or vars(module).values():
        if (isinstance(value, type) and issubclass(value, Block) and value is not Block
                and not value.__name__.startswith("_")):  # a private base is no block type
            seen.setdefault(value.get_block_type_slug(), value)
    return [seen[k] for k in sorted(seen)]


def register_block_classes(store: Any, classes: list[type[Block]]) -> None:
    """Register each class's type and schema through ``store`` (a client, or the server's
    BlockCore: both answer ``register_block_type``)."""
    for cls in classes:
        store.register_block_type(cls.block_type_info(), cls.block_schema_info())


def register_builtin_block_types(store: Any) -> None:
    register_block_classes(store, builtin_block_classes())
