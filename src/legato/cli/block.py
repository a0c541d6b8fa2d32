"""`legato block`: saved blocks and block types (embedded, or through the server when
LEGATO_API_URL is set). Secret values are always shown as ********."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._common import console, exit_with_error, handles_errors, print_json

app = typer.Typer(help="Register block types; list, inspect and delete saved blocks.",
                  no_args_is_help=True)
type_app = typer.Typer(help="Block types: what kinds of blocks can be saved.",
                       no_args_is_help=True)
app.add_typer(type_app, name="type")

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client() -> Any:
    from ..client.factory import get_client  # lazy: the store, for CLI start-up time

    return get_client()


def _builtins(client: Any) -> None:
    """Embedded: make sure Legato's own block types are listed (a server did it on start)."""
    from ..blocks.builtin import register_builtin_block_types  # lazy: pydantic models

    if not getattr(client, "api", None):
        register_builtin_block_types(client)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _doc_json(doc: dict[str, Any]) -> dict[str, Any]:
    return _jsonable({
        "id": doc["id"], "name": doc["name"], "block_type_slug": doc["block_type"]["slug"],
        "block_type_name": doc["block_type"]["name"], "data": doc["data"],
        "references": {k: f"{v['block_type']['slug']}/{v['name']}"
                       for k, v in (doc.get("references") or {}).items()},
        "capabilities": doc["block_schema"]["capabilities"],
        "created": doc["created"], "updated": doc["updated"],
    })


@app.command("register")
@handles_errors
def register(
    module: Annotated[str | None, typer.Option("--module", "-m", help="A module to import, "
                                               "e.g. legato.gcp.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A .py file defining "
                                              "Block subclasses.")] = None,
) -> None:
    """Register every block type a module or file defines, so the UI and CLI know them."""
    from ..blocks.builtin import block_classes_in  # lazy: pydantic models

    if (module is None) == (file is None):
        exit_with_error("Give one of --module/-m MODULE or --file/-f FILE.")
    if module is not None:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            exit_with_error(f"Cannot import module {module!r}: {exc}. Is it installed, or on "
                            "PYTHONPATH?")
    else:
        assert file is not None
        if not file.is_file():
            exit_with_error(f"No such file: {file}.")
        spec = importlib.util.spec_from_file_location(f"_legato_blocks_{file.stem}", file)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:  # noqa: BLE001 - the user's file: say what broke
            exit_with_error(f"Cannot load {file}: {type(exc).__name__}: {exc}")
    classes = block_classes_in(mod)
    if not classes:
        exit_with_error(f"{module or file} defines no Block subclasses; nothing registered.")
    client = _client()
    for cls in classes:
        cls.register_type_and_schema(client)
    names = ", ".join(c.get_block_type_slug() for c in classes)
    console().print(f"Registered {len(classes)} block type(s) from {module or file}: {names}.")


@app.command("ls")
@handles_errors
def ls(block_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this type "
                                                      "(its slug).")] = None,
       json_out: JsonOut = False) -> None:
    """List saved blocks."""
    docs = _client().read_block_documents(block_type, limit=10_000)
    if json_out:
        print_json([_doc_json(d) for d in docs])
        return
    table = Table("Type", "Name", "Address (for .load and -sb)")
    table.add_column("ID", overflow="fold", min_width=36)
    for d in docs:
        table.add_row(d["block_type"]["name"], d["name"],
                      f"{d['block_type']['slug']}/{d['name']}", str(d["id"]))
    console().print(table)


@app.command("inspect")
@handles_errors
def inspect(address: Annotated[str, typer.Argument(help="TYPE/NAME, e.g. gcs-bucket/my-bucket, "
                                                   "or a block id.")],
            json_out: JsonOut = False) -> None:
    """Show a saved block (secret values masked)."""
    doc = _read(address)
    shown = _doc_json(doc)
    if json_out:
        print_json(shown)
        return
    out = console()
    out.print(f"{shown['block_type_slug']}/{shown['name']}  ({shown['block_type_name']})")
    out.print(f"id: {shown['id']}   updated: {shown['updated']}")
    out.print(json.dumps(shown["data"], indent=2, ensure_ascii=False))
    for field, target in shown["references"].items():
        out.print(f"{field} -> {target}")


def _read(address: str) -> dict[str, Any]:
    from ..schemas.blocks import split_address  # lazy: pydantic, for CLI start-up time

    client = _client()
    if "/" not in address and len(address) == 36:
        return client.read_block_document_by_id(address)
    slug, name = split_address(address)
    return client.read_block_document(slug, name)


@app.command("delete")
@handles_errors
def delete(address: Annotated[str, typer.Argument(help="TYPE/NAME, or a block id.")]) -> None:
    """Delete a saved block (refused while another block holds it)."""
    from ..schemas.blocks import split_address  # lazy: pydantic, for CLI start-up time

    client = _client()
    if "/" not in address and len(address) == 36:
        client.delete_block_document_by_id(address)
    else:
        client.delete_block_document(*split_address(address))
    console().print(f"Deleted block {address}.")


@app.command("generate-key")
def generate_key() -> None:
    """Print a new encryption key for LEGATO_ENCRYPTION_KEY (share it with every server)."""
    from ..store.encryption import generate_key as make  # lazy: cryptography

    typer.echo(make())


@type_app.command("ls")
@handles_errors
def type_ls(json_out: JsonOut = False) -> None:
    """List block types."""
    client = _client()
    _builtins(client)
    types = client.read_block_types()
    if json_out:
        print_json(_jsonable([{k: t[k] for k in ("slug", "name", "description", "module")}
                              for t in types]))
        return
    table = Table("Slug", "Name", "Description")
    for t in types:
        table.add_row(t["slug"], t["name"], (t.get("description") or "").split("\n")[0])
    console().print(table)


@type_app.command("inspect")
@handles_errors
def type_inspect(slug: str, json_out: JsonOut = False) -> None:
    """Show a block type and its newest schema."""
    client = _client()
    _builtins(client)
    t = client.read_block_type(slug)
    schema = t["block_schemas"][0] if t["block_schemas"] else None
    shown = _jsonable({"slug": t["slug"], "name": t["name"], "description": t["description"],
                       "code_example": t["code_example"], "module": t["module"],
                       "capabilities": schema["capabilities"] if schema else [],
                       "schema": schema["fields"] if schema else None})
    if json_out:
        print_json(shown)
        return
    out = console()
    out.print(f"{shown['name']} ({shown['slug']})")
    if shown["description"]:
        out.print(shown["description"])
    if shown["capabilities"]:
        out.print("capabilities: " + ", ".join(shown["capabilities"]))
    if shown["schema"]:
        props = shown["schema"].get("properties", {})
        secret = set(shown["schema"].get("secret_fields", []))
        for field, spec in props.items():
            tag = " (secret)" if field in secret or f"{field}.*" in secret else ""
            out.print(f"  {field}{tag}: {spec.get('description', '')}")
    if shown["code_example"]:
        out.print(shown["code_example"])


@type_app.command("delete")
@handles_errors
def type_delete(slug: str) -> None:
    """Delete a block type that has no saved blocks."""
    _client().delete_block_type(slug)
    console().print(f"Deleted block type {slug}.")
