"""uv.lock stays the lock of pyproject.toml: `make demo` and `make test` install from it with
`uv sync --frozen`, which installs the lock as it is even when pyproject.toml says otherwise, so
a requirement changed without `make lock` (or `uv lock`) would silently not be installed.

The check is uv's own (`uv lock --check`, the test `uv sync --locked` makes), run with the uv the
Makefile bootstraps (`make uv`: the one pinned version that writes the lock), offline and with an
empty cache: a lock that matches is confirmed from the two files alone; one that does not makes
uv try to resolve again, which fails at once without the network (never reached here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
UV_VERSION = PIN.group(1) if PIN else "?"
UV = ROOT / ".tools" / f"uv-{UV_VERSION}" / "bin" / "uv"


def lock_check(project: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    if not UV.exists():
        pytest.fail(f"{UV.relative_to(ROOT)} is missing: run `make uv` (or `make install-test`), "
                    f"which installs uv {UV_VERSION} from PyPI into .tools/")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cache), "UV_CACHE_DIR": str(cache),
           "UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    return subprocess.run([str(UV), "lock", "--check", "--offline", "--python", sys.executable],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, project / name)
    return project


def test_the_uv_the_makefile_pins_is_the_one_bootstrapped() -> None:
    assert PIN, "Makefile has no `UV_VERSION := ...` line"
    if not UV.exists():
        pytest.fail(f"{UV.relative_to(ROOT)} is missing: run `make uv`")
    out = subprocess.run([str(UV), "--version"], capture_output=True, text=True, timeout=30)
    assert out.stdout.split()[:2] == ["uv", UV_VERSION], out.stdout


def test_the_committed_lock_matches_pyproject(tmp_path: Path) -> None:
    done = lock_check(ROOT, tmp_path / "cache")
    assert done.returncode == 0, (
        "uv.lock does not match pyproject.toml: run `make lock` (every dependency to its newest "
        "allowed version) or `.tools/uv-*/bin/uv lock` (only what changed), and commit uv.lock.\n"
        + done.stdout + done.stderr)


def test_an_untouched_copy_passes(tmp_path: Path) -> None:
    """The control for the cases below: copying the files alone does not fail the check."""
    done = lock_check(copy_project(tmp_path), tmp_path / "cache")
    assert done.returncode == 0, done.stderr


EDITS = {
    "a raised lower bound": ('"pydantic>=2.5"', '"pydantic>=2.6"'),
    "a new dependency": ('"pyyaml>=6.0",', '"pyyaml>=6.0",\n    "attrs>=22",'),
    "a removed dependency": ('    "jinja2>=3.1",\n', ""),
    "a changed extra": ('"s3fs>=2024.2"', '"s3fs>=2024.3"'),
    "a new extra": ("[project.optional-dependencies]\n",
                    '[project.optional-dependencies]\nyaml = ["ruamel.yaml>=0.18"]\n'),
    "a new cap for the lock only": ("[tool.pytest.ini_options]\n", '[tool.uv]\nconstraint-'
                                    'dependencies = ["pandas<3"]\n\n[tool.pytest.ini_options]\n'),
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_pyproject_changed_without_relocking_fails_the_check(tmp_path: Path, edit: str) -> None:
    project = copy_project(tmp_path)
    old, new = EDITS[edit]
    text = (project / "pyproject.toml").read_text()
    assert old in text, f"pyproject.toml no longer has {old!r}: update this test"
    (project / "pyproject.toml").write_text(text.replace(old, new, 1))

    done = lock_check(project, tmp_path / "cache")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    # uv tried to resolve again (and could not, offline): the lock was found stale, not unreadable
    assert "No solution found" in out or "needs to be updated" in out, out
    assert "Failed to parse" not in out, out
