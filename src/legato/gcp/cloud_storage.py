"""Google Cloud Storage: the ``GcsBucket`` block (a bucket, an optional folder in it, credentials).

``GcsBucket.load("my-bucket").upload_from_path(from_path=p, to_path=p)`` uploads a local file;
``read_path`` / ``write_path`` / ``get_directory`` / ``put_directory`` make the block usable as a
deployment's code storage or a result store. Every object path is taken relative to
``bucket_folder``. With ``STORAGE_EMULATOR_HOST`` set, every call goes to that emulator (see
:mod:`legato.gcp.credentials`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from pydantic import Field, field_validator

from .._filesystems._common import (
    files_to_upload,
    folder_to_upload,
    list_local_files,
    safe_relative,
)
from .._filesystems._dataframes import DataFrameSerializationFormat, dataframe_file
from ..blocks._extras import require
from ..blocks.core import Block
from ..exceptions import BlockError, MissingContextError
from ..logging import get_logger, get_run_logger
from .credentials import GcpCredentials


def _logger() -> Any:
    """The current run's logger inside a flow or task run, else the ``legato.gcp`` logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("legato.gcp")


def _posix(path: str | os.PathLike[str]) -> str:
    return Path(path).as_posix() if isinstance(path, os.PathLike) else str(path).replace("\\", "/")


class GcsBucket(Block):
    """A Google Cloud Storage bucket (and optionally a folder in it) to upload files, data frames
    and directories to, and download them from.

    Works as a deployment's code storage (``get_directory`` / ``put_directory``) and as a place
    to read and write paths (``read_path`` / ``write_path``).
    """

    _block_type_name = "GCS Bucket"
    _documentation_url = "https://cloud.google.com/storage/docs/introduction"
    _code_example = (
        "from legato.gcp import GcsBucket\n"
        'gcs_bucket = GcsBucket.load("BLOCK_NAME")\n'
        'gcs_bucket.upload_from_path(from_path="data/file.parquet", to_path="data/file.parquet")'
    )

    bucket: str = Field(description="Name of the bucket.")
    gcp_credentials: GcpCredentials = Field(
        default_factory=GcpCredentials,
        description="The credentials to authenticate with GCP.")
    bucket_folder: str = Field(
        default="",
        description="A folder in the bucket that every path of this block is relative to.")

    @field_validator("bucket_folder")
    @classmethod
    def _folder_slash(cls, value: str) -> str:
        rel = posixpath.normpath(_posix(value).lstrip("/")) if value else "."
        if rel == ".." or rel.startswith("../"):
            raise ValueError(f"bucket_folder {value!r} is outside the bucket: remove the '..'")
        return "" if rel == "." else f"{rel}/"

    @property
    def basepath(self) -> str:
        """The bucket folder (what deployments resolve paths against)."""
        return self.bucket_folder

    # -- helpers -------------------------------------------------------------------------------
    def _join(self, path: str | os.PathLike[str] | None = "") -> str | None:
        """``bucket_folder/path`` as an object name (``.`` and ``..`` resolved; one that climbs
        out of the bucket folder is refused); the bucket folder itself (None for the root) when
        ``path`` is empty."""
        folder = self._folder_slash(self.bucket_folder)  # also when set after validation
        rel = safe_relative(_posix(path or ""), "path", f"gs://{self.bucket}/{folder}")
        if not rel:
            return folder or None
        return f"{folder}{rel}"

    def _object_name(self, path: str | os.PathLike[str]) -> str:
        name = self._join(path)
        if name is None or name.endswith("/"):
            raise BlockError(
                f"The path {str(path)!r} names no object: give a file name, for example "
                "'data/file.parquet'.")
        return name

    def _client(self) -> Any:
        return self.gcp_credentials.get_cloud_storage_client()

    def _bucket_handle(self) -> Any:
        """The bucket, without a request (the first object operation finds out whether it
        exists)."""
        return self._client().bucket(self.bucket)

    @contextmanager
    def _errors(self, action: str, object_name: str | None = None) -> Iterator[None]:
        """Translate Google errors into messages that name the bucket and object."""
        api = require("google.api_core.exceptions", "gcp", "GcsBucket")
        auth = require("google.auth.exceptions", "gcp", "GcsBucket")
        requests_exc = require("requests.exceptions", "gcp", "GcsBucket")
        where = f"gs://{self.bucket}/{object_name}" if object_name else f"gs://{self.bucket}"
        try:
            yield
        except api.NotFound:
            if not self._bucket_exists():
                raise BlockError(
                    f"The GCS bucket {self.bucket!r} does not exist (while trying to {action}). "
                    "Create it (GcsBucket.create_bucket() or the GCP console), or fix the "
                    "block's `bucket`.") from None
            if object_name is None:
                raise BlockError(f"GCS could not {action} {where}: not found.") from None
            raise FileNotFoundError(
                f"No object {object_name!r} in the GCS bucket {self.bucket!r} (while trying to "
                f"{action}). list_blobs() shows what the bucket holds.") from None
        except (api.Forbidden, api.Unauthorized) as exc:
            raise BlockError(
                f"GCS refused to {action} {where}: {exc.message}. Check that the service "
                "account of the block's credentials may use this bucket.") from None
        except api.GoogleAPICallError as exc:
            raise BlockError(f"GCS could not {action} {where}: {exc}") from None
        except (auth.RefreshError, auth.TransportError) as exc:
            raise BlockError(
                f"Could not {action} {where}: getting an access token for the block's "
                f"credentials failed ({exc}).") from None
        except requests_exc.ConnectionError as exc:
            raise BlockError(
                f"Could not {action} {where}: Cloud Storage is not reachable ({exc}).") from None

    def _bucket_exists(self) -> bool:
        try:
            return bool(self._client().bucket(self.bucket).exists())
        except Exception:  # noqa: BLE001 - only used to word an error message
            return True

    # -- buckets -------------------------------------------------------------------------------
    def create_bucket(self, location: str | None = None, **create_kwargs: Any) -> Any:
        """Create the bucket (``location`` such as ``"EU"``); returns the SDK's Bucket."""
        _logger().info("Creating GCS bucket %r.", self.bucket)
        with self._errors("create the bucket"):
            return self._client().create_bucket(self.bucket, location=location, **create_kwargs)

    def get_bucket(self) -> Any:
        """The SDK's Bucket object (fetched, so a missing bucket is reported here)."""
        with self._errors("get the bucket"):
            return self._client().get_bucket(self.bucket)

    def list_blobs(self, folder: str = "") -> list[Any]:
        """The objects (SDK Blobs) under ``folder`` of the bucket folder; folders themselves
        (names ending in '/') are left out."""
        prefix = self._join(folder)
        if prefix is not None and not prefix.endswith("/"):
            prefix += "/"  # a folder: "data" lists data/..., not data2/...
        with self._errors("list objects"):
            blobs = list(self._client().list_blobs(self.bucket, prefix=prefix))
        return [blob for blob in blobs if not blob.name.endswith("/")]

    def list_folders(self, folder: str = "") -> list[str]:
        """The folders (as full object-name prefixes) holding objects under ``folder``."""
        parents = {str(PurePosixPath(b.name).parent) for b in self.list_blobs(folder)}
        return sorted(p for p in parents if p != ".")

    # -- objects -------------------------------------------------------------------------------
    def upload_from_path(self, from_path: str | os.PathLike[str], to_path: str | None = None,
                         **upload_kwargs: Any) -> str:
        """Upload the local file ``from_path`` to ``to_path`` (its file name when omitted);
        returns the object's name in the bucket."""
        local = Path(from_path)
        if not local.is_file():
            raise FileNotFoundError(
                f"Cannot upload {str(from_path)!r} to GCS: no such local file.")
        name = self._object_name(to_path if to_path is not None else local.name)
        _logger().info("Uploading %r to gs://%s/%s.", str(from_path), self.bucket, name)
        with self._errors("upload to", name):
            self._bucket_handle().blob(name).upload_from_filename(str(local), **upload_kwargs)
        return name

    def upload_from_file_object(self, from_file_object: BinaryIO, to_path: str,
                                **upload_kwargs: Any) -> str:
        """Upload the contents of a binary file object (from its current position) to
        ``to_path``; returns the object's name."""
        name = self._object_name(to_path)
        _logger().info("Uploading a file object to gs://%s/%s.", self.bucket, name)
        with self._errors("upload to", name):
            self._bucket_handle().blob(name).upload_from_file(from_file_object, **upload_kwargs)
        return name

    def upload_from_dataframe(self, df: Any, to_path: str,
                              serialization_format: str | DataFrameSerializationFormat =
                              DataFrameSerializationFormat.CSV_GZIP,
                              **upload_kwargs: Any) -> str:
        """Upload a pandas DataFrame (without its index) as ``csv``, ``csv_gzip``, ``parquet``,
        ``parquet_snappy`` or ``parquet_gzip``; the format's suffix is put on ``to_path``.
        Returns the object's name."""
        buffer, fmt = dataframe_file(df, serialization_format, "GcsBucket")
        kwargs = {"content_type": fmt.content_type, **upload_kwargs}
        return self.upload_from_file_object(buffer, fmt.fix_extension_with(to_path), **kwargs)

    def upload_from_folder(self, from_folder: str | os.PathLike[str],
                           to_folder: str | None = None, **upload_kwargs: Any) -> str:
        """Upload every file inside the local ``from_folder`` (keeping the layout) to
        ``to_folder``; returns that folder's name in the bucket."""
        source = Path(from_folder)
        if not source.is_dir():
            raise FileNotFoundError(f"Cannot upload {str(from_folder)!r}: no such local folder.")
        target = self._join(to_folder or "") or ""
        count = 0
        for rel in list_local_files(source):
            name = str(PurePosixPath(target, rel))
            with self._errors("upload to", name):
                self._bucket_handle().blob(name).upload_from_filename(str(source / rel),
                                                                      **upload_kwargs)
            count += 1
        if count == 0:
            _logger().warning("No files were uploaded from %s (it is empty).", source)
        return target

    def download_object_to_path(self, from_path: str, to_path: str | os.PathLike[str] |
                                None = None, **download_kwargs: Any) -> Path:
        """Download the object ``from_path`` to the local file ``to_path`` (its file name in
        the current directory when omitted); returns the absolute local path."""
        name = self._object_name(from_path)
        target = Path(to_path if to_path is not None else PurePosixPath(name).name).absolute()
        if target.is_dir():
            target = target / PurePosixPath(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        _logger().info("Downloading gs://%s/%s to %s.", self.bucket, name, target)
        with self._errors("download", name):
            self._bucket_handle().blob(name).download_to_filename(str(target), **download_kwargs)
        return target

    def download_object_to_file_object(self, from_path: str, to_file_object: BinaryIO,
                                       **download_kwargs: Any) -> BinaryIO:
        """Write the object ``from_path`` into a binary file object; returns that object."""
        name = self._object_name(from_path)
        with self._errors("download", name):
            self._bucket_handle().blob(name).download_to_file(to_file_object, **download_kwargs)
        return to_file_object

    def download_folder_to_path(self, from_folder: str, to_folder: str | os.PathLike[str] |
                                None = None, **download_kwargs: Any) -> Path:
        """Download every object under ``from_folder`` into the local ``to_folder`` (the
        current directory when omitted), keeping the layout below ``from_folder``."""
        target = Path(to_folder or "").absolute()
        self._download_tree(self._join(from_folder), target, **download_kwargs)
        return target

    def _download_tree(self, prefix: str | None, target: Path, **kwargs: Any) -> list[str]:
        folder = f"{prefix.rstrip('/')}/" if prefix else ""
        with self._errors("list objects"):
            blobs = list(self._client().list_blobs(self.bucket, prefix=folder or None))
        written: list[str] = []
        for blob in blobs:
            if blob.name.endswith("/"):
                continue  # a folder placeholder; the folder is made when a file lands in it
            local = target.joinpath(*PurePosixPath(blob.name[len(folder):]).parts)
            local.parent.mkdir(parents=True, exist_ok=True)
            with self._errors("download", blob.name):
                blob.download_to_filename(str(local), **kwargs)
            written.append(str(local))
        return written

    # -- file-system interface (deployments, results) ------------------------------------------
    def read_path(self, path: str) -> bytes:
        """The contents of the object at ``path``."""
        name = self._object_name(path)
        with self._errors("read", name):
            return self._bucket_handle().blob(name).download_as_bytes()

    def write_path(self, path: str, content: bytes | str) -> str:
        """Write ``content`` (bytes, or text as UTF-8) to the object at ``path``; returns the
        object's name."""
        if not isinstance(content, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"write_path takes bytes or str, not {type(content).__name__}.")
        content = content.encode() if isinstance(content, str) else bytes(content)
        name = self._object_name(path)
        with self._errors("write", name):
            self._bucket_handle().blob(name).upload_from_string(content)
        return name

    def get_directory(self, from_path: str | None = None,
                      local_path: str | os.PathLike[str] | None = None) -> list[str]:
        """Download the folder ``from_path`` (the whole bucket folder when omitted) into
        ``local_path`` (the current directory when omitted), keeping the layout below that
        folder; returns the local files written."""
        target = Path(os.path.expanduser(local_path or ".")).absolute()
        prefix = self._join(from_path)
        return self._download_tree(prefix, target)

    def put_directory(self, local_path: str | os.PathLike[str] | None = None,
                      to_path: str | None = None, ignore_file: str | None = None) -> int:
        """Upload the files under ``local_path`` (the current directory when omitted) to the
        folder ``to_path`` (the bucket folder when omitted), leaving out what the gitignore-style
        ``ignore_file`` matches (named from the working directory, else from ``local_path``);
        returns how many files were uploaded."""
        source = folder_to_upload(local_path)
        target = _posix(to_path).strip("/") if to_path else ""
        count = 0
        for rel in files_to_upload(source, ignore_file):
            self.write_path(f"{target}/{rel}" if target else rel, (source / rel).read_bytes())
            count += 1
        return count
