"""``LocalFileSystem``: files in a folder of this machine (or a share mounted on it)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ..blocks.core import Block
from ..exceptions import BlockError
from ._common import (
    check_bytes,
    copy_local_files,
    files_to_upload,
    folder_to_upload,
    list_local_files,
)


def _inside(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


class LocalFileSystem(Block):
    """Read and write files in a folder of the local file system (or a network share mounted on
    this machine), and copy whole folders in and out of it.

    Relative paths are taken from ``basepath``, and no path may leave it. Without a basepath,
    paths are taken from the current working directory, and any path is allowed.
    """

    _block_type_name = "Local File System"
    _documentation_url = "https://docs.python.org/3/library/pathlib.html"
    _code_example = (
        "from legato.filesystems import LocalFileSystem\n\n"
        'local_file_system_block = LocalFileSystem.load("BLOCK_NAME")'
    )

    basepath: str | None = Field(
        default=None,
        description="The folder this block reads and writes in (`~` is expanded). Relative "
        "paths given to the block are taken from here. Empty: the working directory.",
    )

    @field_validator("basepath", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str) and value.startswith("file://"):
            value = value[len("file://"):]
        if value == "":
            return None
        return value

    # -- paths ---------------------------------------------------------------------------------
    def _base(self) -> Path:
        if self.basepath is None:
            return Path.cwd()
        return Path(os.path.abspath(os.path.expanduser(self.basepath)))

    def _resolve_path(self, path: str | os.PathLike[str] | None) -> Path:
        """The absolute path ``path`` names: relative to the basepath, and (when a basepath is
        set) refused if it lies outside it."""
        base = self._base()
        if path is None or os.fspath(path) == "":
            return base
        target = Path(os.path.normpath(base / os.path.expanduser(os.fspath(path))))
        if self.basepath is not None and not _inside(target, base):
            raise BlockError(
                f"The path {os.fspath(path)!r} is outside this block's basepath {str(base)!r} "
                f"(it names {str(target)!r}). Give a path inside the basepath, or use a block "
                "whose basepath contains it.")
        return target

    # -- files ---------------------------------------------------------------------------------
    def read_path(self, path: str) -> bytes:
        """The bytes of the file at ``path``."""
        target = self._resolve_path(path)
        if target.is_dir():
            raise IsADirectoryError(
                f"{str(target)!r} is a folder, not a file: read_path reads one file; copy a "
                "folder with get_directory().")
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"There is no file at {str(target)!r} (basepath {str(self._base())!r}). Check "
                "the path, or write the file first.") from None

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` to the file at ``path`` (creating its folders, replacing a file that
        is there); returns the file's absolute path."""
        data = check_bytes(content)
        target = self._resolve_path(path)
        if target.is_dir():
            raise IsADirectoryError(
                f"{str(target)!r} is a folder, so no file can be written there. Give the path "
                "of a file.")
        target.parent.mkdir(parents=True, exist_ok=True)
        # write beside the target and move it into place: readers never see half a file
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(target)

    # -- the buckets' calls (GcsBucket, S3Bucket): a local folder as a bucket -------------------
    def upload_from_path(self, from_path: str | os.PathLike[str], to_path: str | None = None
                         ) -> str:
        """Copy the local file ``from_path`` into this folder at ``to_path`` (its file name
        when omitted), as a bucket block uploads; returns the copy's path in the block."""
        local = Path(from_path)
        if not local.is_file():
            raise FileNotFoundError(f"Cannot upload {str(from_path)!r}: no such local file.")
        name = os.fspath(to_path) if to_path is not None else local.name
        self.write_path(name, local.read_bytes())
        return name

    def download_object_to_path(self, from_path: str, to_path: str | os.PathLike[str] | None
                                = None) -> Path:
        """Copy the file ``from_path`` of this folder to the local ``to_path`` (its file name in
        the working directory when omitted); returns where it went."""
        target = Path(to_path) if to_path is not None else Path(Path(from_path).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.read_path(from_path))
        return target

    # -- folders -------------------------------------------------------------------------------
    def get_directory(self, from_path: str | None = None, local_path: str | None = None) -> None:
        """Copy the folder ``from_path`` (default: the basepath) into ``local_path`` (default:
        the working directory): its contents land directly in ``local_path``. A file given as
        ``from_path`` is copied into ``local_path``."""
        source = self._resolve_path(from_path)
        dest = Path(os.path.abspath(os.path.expanduser(local_path or ".")))
        if source.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / source.name)
            return
        if not source.is_dir():
            raise FileNotFoundError(
                f"There is no folder at {str(source)!r} to copy (basepath "
                f"{str(self._base())!r}). Check from_path.")
        if os.path.realpath(source) == os.path.realpath(dest):
            return
        files = list_local_files(source, skip=dest)
        dest.mkdir(parents=True, exist_ok=True)
        copy_local_files(source, dest, files)

    def put_directory(self, local_path: str | None = None, to_path: str | None = None,
                      ignore_file: str | None = None) -> int:
        """Copy the local folder ``local_path`` (default: the working directory) into
        ``to_path`` (default: the basepath), skipping what the gitignore-style ``ignore_file``
        lists. Returns the number of files copied (or, when source and destination are the same
        folder, the number of files already in place)."""
        dest = self._resolve_path(to_path)
        source = folder_to_upload(local_path)
        if os.path.realpath(source) == os.path.realpath(dest):
            return len(files_to_upload(source, ignore_file))
        if dest.exists() and not dest.is_dir():
            raise NotADirectoryError(
                f"{str(dest)!r} is a file, so a folder cannot be copied into it. Give a folder "
                "as to_path.")
        files = files_to_upload(source, ignore_file, skip=dest)
        dest.mkdir(parents=True, exist_ok=True)
        return copy_local_files(source, dest, files)
