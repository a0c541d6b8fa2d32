"""File-system blocks: storage that reads and writes files, and copies whole folders.

- :class:`LocalFileSystem`: a folder of this machine (``basepath``).
- :class:`RemoteFileSystem`: any fsspec URL (``s3://bucket/prefix``, ``gcs://...``,
  ``memory://...``), with fsspec ``settings`` kept secret.
- :class:`GitHub`: a git repository, cloned with ``git`` (read-only).

Each has ``get_directory(from_path, local_path)``, which deployments use to pull flow code;
the writable ones have ``read_path``, ``write_path`` and ``put_directory`` too.
"""

from ._filesystems import GitHub, LocalFileSystem, RemoteFileSystem, RepositoryCloneError

__all__ = ["GitHub", "LocalFileSystem", "RemoteFileSystem", "RepositoryCloneError"]
