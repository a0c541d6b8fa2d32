"""The GitHub block against real git: a repository served over HTTP on 127.0.0.1 by
``git http-backend`` (a private copy behind HTTP Basic auth), and file:// URLs."""

from __future__ import annotations

import base64
import logging
import os
import re
import subprocess
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from legato.exceptions import BlockError
from legato.filesystems import GitHub, RepositoryCloneError

TOKEN = "ghp_TESTtoken0123456789abcdefSECRET"

GIT_ID = ["-c", "user.name=Legato Test", "-c", "user.email=test@legato.invalid",
          "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


# -- a git server: git http-backend behind a small HTTP server with Basic auth ------------------


class _GitHandler(BaseHTTPRequestHandler):
    server: _GitServer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        return password == self.server.token

    def _handle(self) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization")))
        path, _, query = self.path.partition("?")
        body = self._read_body()
        if path.startswith("/private/") and not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="legato-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        env = {
            "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "PATH_INFO": path,
            "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True).stdout
        match = re.search(rb"\r?\n\r?\n", out)  # the CGI headers end at the first blank line
        head, payload = (out[:match.start()], out[match.end():]) if match else (out, b"")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _GitServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _GitHandler)
        self.root = root
        self.token = token
        self.requests: list[tuple[str, str, str | None]] = []


@dataclass
class Repo:
    source: Path  # the working repository
    url: str  # http://127.0.0.1:PORT
    server: _GitServer
    first_readme: str = "version one\n"
    readme: str = "version two\n"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def public(self) -> str:
        return f"{self.url}/public/repo.git"

    @property
    def private(self) -> str:
        return f"{self.url}/private/repo.git"


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    base = tmp_path_factory.mktemp("git")
    src = base / "source"
    src.mkdir()
    git("init", "-q", "-b", "main", cwd=src)
    (src / "README.md").write_text("version one\n")
    (src / "flows" / "sub").mkdir(parents=True)
    (src / "flows" / "hello.py").write_text("def hello():\n    return 'hi'\n")
    (src / "flows" / "sub" / "util.py").write_text("X = 1\n")
    (src / "data").mkdir()
    (src / "data" / "x.txt").write_text("data\n")
    git("add", "-A", cwd=src)
    git("commit", "-q", "-m", "first", cwd=src)
    git("tag", "v1", cwd=src)
    (src / "README.md").write_text("version two\n")
    git("commit", "-q", "-am", "second", cwd=src)
    git("checkout", "-q", "-b", "feature", cwd=src)
    (src / "feature.txt").write_text("feature\n")
    git("add", "feature.txt", cwd=src)
    git("commit", "-q", "-m", "feature", cwd=src)
    git("checkout", "-q", "main", cwd=src)
    served = base / "served"
    for kind in ("public", "private"):
        (served / kind).mkdir(parents=True)
        git("clone", "-q", "--bare", str(src), str(served / kind / "repo.git"), cwd=base)
    server = _GitServer(served, TOKEN)  # listening once constructed; requests queue till served
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Repo(source=src, url=f"http://127.0.0.1:{server.server_address[1]}", server=server)
    server.shutdown()
    server.server_close()
    thread.join(10)


def files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def all_bytes_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


MAIN_TREE = {"README.md": "version two\n", "data/x.txt": "data\n",
             "flows/hello.py": "def hello():\n    return 'hi'\n", "flows/sub/util.py": "X = 1\n"}


def assert_no_token(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc.args)
    assert TOKEN not in text
    assert base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode() not in text


# -- the block type -------------------------------------------------------------------------------


def test_block_type() -> None:
    assert GitHub.get_block_type_name() == "GitHub"
    assert GitHub.get_block_type_slug() == "github"
    assert GitHub.get_block_capabilities() == ["get-directory"]
    assert GitHub.get_block_schema()["secret_fields"] == ["access_token"]
    block = GitHub(repository="https://github.com/o/r.git", access_token=TOKEN)
    for text in (repr(block), str(block), block.model_dump_json()):
        assert TOKEN not in text


# -- cloning over HTTP ----------------------------------------------------------------------------


def test_clone_whole_repository(repo: Repo, tmp_path: Path) -> None:
    GitHub(repository=repo.public).get_directory(local_path=str(tmp_path / "out"))
    assert files_under(tmp_path / "out") == MAIN_TREE
    assert (tmp_path / "out" / ".git").is_dir()  # include_git_objects defaults to True
    log = subprocess.run(["git", "log", "--oneline"], cwd=tmp_path / "out", check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert len(log) == 1  # shallow


def test_default_local_path_is_the_working_directory(repo: Repo, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    GitHub(repository=repo.public, include_git_objects=False).get_directory()
    assert files_under(work) == MAIN_TREE
    assert not (work / ".git").exists()


def test_from_path_keeps_its_place_in_the_tree(repo: Repo, tmp_path: Path) -> None:
    block = GitHub(repository=repo.public)
    block.get_directory(from_path="flows/", local_path=str(tmp_path / "a"))
    assert files_under(tmp_path / "a") == {
        "flows/hello.py": MAIN_TREE["flows/hello.py"], "flows/sub/util.py": "X = 1\n"}
    assert not (tmp_path / "a" / ".git").exists()
    block.get_directory(from_path="flows/hello.py", local_path=str(tmp_path / "b"))
    assert files_under(tmp_path / "b") == {"flows/hello.py": MAIN_TREE["flows/hello.py"]}
    with pytest.raises(FileNotFoundError, match="no folder or file 'nope'"):
        block.get_directory(from_path="nope", local_path=str(tmp_path / "c"))
    with pytest.raises(BlockError, match="outside"):
        block.get_directory(from_path="../..", local_path=str(tmp_path / "d"))


def test_include_git_objects_false(repo: Repo, tmp_path: Path) -> None:
    GitHub(repository=repo.public, include_git_objects=False).get_directory(
        local_path=str(tmp_path / "out"))
    assert files_under(tmp_path / "out") == MAIN_TREE
    assert not (tmp_path / "out" / ".git").exists()


@pytest.mark.parametrize(("reference", "expected"), [
    ("feature", {**MAIN_TREE, "feature.txt": "feature\n"}),
    ("v1", {**MAIN_TREE, "README.md": "version one\n"}),
    ("main", MAIN_TREE),
])
def test_reference_picks_branch_or_tag(repo: Repo, tmp_path: Path, reference: str,
                                       expected: dict[str, str]) -> None:
    GitHub(repository=repo.public, reference=reference).get_directory(
        local_path=str(tmp_path / "out"))
    assert files_under(tmp_path / "out") == expected


def test_private_repository_needs_the_token(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(RepositoryCloneError, match="set the block's access_token") as info:
        GitHub(repository=repo.private).get_directory(local_path=str(tmp_path / "no"))
    assert isinstance(info.value, OSError) and isinstance(info.value, BlockError)
    assert not (tmp_path / "no").exists()

    before = len(repo.server.requests)
    GitHub(repository=repo.private, access_token=TOKEN).get_directory(
        local_path=str(tmp_path / "yes"))
    assert files_under(tmp_path / "yes") == MAIN_TREE
    # the token travelled as a header, never in a URL, and stays out of the copy on disk
    requests = repo.server.requests[before:]
    assert requests and all(TOKEN not in path for _, path, _ in requests)
    assert any(auth for _, _, auth in requests)
    assert TOKEN.encode() not in all_bytes_under(tmp_path / "yes")
    assert "***" not in (tmp_path / "yes" / ".git" / "config").read_text()


def test_fine_grained_token_as_user_and_token(repo: Repo, tmp_path: Path) -> None:
    GitHub(repository=repo.private, access_token=f"someone:{TOKEN}").get_directory(
        local_path=str(tmp_path / "out"))
    assert files_under(tmp_path / "out") == MAIN_TREE


def test_wrong_token_is_refused_without_showing_it(repo: Repo, tmp_path: Path) -> None:
    wrong = "ghp_WRONGtoken9876543210"
    with pytest.raises(RepositoryCloneError, match="access token was refused") as info:
        GitHub(repository=repo.private, access_token=wrong).get_directory(
            local_path=str(tmp_path))
    text = "".join(traceback.format_exception(info.value))
    assert wrong not in text
    assert base64.b64encode(f"x-access-token:{wrong}".encode()).decode() not in text


def test_wrong_reference_is_clear_and_hides_the_token(repo: Repo, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RepositoryCloneError, match="no branch or tag 'no-such-branch'") as info:
        GitHub(repository=repo.private, reference="no-such-branch",
               access_token=TOKEN).get_directory(local_path=str(tmp_path))
    assert "git said:" in str(info.value)
    assert_no_token(info.value)
    assert TOKEN not in caplog.text


def test_credentials_in_the_url_are_redacted(repo: Repo, tmp_path: Path) -> None:
    url = repo.public.replace("http://", "http://someone:pa55word@").replace("repo", "nope")
    with pytest.raises(RepositoryCloneError, match="not found") as info:
        GitHub(repository=url).get_directory(local_path=str(tmp_path))
    assert "pa55word" not in "".join(traceback.format_exception(info.value))


def test_unreachable_host(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RepositoryCloneError, match="could not be reached"):
        GitHub(repository=f"http://127.0.0.1:{port}/r.git", access_token=TOKEN).get_directory(
            local_path=str(tmp_path))


# -- file:// and local paths ----------------------------------------------------------------------


def test_file_url_and_local_path(repo: Repo, tmp_path: Path) -> None:
    GitHub(repository=f"file://{repo.source}").get_directory(local_path=str(tmp_path / "a"))
    assert files_under(tmp_path / "a") == MAIN_TREE
    GitHub(repository=str(repo.source), reference="feature").get_directory(
        local_path=str(tmp_path / "b"))
    assert files_under(tmp_path / "b") == {**MAIN_TREE, "feature.txt": "feature\n"}
    with pytest.raises(RepositoryCloneError, match="no branch or tag 'zzz'"):
        GitHub(repository=f"file://{repo.source}", reference="zzz").get_directory(
            local_path=str(tmp_path / "c"))
    with pytest.raises(RepositoryCloneError, match="not found"):
        GitHub(repository=f"file://{tmp_path}/missing").get_directory(
            local_path=str(tmp_path / "d"))


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("repository", "message"), [
    ("git@github.com:owner/repo.git", "only be used with an https"),
    ("ssh://git@github.com/owner/repo.git", "only be used with an https"),
    ("file:///srv/repo", "only be used with an https"),
    ("http://git.example.com/repo.git", "unencrypted"),
])
def test_token_needs_https(repository: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        GitHub(repository=repository, access_token=TOKEN)
    assert TOKEN not in str(info.value)


def test_storage_is_read_only(tmp_path: Path) -> None:
    block = GitHub(repository="https://github.com/o/r.git")
    with pytest.raises(BlockError, match="read-only"):
        block.read_path("README.md")
    with pytest.raises(BlockError, match="read-only"):
        block.write_path("README.md", b"x")
    with pytest.raises(BlockError, match="read-only"):
        block.put_directory(str(tmp_path))


def test_missing_git_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BlockError, match="`git` command"):
        GitHub(repository="https://github.com/o/r.git").get_directory(local_path=str(tmp_path))


# -- saved and loaded (embedded store, PostgreSQL, and through a server) -------------------------


def test_round_trip_then_pull(history_or_server: str, repo: Repo, tmp_path: Path) -> None:
    from legato.blocks.core import Block
    from legato.client.factory import get_client

    GitHub(repository=repo.private, reference="feature", access_token=TOKEN,
           include_git_objects=False).save("gh-storage")
    listed = get_client().read_block_document("github", "gh-storage")
    assert TOKEN not in str(listed)
    loaded = Block.load("github/gh-storage")  # the address deployments' -sb uses
    assert isinstance(loaded, GitHub) and loaded.access_token.get_secret_value() == TOKEN
    loaded.get_directory(from_path="flows", local_path=str(tmp_path / "out"))
    assert files_under(tmp_path / "out") == {"flows/hello.py": MAIN_TREE["flows/hello.py"],
                                     "flows/sub/util.py": "X = 1\n"}
