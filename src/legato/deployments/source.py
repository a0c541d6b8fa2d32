"""``flow.from_source(source, entrypoint)``: a flow whose code lives in a folder, a git
repository or a storage block, loaded from there and deployed so that workers pull it from
there too.

What ``source`` may be:

- a **git repository**: an ``http(s)://``, ``file://``, ``ssh://`` or ``git@host:owner/repo``
  URL, or the path of a bare repository (or of any folder whose name ends in ``.git``). It is
  cloned with :class:`~legato.filesystems.GitHub`; the deployment records that block, so each
  flow run clones it afresh (the code committed on the default branch, not a working copy's
  uncommitted changes);
- another **fsspec URL** (``s3://bucket/flows``, ``gcs://...``, ``memory://...``): a
  :class:`~legato.filesystems.RemoteFileSystem` with that basepath;
- a **storage block** (anything with ``get_directory``, e.g. ``GitHub.load("repo")``);
- a **local folder**: the code is used where it is (the deployment's ``path``), as
  ``flow.to_deployment`` does for a flow defined under the working directory.

The entrypoint is relative to the source's top folder: ``flows/etl.py:gather_flow``.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import LegatoError
from ..utilities.entrypoints import EntrypointError, load_flow_from_entrypoint
from .deployment import DeploymentError

__all__ = ["FlowSource", "flow_from_source", "storage_for_source"]

_GIT_SCHEMES = ("http", "https", "file", "ssh", "git")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:(?!//)")  # git@github.com:owner/repo.git
_pulled: list[str] = []


@dataclass(frozen=True)
class FlowSource:
    """Where a flow loaded by ``from_source`` came from: a storage block to pull it from, or a
    local folder; and its entrypoint relative to that."""

    storage: Any
    folder: str | None
    entrypoint: str
    source: str


def storage_for_source(source: Any) -> tuple[Any, str | None]:
    """``(storage block, None)`` for a repository, URL or block; ``(None, folder)`` for a
    local folder used in place."""
    if hasattr(source, "get_directory") and not isinstance(source, (str, os.PathLike)):
        return source, None
    if not isinstance(source, (str, os.PathLike)):
        raise DeploymentError(
            f"from_source takes a folder, a git URL or a storage block (with get_directory), "
            f"not {type(source).__name__}.")
    text = os.fspath(source).strip()
    # lazy: the file-system blocks (pydantic models) load only when a source needs one
    from ..filesystems import GitHub, RemoteFileSystem

    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in _GIT_SCHEMES or _SCP_LIKE.match(text):
        return GitHub(repository=text), None
    if scheme:
        return RemoteFileSystem(basepath=text), None
    path = Path(text).expanduser()
    if not path.exists():
        raise DeploymentError(
            f"from_source: there is no folder {text!r}. Give a local folder, a git URL "
            "(https://..., file:///path/to/repo, git@host:owner/repo.git) or a storage block.")
    if not path.is_dir():
        raise DeploymentError(
            f"from_source: {text!r} is a file; give the folder that holds it as source and the "
            "file in the entrypoint ('flows/etl.py:my_flow').")
    if path.name.endswith(".git") or _is_bare_repository(path):
        return GitHub(repository=str(path.resolve())), None
    return None, str(path.resolve())


def _is_bare_repository(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def flow_from_source(source: Any, entrypoint: str) -> Any:
    """The flow ``entrypoint`` names in ``source`` (pulled into a temporary folder unless it is
    a local folder). Its ``to_deployment``/``deploy``/``serve`` record the source, so workers
    pull the code from there."""
    if not isinstance(entrypoint, str) or ":" not in entrypoint:
        raise DeploymentError(
            f"from_source needs an entrypoint 'path/to/file.py:flow_function' relative to the "
            f"source's top folder; got {entrypoint!r}.")
    storage, folder = storage_for_source(source)
    where = _describe(source, storage, folder)
    if storage is None:
        base = folder
    else:
        base = tempfile.mkdtemp(prefix="legato-source-")
        _remove_at_exit(base)
        try:
            storage.get_directory(from_path=None, local_path=base)
        except LegatoError:
            raise
        except (OSError, ValueError) as exc:
            raise DeploymentError(f"Could not pull the code from {where}: {exc}") from exc
    try:
        flow = load_flow_from_entrypoint(entrypoint, base_dir=base)
    except EntrypointError as exc:
        raise type(exc)(f"{exc} (from_source: the entrypoint is relative to the top folder of "
                        f"{where})") from exc.__cause__
    flow._legato_source = FlowSource(storage=storage, folder=folder, entrypoint=entrypoint,
                                     source=where)
    return flow


def source_of(flow: Any) -> FlowSource | None:
    """The source a flow was loaded from by ``from_source`` (``None`` for an ordinary flow)."""
    found = getattr(flow, "_legato_source", None)
    return found if isinstance(found, FlowSource) else None


def _describe(source: Any, storage: Any, folder: str | None) -> str:
    if folder is not None:
        return f"the folder {folder}"
    repository = getattr(storage, "repository", None)
    if repository:
        # lazy, as above: the redaction helper of the file-system blocks
        from .._filesystems.github import redact_url

        return f"the git repository {redact_url(repository)}"
    basepath = getattr(storage, "basepath", None)
    if basepath and isinstance(source, (str, os.PathLike)):
        return f"{type(storage).__name__} {basepath}"
    return f"the {type(storage).__name__} block"


def _remove_at_exit(path: str) -> None:
    if not _pulled:
        atexit.register(_cleanup)  # registered on first use: importing has no side effects
    _pulled.append(path)


def _cleanup() -> None:
    while _pulled:
        shutil.rmtree(_pulled.pop(), ignore_errors=True)
