"""``GitHub``: flow code pulled from a git repository (GitHub or any git host) with ``git``."""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, model_validator

from ..blocks.core import Block
from ..exceptions import BlockError
from ._common import IgnoreRules, copy_local_files, list_local_files, safe_relative

logger = logging.getLogger("legato.filesystems")

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


class RepositoryCloneError(BlockError, OSError):
    """``git clone`` failed; the message says why (it never holds the access token)."""


def redact_url(text: str) -> str:
    """``text`` with the user (and password) of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", text)


class GitHub(Block):
    """Pull flow code from a git repository: GitHub, or any git host reachable over HTTPS, SSH
    or as a local path. ``git`` makes a shallow clone of the branch or tag asked for.

    A private repository over HTTPS needs an access token (a GitHub personal access token with
    read access to the repository). It is sent as an HTTP header of the clone only: it is not
    put into the cloned repository's configuration, and never appears in errors or logs.
    """

    _block_type_name = "GitHub"
    _documentation_url = (
        "https://docs.github.com/en/repositories/creating-and-managing-repositories/"
        "cloning-a-repository"
    )
    _code_example = (
        "from legato.filesystems import GitHub\n\n"
        'github_block = GitHub.load("BLOCK_NAME")\n'
        'github_block.get_directory(from_path="flows", local_path=".")'
    )

    repository: str = Field(
        description="The repository to clone: an HTTPS URL "
        "(https://github.com/owner/repo.git), an SSH address (git@github.com:owner/repo.git), "
        "a file:// URL or a local path.",
    )
    reference: str | None = Field(
        default=None,
        description="The branch or tag to check out. Empty: the repository's default branch.",
    )
    access_token: SecretStr | None = Field(
        default=None,
        title="Personal Access Token",
        description="A token with read access to the repository, for private repositories "
        "over HTTPS. For a fine-grained GitHub token you may give 'username:token'.",
    )
    include_git_objects: bool = Field(
        default=True,
        description="Whether to copy the .git folder along with the files.",
    )

    @model_validator(mode="after")
    def _token_needs_https(self) -> GitHub:
        if self.access_token is None:
            return self
        parts = urlsplit(self.repository)
        scheme = parts.scheme.lower()
        if scheme == "https" or (scheme == "http" and (parts.hostname or "") in _LOOPBACK):
            return self
        where = redact_url(self.repository)
        if scheme == "http":
            raise ValueError(
                f"The repository {where!r} is plain http, which would send the access token "
                "unencrypted: use its https:// URL.")
        raise ValueError(
            f"An access token can only be used with an https:// repository URL, and "
            f"{where!r} is not one (SSH addresses use your SSH keys, local paths need no "
            "token). Use the https:// URL, or leave access_token empty.")

    @classmethod
    def get_block_capabilities(cls) -> list[str]:
        # read_path & co. exist only to say clearly that this storage is read-only
        return ["get-directory"]

    # -- git -----------------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        if self.access_token is None:
            return []
        token = self.access_token.get_secret_value()
        forms = {token, quote(token, safe=""), self._auth_header_value()}
        if ":" in token:
            forms.update(token.split(":", 1)[1:])
        return sorted((f for f in forms if f), key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return redact_url(text)

    def _auth_header_value(self) -> str:
        token = self.access_token.get_secret_value() if self.access_token else ""
        # 'user:token' as given; a bare token goes as the password, which GitHub (and most git
        # hosts) accept for personal access tokens and app installation tokens alike
        userpass = token if ":" in token else f"x-access-token:{token}"
        return base64.b64encode(userpass.encode()).decode()

    def _git_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C", LANGUAGE="C")
        if self.access_token is not None:
            # the header is given through the environment: not on the command line (where other
            # users see it), not in the clone's .git/config, and only for this repository's host
            parts = urlsplit(self.repository)
            host = parts.netloc.rpartition("@")[2]
            count = env.get("GIT_CONFIG_COUNT", "")
            n = int(count) if count.isdigit() else 0  # after any the caller's env already sets
            env[f"GIT_CONFIG_KEY_{n}"] = f"http.{parts.scheme}://{host}/.extraHeader"
            env[f"GIT_CONFIG_VALUE_{n}"] = f"Authorization: Basic {self._auth_header_value()}"
            env["GIT_CONFIG_COUNT"] = str(n + 1)
        return env

    def _clone(self, into: Path) -> None:
        cmd = ["git", "clone", "--depth", "1"]
        if self.reference:
            cmd += ["--branch", self.reference]
        cmd += ["--", self.repository, str(into)]
        where = redact_url(self.repository)
        at = f" at {self.reference!r}" if self.reference else ""
        logger.debug("Cloning %s%s", where, at)
        try:
            proc = subprocess.run(cmd, env=self._git_env(), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace")
        except FileNotFoundError:
            raise BlockError(
                "GitHub storage runs the `git` command, which is not installed (or not on "
                "PATH). Install git, for example `apt-get install git`.") from None
        if proc.returncode == 0:
            return
        said = "\n".join(line for line in self._scrub(proc.stderr).strip().splitlines()
                          if not line.startswith("Cloning into "))
        raise RepositoryCloneError(f"Could not clone {where}{at}: {self._explain(said)}"
                                   f"\ngit said: {said}")

    def _explain(self, said: str) -> str:
        low = said.lower()
        if "remote branch" in low and "not found" in low:
            return (f"there is no branch or tag {self.reference!r} in the repository. Check the "
                    "block's reference (a branch or tag name), or leave it empty for the "
                    "default branch.")
        if any(s in low for s in ("could not read username", "could not read password",
                                  "authentication failed", "terminal prompts disabled",
                                  " 401", " 403", "access denied", "permission denied")):
            if self.access_token is None:
                return ("the repository asks for credentials. For a private repository, set "
                        "the block's access_token to a token that can read it.")
            return ("the access token was refused. Check that it is valid, not expired, and "
                    "can read this repository.")
        if any(s in low for s in ("not found", "does not appear to be a git repository",
                                  "does not exist", " 404")):
            return ("the repository was not found. Check the URL (a private repository may "
                    "also need an access token).")
        if any(s in low for s in ("could not resolve host", "failed to connect",
                                  "connection refused", "timed out")):
            return "the git host could not be reached. Check the URL and the network."
        return "git failed."

    # -- storage -------------------------------------------------------------------------------
    def get_directory(self, from_path: str | None = None, local_path: str | None = None) -> None:
        """Clone the repository (at ``reference``) and copy it into ``local_path`` (default:
        the working directory). With ``from_path``, only that folder (or file) of the
        repository is copied, and it keeps its place: ``from_path="flows"`` fills
        ``local_path/flows``, so entrypoints relative to the repository root still work."""
        dest_root = Path(os.path.abspath(os.path.expanduser(local_path or ".")))
        rel = safe_relative(from_path or "", "from_path", redact_url(self.repository))
        with tempfile.TemporaryDirectory(prefix="legato-github-") as tmp:
            repo = Path(tmp) / "repo"
            self._clone(repo)
            source = repo / rel if rel else repo
            dest = dest_root / rel if rel else dest_root
            if rel and (rel == ".git" or rel.startswith(".git/")):
                raise BlockError("from_path names the .git folder; give a folder of the "
                                 "repository's files.")
            if source.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
                return
            if not source.is_dir():
                at = f" at {self.reference!r}" if self.reference else ""
                raise FileNotFoundError(
                    f"The repository {redact_url(self.repository)}{at} has no folder or file "
                    f"{from_path!r}. Give from_path relative to the repository's root.")
            rules = None if self.include_git_objects else IgnoreRules([".git"])
            files = list_local_files(source, rules)
            dest.mkdir(parents=True, exist_ok=True)
            copy_local_files(source, dest, files)

    def _read_only(self, method: str) -> Any:
        raise BlockError(
            f"GitHub storage is read-only; {method}() is not supported. Pull the code with "
            "get_directory(), and push changes with git itself.")

    def read_path(self, path: str) -> bytes:
        """Not supported: copy the repository with :meth:`get_directory` and read from there."""
        raise BlockError(
            "GitHub storage is read-only and reads whole folders; read_path() is not "
            "supported. Copy the repository with get_directory() and read the file from there.")

    def write_path(self, path: str, content: bytes) -> str:
        """Not supported: the storage is read-only."""
        return self._read_only("write_path")

    def put_directory(self, local_path: str | None = None, to_path: str | None = None,
                      ignore_file: str | None = None) -> int:
        """Not supported: the storage is read-only."""
        return self._read_only("put_directory")
