"""``RemoteFileSystem``: files anywhere fsspec reaches (S3, GCS, Azure, memory, SFTP, ...)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
from pydantic import Field, PrivateAttr, field_validator

from ..blocks.core import Block
from ..blocks.fields import SecretDict
from ..exceptions import BlockError, MissingExtraError
from ._common import (
    check_bytes,
    files_to_upload,
    folder_to_upload,
    safe_relative,
)

# the extra that brings a scheme's fsspec implementation
_EXTRAS = {"s3": "aws", "s3a": "aws", "gs": "gcp", "gcs": "gcp"}
# object stores have no real folders: creating one first is useless (for s3fs, it creates buckets)
_NO_FOLDERS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory", "http", "https"}


def _split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> (``s3://bucket``, ``/a/b``); the root gives ``''``."""
    parts = urlsplit(url)
    path = posixpath.normpath(parts.path) if parts.path not in ("", "/") else ""
    return f"{parts.scheme}://{parts.netloc}", "" if path in ("/", ".") else path


def _has_scheme(path: str) -> bool:
    scheme = urlsplit(path).scheme
    return "://" in path and len(scheme) > 1


def _gcs_for_emulator(scheme: str, options: dict[str, Any]) -> Any:
    """With STORAGE_EMULATOR_HOST set, gcsfs's plain file system for gs:// and gcs://.

    gcsfs's default class first asks Google's gRPC storage-control API for the bucket's layout;
    an emulator does not speak it, so every bucket would wait out a 60 s timeout. The plain class
    speaks only the JSON API, which gcsfs already points at the emulator."""
    if scheme not in ("gs", "gcs") or not os.environ.get("STORAGE_EMULATOR_HOST"):
        return None
    import gcsfs.core  # lazy: gcsfs comes with the gcp extra

    return gcsfs.core.GCSFileSystem(skip_instance_cache=True, **options)


class RemoteFileSystem(Block):
    """Read and write files on any file system fsspec reaches, addressed by a URL: an S3 or GCS
    bucket, Azure storage, an SFTP server, in-memory storage, and more.

    ``settings`` go to fsspec as they are (credentials, ``client_kwargs``, ...). They usually
    hold credentials, so they are kept secret: listings show every value as ``********``.
    """

    _block_type_name = "Remote File System"
    _documentation_url = "https://filesystem-spec.readthedocs.io/en/latest/"
    _code_example = (
        "from legato.filesystems import RemoteFileSystem\n\n"
        'remote_file_system_block = RemoteFileSystem.load("BLOCK_NAME")'
    )

    basepath: str = Field(
        description="Where this block reads and writes, as a URL with a scheme: "
        "s3://bucket/prefix, gcs://bucket/prefix, az://container/prefix, memory://name. "
        "Relative paths given to the block are taken from here.",
    )
    settings: SecretDict = Field(
        default_factory=SecretDict,
        description="Options for the fsspec file system, such as credentials "
        '({"key": ..., "secret": ...} for S3) or {"client_kwargs": {"endpoint_url": ...}}. '
        "Kept secret.",
    )

    _fs_cache: tuple[str, Any] | None = PrivateAttr(default=None)

    @field_validator("basepath")
    @classmethod
    def _check_basepath(cls, value: str) -> str:
        if not _has_scheme(value):
            raise ValueError(
                f"The basepath {value!r} has no scheme: a RemoteFileSystem needs a URL such as "
                "'s3://bucket/prefix', 'gcs://bucket/prefix' or 'memory://name'. For a folder "
                "of this machine, use LocalFileSystem.")
        return value

    # -- the fsspec file system ----------------------------------------------------------------
    @property
    def filesystem(self) -> fsspec.AbstractFileSystem:
        """The fsspec file system of the basepath's scheme, made with ``settings``."""
        scheme = urlsplit(self.basepath).scheme
        options = self.settings.get_secret_value()
        key = hashlib.sha256(
            (scheme + json.dumps(options, sort_keys=True, default=repr)).encode()).hexdigest()
        if self._fs_cache is not None and self._fs_cache[0] == key:
            return self._fs_cache[1]
        try:
            # a fresh instance: fsspec's cache would keep one made under other env settings
            fs = _gcs_for_emulator(scheme, options) or fsspec.filesystem(
                scheme, skip_instance_cache=True, **options)
        except ImportError as exc:
            extra = _EXTRAS.get(scheme)
            hint = (f"Install the extra: pip install 'legato[{extra}]'" if extra
                    else "Install the package fsspec names above.")
            raise MissingExtraError(
                f"RemoteFileSystem cannot open {scheme}:// URLs: {exc}. {hint}") from None
        except ValueError as exc:
            raise BlockError(
                f"fsspec does not know the scheme {scheme!r} of the basepath "
                f"{self.basepath!r} ({exc}). Use a scheme fsspec supports, such as s3, gcs, "
                "az or memory.") from None
        except TypeError as exc:
            raise BlockError(
                f"The block's settings do not fit the {scheme}:// file system: {exc}. Use the "
                "options its fsspec implementation accepts.") from None
        self._fs_cache = (key, fs)
        return fs

    @contextmanager
    def _errors(self, url: str) -> Iterator[None]:
        try:
            yield
        except PermissionError as exc:
            raise PermissionError(
                f"Access to {url!r} was refused ({exc}). Check the credentials in the block's "
                "settings and their permissions.") from None

    def _needs_folders(self) -> bool:
        return urlsplit(self.basepath).scheme not in _NO_FOLDERS

    # -- paths ---------------------------------------------------------------------------------
    def _resolve_path(self, path: str | None) -> str:
        """The full URL ``path`` names: relative to the basepath, or a URL inside it; anything
        outside the basepath is refused."""
        prefix, base = _split_url(self.basepath)
        if path is None or path == "":
            rel = ""
        elif _has_scheme(path):
            other_prefix, other = _split_url(path)
            if other_prefix != prefix:
                raise BlockError(
                    f"The path {path!r} is not on this block's file system {prefix!r} (basepath "
                    f"{self.basepath!r}). Give a path relative to the basepath, or a URL inside "
                    "it.")
            if other == base:
                rel = ""
            elif base == "" or other.startswith(base + "/"):
                rel = other[len(base):].lstrip("/")
            else:
                raise BlockError(
                    f"The path {path!r} is outside this block's basepath {self.basepath!r}. "
                    "Give a path inside it, or use a block whose basepath contains it.")
        else:
            rel = safe_relative(path, "path", self.basepath)
        return prefix + base + ("/" + rel if rel else "")

    # -- files ---------------------------------------------------------------------------------
    def read_path(self, path: str) -> bytes:
        """The bytes of the file at ``path``."""
        url = self._resolve_path(path)
        fs = self.filesystem
        with self._errors(url):
            try:
                return fs.cat_file(url)
            except (FileNotFoundError, IsADirectoryError):
                if fs.isdir(url):
                    raise IsADirectoryError(
                        f"{url!r} is a folder, not a file: read_path reads one file; copy a "
                        "folder with get_directory().") from None
                raise FileNotFoundError(
                    f"There is no file at {url!r}. Check the path (relative to the basepath "
                    f"{self.basepath!r}) and that the bucket exists.") from None

    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` to the file at ``path`` (replacing one that is there); returns its
        URL."""
        data = check_bytes(content)
        url = self._resolve_path(path)
        fs = self.filesystem
        with self._errors(url):
            try:
                if self._needs_folders():
                    fs.makedirs(posixpath.dirname(url), exist_ok=True)
                fs.pipe_file(url, data)
            except FileNotFoundError as exc:
                raise FileNotFoundError(
                    f"Could not write {url!r}: {exc}. Check that the bucket (or folder) of the "
                    f"basepath {self.basepath!r} exists.") from None
        return url

    # -- folders -------------------------------------------------------------------------------
    def get_directory(self, from_path: str | None = None, local_path: str | None = None) -> None:
        """Download the folder ``from_path`` (default: the basepath) into ``local_path``
        (default: the working directory): its contents land directly in ``local_path``. A file
        given as ``from_path`` is downloaded into ``local_path``."""
        url = self._resolve_path(from_path)
        dest = Path(os.path.abspath(os.path.expanduser(local_path or ".")))
        fs = self.filesystem
        with self._errors(url):
            if fs.isfile(url):
                dest.mkdir(parents=True, exist_ok=True)
                fs.get_file(url, str(dest / posixpath.basename(url)))
                return
            root = fs._strip_protocol(url).rstrip("/")
            found = fs.find(url, withdirs=False, detail=False)
            if not found and not fs.isdir(url):
                raise FileNotFoundError(
                    f"There is nothing at {url!r} to download. Check from_path (relative to "
                    f"the basepath {self.basepath!r}) and that the bucket exists.")
            rpaths: list[str] = []
            lpaths: list[str] = []
            for remote in sorted(found):
                if not remote.startswith(root + "/") and root:
                    continue
                rel = safe_relative(remote[len(root):], "file", url)
                if not rel:
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                rpaths.append(remote)
                lpaths.append(str(target))
            if rpaths:
                fs.get(rpaths, lpaths)

    def put_directory(self, local_path: str | None = None, to_path: str | None = None,
                      ignore_file: str | None = None) -> int:
        """Upload the local folder ``local_path`` (default: the working directory) to
        ``to_path`` (default: the basepath), skipping what the gitignore-style ``ignore_file``
        lists. Returns the number of files uploaded."""
        url = self._resolve_path(to_path)
        source = folder_to_upload(local_path)
        files = files_to_upload(source, ignore_file)
        fs = self.filesystem
        root = fs._strip_protocol(url).rstrip("/")
        rpaths = [f"{root}/{rel}" for rel in files]
        with self._errors(url):
            try:
                if self._needs_folders():
                    for folder in sorted({posixpath.dirname(r) for r in rpaths}):
                        fs.makedirs(folder, exist_ok=True)
                if files:
                    fs.put([str(source / rel) for rel in files], rpaths)
            except FileNotFoundError as exc:
                raise FileNotFoundError(
                    f"Could not upload to {url!r}: {exc}. Check that the bucket (or folder) of "
                    f"the basepath {self.basepath!r} exists.") from None
        return len(files)
