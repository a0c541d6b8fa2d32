"""The S3 bucket block: read, write, list and sync objects of one bucket (or one folder of it).

``S3Bucket(bucket_name="my-bucket", bucket_folder="runs").upload_from_path("out.parquet")`` stores
``s3://my-bucket/runs/out.parquet``. Every path a method takes is relative to ``bucket_folder``.
A missing bucket raises :class:`~legato.exceptions.BlockError`, a missing object
:class:`FileNotFoundError`, each naming the ``s3://`` address.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import Field

from .._filesystems._common import files_to_upload, folder_to_upload
from .._filesystems._dataframes import DataFrameSerializationFormat, dataframe_file
from ..blocks._extras import require
from ..blocks.core import Block
from ..exceptions import BlockError
from .credentials import AwsCredentials

_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_MISSING_BUCKET_CODES = {"NoSuchBucket"}
_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId",
                 "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}


class S3Bucket(Block):
    """An S3 bucket (or a folder in one): upload and download files, file objects, DataFrames
    and whole directories; usable as a flow's storage (get_directory / put_directory).

    Works with any S3-compatible server: set ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``)
    or ``credentials.aws_client_parameters.endpoint_url``.
    """

    _block_type_name = "S3 Bucket"
    _documentation_url = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html"
    _code_example = (
        "from legato.aws import S3Bucket\n\n"
        's3_bucket = S3Bucket.load("BLOCK_NAME")\n'
        's3_bucket.upload_from_path("data.parquet", "raw/data.parquet")\n'
        's3_bucket.download_object_to_path("raw/data.parquet", "copy.parquet")'
    )

    bucket_name: str = Field(description="The name of the bucket.")
    credentials: AwsCredentials = Field(
        default_factory=AwsCredentials,
        description="The AWS credentials to reach the bucket with (boto3's lookup when empty).")
    bucket_folder: str = Field(
        default="",
        description="A folder of the bucket that every path is relative to ('' for the root).")

    # -- paths and errors ----------------------------------------------------------------------
    def _resolve_path(self, path: str | os.PathLike[str] | None) -> str:
        """The object key of ``path`` under ``bucket_folder`` ('' for the folder itself)."""
        given = "" if path is None else os.fspath(path)
        rel = given.replace(os.sep, "/").lstrip("/")
        if rel:
            rel = posixpath.normpath(rel)
            if rel == ".":
                rel = ""
            elif rel == ".." or rel.startswith("../"):
                raise BlockError(
                    f"The path {given!r} leads outside the bucket folder {self.bucket_folder!r} "
                    f"of s3://{self.bucket_name}: give a path inside it.")
        folder = self.bucket_folder.strip("/")
        return f"{folder}/{rel}" if folder and rel else folder or rel

    def _prefix(self, folder: str | os.PathLike[str] | None) -> str:
        key = self._resolve_path(folder)
        return f"{key}/" if key else ""

    def _address(self, key: str | None) -> str:
        return f"s3://{self.bucket_name}/{key or ''}"

    def _client(self) -> Any:
        return self.credentials.get_s3_client()

    def _bucket_exists(self, client: Any) -> bool:
        errors = require("botocore.exceptions", "aws", "S3Bucket")
        try:
            client.head_bucket(Bucket=self.bucket_name)
        except errors.ClientError as exc:
            return _code(exc) not in _MISSING_KEY_CODES | _MISSING_BUCKET_CODES
        return True

    def _client_error(self, exc: Any, action: str, key: str | None, client: Any) -> Exception:
        code = _code(exc)
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
        where = f" (endpoint {endpoint})" if endpoint else ""
        if code in _MISSING_BUCKET_CODES or (
                code in _MISSING_KEY_CODES and not self._bucket_exists(client)):
            return BlockError(
                f"The S3 bucket {self.bucket_name!r} does not exist{where}: create it, or fix "
                "the block's bucket_name.")
        if code in _MISSING_KEY_CODES:
            return FileNotFoundError(
                f"No object {self._address(key)}{where}: check the path (it is relative to "
                f"bucket_folder {self.bucket_folder!r}) or list_objects() to see what is there.")
        if code in _DENIED_CODES:
            return BlockError(
                f"S3 refused to {action} {self._address(key)}{where}: {code}: {message}. Check "
                "the credentials (block fields, AWS_* variables or profile) and their rights.")
        return BlockError(f"Could not {action} {self._address(key)}{where}: {code}: {message}")

    @contextmanager
    def _errors(self, action: str, key: str | None, client: Any) -> Iterator[None]:
        """Translate botocore's errors into Legato's, naming the bucket and key."""
        errors = require("botocore.exceptions", "aws", "S3Bucket")
        boto3_errors = require("boto3.exceptions", "aws", "S3Bucket")
        try:
            yield
        except boto3_errors.S3UploadFailedError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, errors.ClientError):
                raise self._client_error(cause, action, key, client) from None
            raise BlockError(f"Could not {action} {self._address(key)}: {exc}") from exc
        except errors.ClientError as exc:
            raise self._client_error(exc, action, key, client) from None
        except errors.NoCredentialsError:
            raise BlockError(
                f"No AWS credentials to {action} {self._address(key)}: set aws_access_key_id and "
                "aws_secret_access_key on the AwsCredentials block, AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the environment, or a profile.") from None
        except errors.EndpointConnectionError as exc:
            raise BlockError(
                f"Could not reach S3 at {exc.kwargs.get('endpoint_url')} to {action} "
                f"{self._address(key)}: is the server (or the emulator AWS_ENDPOINT_URL names) "
                "running?") from None

    # -- objects -------------------------------------------------------------------------------
    def list_objects(self, folder: str = "", delimiter: str = "", page_size: int | None = None,
                     max_items: int | None = None, jmespath_query: str | None = None
                     ) -> list[dict[str, Any]]:
        """The objects under ``folder`` (of ``bucket_folder``), as boto3's dicts (``Key``,
        ``Size``, ``LastModified``, ...). ``delimiter="/"`` keeps to the folder's own level;
        ``max_items`` caps the count; ``jmespath_query`` filters (default ``Contents[]``)."""
        client = self._client()
        prefix = self._prefix(folder)
        kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": prefix,
                                  "PaginationConfig": {"PageSize": page_size,
                                                       "MaxItems": max_items}}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        with self._errors("list", prefix, client):
            pages = client.get_paginator("list_objects_v2").paginate(**kwargs)
            return [obj for obj in pages.search(jmespath_query or "Contents[]")
                    if obj is not None]

    list_blobs = list_objects  # the GCS bucket block's name for the same listing

    def read_path(self, path: str) -> bytes:
        """The content of the object at ``path``."""
        client = self._client()
        key = self._resolve_path(path)
        with self._errors("read", key, client):
            return client.get_object(Bucket=self.bucket_name, Key=key)["Body"].read()

    def write_path(self, path: str, content: bytes | str) -> str:
        """Write ``content`` to the object at ``path``; returns its key."""
        client = self._client()
        key = self._resolve_path(path)
        data = content.encode() if isinstance(content, str) else bytes(content)
        with self._errors("write", key, client):
            client.put_object(Bucket=self.bucket_name, Key=key, Body=data)
        return key

    def download_object_to_path(self, from_path: str, to_path: str | os.PathLike[str] | None
                                = None, **download_kwargs: Any) -> Path:
        """Download the object at ``from_path`` to the local ``to_path`` (default: its name in
        the working directory; into it when a directory); returns the local path."""
        target = Path(to_path if to_path is not None else posixpath.basename(from_path))
        target = target.expanduser()
        if target.is_dir():
            target = target / posixpath.basename(self._resolve_path(from_path))
        target.parent.mkdir(parents=True, exist_ok=True)
        client = self._client()
        key = self._resolve_path(from_path)
        with self._errors("download", key, client):
            client.download_file(self.bucket_name, key, str(target), **download_kwargs)
        return target.absolute()

    def download_object_to_file_object(self, from_path: str, to_file_object: BinaryIO,
                                       **download_kwargs: Any) -> BinaryIO:
        """Download the object at ``from_path`` into a binary file object; returns it."""
        client = self._client()
        key = self._resolve_path(from_path)
        with self._errors("download", key, client):
            client.download_fileobj(self.bucket_name, key, to_file_object, **download_kwargs)
        return to_file_object

    def upload_from_path(self, from_path: str | os.PathLike[str], to_path: str | None = None,
                         **upload_kwargs: Any) -> str:
        """Upload the local file ``from_path`` to ``to_path`` (default: its file name); returns
        the object's key."""
        source = Path(from_path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"There is no file {str(source)!r} to upload to S3.")
        with source.open("rb") as f:
            return self.upload_from_file_object(
                f, to_path if to_path is not None else source.name, **upload_kwargs)

    def upload_from_file_object(self, from_file_object: BinaryIO, to_path: str,
                                **upload_kwargs: Any) -> str:
        """Upload a binary file object's content to ``to_path``; returns the object's key."""
        client = self._client()
        key = self._resolve_path(to_path)
        if not key or key.endswith("/"):
            raise BlockError(f"Give an object name to upload to, not the folder {to_path!r}.")
        with self._errors("upload", key, client):
            client.upload_fileobj(from_file_object, self.bucket_name, key, **upload_kwargs)
        return key

    def upload_from_dataframe(self, df: Any, to_path: str,
                              serialization_format: str | DataFrameSerializationFormat
                              = DataFrameSerializationFormat.CSV_GZIP,
                              **upload_kwargs: Any) -> str:
        """Upload a pandas DataFrame as csv, csv_gzip, parquet, parquet_snappy or parquet_gzip
        (index left out); ``to_path`` gets the format's suffix. Returns the object's key."""
        buffer, fmt = dataframe_file(df, serialization_format, "S3Bucket")
        extra = dict(upload_kwargs.pop("ExtraArgs", None) or {})
        extra.setdefault("ContentType", fmt.content_type)
        return self.upload_from_file_object(
            buffer, fmt.fix_extension_with(to_path), ExtraArgs=extra, **upload_kwargs)

    # -- directories ---------------------------------------------------------------------------
    def get_directory(self, from_path: str | None = None, local_path: str | None = None
                      ) -> list[str]:
        """Download every object under ``from_path`` (default: all of ``bucket_folder``) into
        ``local_path`` (default: the working directory), keeping the folder layout; returns the
        local paths written."""
        client = self._client()
        prefix = self._prefix(from_path)
        root = Path(local_path if local_path is not None else ".").expanduser().absolute()
        written: list[str] = []
        with self._errors("download", prefix, client):
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket_name, Prefix=prefix)
            for obj in pages.search("Contents[]"):
                if obj is None or obj["Key"].endswith("/"):
                    continue  # an empty listing, or a folder placeholder
                key = obj["Key"]
                rel = posixpath.normpath(key[len(prefix):].lstrip("/"))
                if rel in (".", "..") or rel.startswith("../"):
                    raise BlockError(
                        f"The object {self._address(key)} would be written outside {root}; "
                        "rename it or download it with download_object_to_path.")
                target = root.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(self.bucket_name, key, str(target))
                written.append(str(target))
        return written

    def put_directory(self, local_path: str | None = None, to_path: str | None = None,
                      ignore_file: str | None = None) -> int:
        """Upload every file under ``local_path`` (default: the working directory) to
        ``to_path`` (default: ``bucket_folder`` itself), leaving out what the gitignore-style
        patterns of ``ignore_file`` match; returns the number of files uploaded."""
        root = folder_to_upload(local_path)
        count = 0
        for rel in files_to_upload(root, ignore_file):
            with (root / rel).open("rb") as f:
                self.upload_from_file_object(f, posixpath.join(to_path or "", rel))
            count += 1
        return count

    def download_folder_to_path(self, from_folder: str, to_folder: str | None = None) -> Path:
        """Download the folder ``from_folder`` into ``to_folder`` (default: the working
        directory); returns the local folder."""
        target = Path(to_folder if to_folder is not None else ".").expanduser().absolute()
        self.get_directory(from_folder, str(target))
        return target

    def upload_from_folder(self, from_folder: str | os.PathLike[str],
                           to_folder: str | None = None) -> str:
        """Upload every file of the local ``from_folder`` to ``to_folder``; returns the folder
        key (under ``bucket_folder``)."""
        count = self.put_directory(os.fspath(from_folder), to_folder)
        if count == 0:
            raise BlockError(f"The folder {os.fspath(from_folder)!r} holds no files to upload.")
        return self._resolve_path(to_folder)


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
