"""The docs a newcomer reads stay true: the CLI reference is the CLI's own, and every relative
link in the README and docs/ points at a file that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def test_the_cli_reference_is_generated_from_the_current_cli() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "cli-reference.md").read_text()
    for command in ("legato server start", "legato agent start", "legato deployment run",
                    "legato block ls", "legato flow-run logs", "legato work-pool create"):
        assert f"`{command}`" in text, command


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_commands_help_prints() -> None:
    """`legato ... --help` works for every command the reference lists (rich markup in a help
    text once broke one)."""
    from typer.testing import CliRunner

    from legato.cli import app

    text = (ROOT / "docs" / "cli-reference.md").read_text()
    commands = re.findall(r"^#+ `legato ([a-z -]+)`$", text, re.M)
    assert len(commands) > 50
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, (command, result.output[-500:])
