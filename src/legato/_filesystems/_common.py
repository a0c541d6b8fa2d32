"""What the file-system blocks share: ignore files, walking a local tree, safe relative paths.

Ignore files (``.legatoignore``, or any ``.gitignore``) follow git's rules: ``#`` comments, ``!``
to re-include, a trailing ``/`` for directories only, a ``/`` at the start or in the middle to
anchor a pattern at the root, ``*``, ``?``, ``[a-z]`` and ``**`` for any number of folders. A file
inside an ignored folder stays ignored (as in git).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import BlockError


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _class_to_regex(pattern: str, i: int) -> tuple[str, int] | None:
    """``[...]`` at ``pattern[i]`` -> (regex, index after it), or None when it is not closed."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in "!^"
    if negate:
        j += 1
    start = j
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    if j >= len(pattern):
        return None
    body = []
    k = start
    while k < j:
        c = pattern[k]
        if c == "\\" and k + 1 < j:
            k += 1
            body.append("\\" + pattern[k])
        elif c in "\\^[]":
            body.append("\\" + c)
        else:
            body.append(c)
        k += 1
    return "(?!/)[" + ("^" if negate else "") + "".join(body) + "]", j + 1


def _glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i):
            at_start = i == 0 or pattern[i - 1] == "/"
            after = i + 2
            if at_start and after < n and pattern[after] == "/":
                out.append("(?:.*/)?")  # "**/" : any number of folders, or none
                i = after + 1
                continue
            if at_start and after == n:
                out.append(".*")  # a trailing "/**": everything inside
                i = after
                continue
            out.append("[^/]*")  # other runs of stars are plain stars
            i = after
            while i < n and pattern[i] == "*":
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            found = _class_to_regex(pattern, i)
            if found is not None:
                out.append(found[0])
                i = found[1]
                continue
            out.append(re.escape(c))
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class IgnoreRules:
    """Compiled ignore patterns; :meth:`ignored` answers for a path relative to the root."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[_Rule] = []
        for raw in lines:
            line = raw.rstrip("\r\n")
            # trailing spaces are dropped unless escaped with a backslash
            stripped = line.rstrip(" ")
            if stripped.endswith("\\") and len(stripped) < len(line):
                stripped += " "
            line = stripped
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            elif line.startswith(("\\!", "\\#")):
                line = line[1:]
            dir_only = line.endswith("/") and not line.endswith("\\/")
            line = line.rstrip("/") if dir_only else line
            if not line:
                continue
            anchored = "/" in line
            line = line.lstrip("/")
            regex = _glob_to_regex(line)
            if not anchored:
                regex = "(?:.*/)?" + regex
            self.rules.append(_Rule(re.compile(regex + r"\Z", re.DOTALL), negate, dir_only))

    @classmethod
    def from_file(cls, path: Path) -> IgnoreRules:
        try:
            return cls(path.read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"The ignore file {str(path)!r} does not exist. Give the path of a "
                "gitignore-style file (such as .legatoignore), or ignore_file=None.") from None

    def ignored(self, rel: str, is_dir: bool) -> bool:
        result = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(rel):
                result = not rule.negate
        return result


def find_ignore_file(ignore_file: str | os.PathLike[str], local_root: Path) -> Path:
    """An ignore file named relative to the working directory, else to the folder uploaded."""
    path = Path(ignore_file).expanduser()
    if path.is_absolute() or path.exists():
        return path
    beside = local_root / path
    return beside if beside.exists() else path


def list_local_files(root: Path, rules: IgnoreRules | None = None,
                     skip: Path | None = None) -> list[str]:
    """The files under ``root`` (relative, ``/``-separated, sorted), minus ignored ones and the
    folder ``skip`` (a destination inside the source). Symlinked folders are followed once."""
    files: list[str] = []
    seen: set[str] = set()
    skip_real = os.path.realpath(skip) if skip is not None else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or (skip_real is not None and real == skip_real):
            dirnames[:] = []
            continue
        seen.add(real)
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in sorted(dirnames):
            if rules is None or not rules.ignored(prefix + d, True):
                keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = prefix + f
            if rules is not None and rules.ignored(rel, False):
                continue
            if os.path.isfile(os.path.join(dirpath, f)):  # not a broken link, fifo or socket
                files.append(rel)
    return sorted(files)


def copy_local_files(src: Path, dst: Path, files: list[str]) -> int:
    """Copy ``files`` (relative to ``src``) to the same places under ``dst``; returns how many."""
    for rel in files:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    return len(files)


def safe_relative(path: str, what: str, base: str) -> str:
    """``path`` normalized as a relative ``/`` path ('' for the base itself); one that climbs out
    of ``base`` with ``..`` is refused."""
    rel = posixpath.normpath(path.replace("\\", "/").lstrip("/")) if path else "."
    if rel == ".." or rel.startswith("../"):
        raise BlockError(
            f"The {what} {path!r} is outside the block's base path {base!r}: give a path inside "
            "it (without '..' climbing above it), or change the block's basepath.")
    return "" if rel == "." else rel


def check_bytes(content: object) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    raise TypeError(
        f"write_path takes bytes, not {type(content).__name__}: encode text first, for example "
        "block.write_path('notes.txt', text.encode()).")


def folder_to_upload(local_path: str | os.PathLike[str] | None) -> Path:
    """The local folder ``put_directory`` uploads (default: the working directory)."""
    source = Path(os.path.abspath(os.path.expanduser(local_path or ".")))
    if not source.exists():
        raise FileNotFoundError(
            f"There is no folder {str(source)!r} to upload. Give an existing folder as "
            "local_path.")
    if not source.is_dir():
        raise NotADirectoryError(
            f"put_directory uploads a folder, and {str(source)!r} is not one. Give the folder "
            "to upload as local_path.")
    return source


def files_to_upload(source: Path, ignore_file: str | os.PathLike[str] | None,
                    skip: Path | None = None) -> list[str]:
    """The files under ``source`` that the gitignore-style ``ignore_file`` (if any) keeps, less
    the folder ``skip``."""
    rules = IgnoreRules.from_file(find_ignore_file(ignore_file, source)) if ignore_file else None
    return list_local_files(source, rules, skip=skip)
