#!/usr/bin/env python
"""Write docs/cli-reference.md from the `legato` command itself (every command, its arguments
and options, from the same definitions `--help` prints).

    python tools/cli_reference.py            # rewrite docs/cli-reference.md
    python tools/cli_reference.py --check    # exit 1 if it is out of date (the test suite does)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import typer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "cli-reference.md"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _param_rows(cmd: Any, ctx: Any) -> list[str]:
    rows = []
    for p in cmd.params:
        if p.name in ("help", "install_completion", "show_completion") or p.hidden:
            continue
        if p.param_type_name == "argument":
            name = f"`{p.name.upper()}`"
            kind = _type_name(p, ctx) + ("" if p.required else ", optional")
            rows.append(f"| {name} | argument: {_cell(kind)} | {_cell(p.help)} |")
            continue
        record = p.get_help_record(ctx)
        names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        kind = "flag" if p.is_flag else _type_name(p, ctx)
        if p.multiple:
            kind += ", repeatable"
        helptext = record[1] if record else (p.help or "")
        rows.append(f"| {names} | {_cell(kind)} | {_cell(helptext)} |")
    return rows


def _type_name(p: Any, ctx: Any) -> str:
    return str(p.display_type(ctx)).strip("<>") or "value"


def _walk(cmd: Any, path: list[str], out: list[str]) -> None:
    # Typer carries its own copy of click: duck typing, not isinstance
    ctx = cmd.context_class(cmd, info_name=" ".join(path))
    if path[1:]:
        level = "#" * min(len(path) + 0, 4)
        out.append(f"{level} `{' '.join(path)}`")
        out.append("")
        if cmd.help:
            out.append(cmd.help.strip().split("\f")[0].strip())
            out.append("")
        pieces = cmd.collect_usage_pieces(ctx)
        out.append(f"```\n{' '.join(path)} {' '.join(pieces)}\n```")
        out.append("")
        rows = _param_rows(cmd, ctx)
        if rows:
            out += ["| argument / option | kind | what it does |",
                    "| --- | --- | --- |", *rows, ""]
    if hasattr(cmd, "list_commands"):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            _walk(sub, [*path, name], out)


def render() -> str:
    from legato.cli import app

    root = typer.main.get_command(app)
    out = ["# CLI reference", "",
           "Every `legato` command, generated from the command itself by "
           "`python tools/cli_reference.py` (a test checks it is current). `legato COMMAND "
           "--help` prints the same. Guides: [cli.md](cli.md).", ""]
    _walk(root, ["legato"], out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python tools/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
