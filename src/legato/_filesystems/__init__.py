"""The file-system blocks; import them from :mod:`legato.filesystems`."""

from .github import GitHub, RepositoryCloneError
from .local import LocalFileSystem
from .remote import RemoteFileSystem

__all__ = ["GitHub", "LocalFileSystem", "RemoteFileSystem", "RepositoryCloneError"]
