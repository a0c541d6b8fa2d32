"""LocalFileSystem and RemoteFileSystem: paths, files, folders, ignore files, secrets; the
remote one against fsspec's memory file system and S3 served by moto on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from legato.blocks.core import Block
from legato.exceptions import BlockError, MissingExtraError
from legato.filesystems import GitHub, LocalFileSystem, RemoteFileSystem

# -- helpers --------------------------------------------------------------------------------------


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def tree_of(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


TREE = {"a.txt": "a", "sub/b.txt": "b", "sub/deeper/c.txt": "c", "empty.txt": ""}


def test_compat_names_and_block_types() -> None:
    import legato.filesystems as mod

    assert issubclass(LocalFileSystem, Block) and issubclass(RemoteFileSystem, Block)

    assert {"GitHub", "LocalFileSystem", "RemoteFileSystem"} <= set(mod.__all__)
    assert LocalFileSystem.get_block_type_name() == "Local File System"
    assert LocalFileSystem.get_block_type_slug() == "local-file-system"
    assert RemoteFileSystem.get_block_type_name() == "Remote File System"
    assert RemoteFileSystem.get_block_type_slug() == "remote-file-system"
    assert GitHub.get_block_type_slug() == "github"
    for cls in (LocalFileSystem, RemoteFileSystem):
        assert cls.get_block_capabilities() == [
            "get-directory", "put-directory", "read-path", "write-path"]
        assert cls.get_description()
        assert cls._code_example and "load" in cls._code_example
    assert RemoteFileSystem.get_block_schema()["secret_fields"] == ["settings.*"]
    assert LocalFileSystem.get_block_schema()["secret_fields"] == []


# -- LocalFileSystem: files -----------------------------------------------------------------------


def test_local_write_then_read(tmp_path: Path) -> None:
    fs = LocalFileSystem(basepath=str(tmp_path / "store"))
    written = fs.write_path("deep/folder/data.bin", b"\x00\x01payload")
    assert written == str(tmp_path / "store" / "deep" / "folder" / "data.bin")
    assert Path(written).read_bytes() == b"\x00\x01payload"
    assert fs.read_path("deep/folder/data.bin") == b"\x00\x01payload"
    fs.write_path("deep/folder/data.bin", b"replaced")
    assert fs.read_path(written) == b"replaced"  # an absolute path inside the basepath is fine
    assert [p.name for p in (tmp_path / "store/deep/folder").iterdir()] == ["data.bin"]


def test_local_basepath_accepts_pathlike_and_home(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert LocalFileSystem(basepath=tmp_path).basepath == str(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    fs = LocalFileSystem(basepath="~/store")
    assert fs.write_path("x.txt", b"x") == str(tmp_path / "store" / "x.txt")


@pytest.mark.parametrize("path", ["../outside.txt", "a/../../outside.txt", "../../etc/passwd"])
def test_local_paths_cannot_escape_the_basepath(tmp_path: Path, path: str) -> None:
    fs = LocalFileSystem(basepath=str(tmp_path / "store"))
    with pytest.raises(BlockError, match="outside this block's basepath"):
        fs.write_path(path, b"no")
    with pytest.raises(BlockError, match="outside this block's basepath"):
        fs.read_path(path)
    assert not (tmp_path / "outside.txt").exists()


def test_local_absolute_path_outside_basepath_is_refused(tmp_path: Path) -> None:
    fs = LocalFileSystem(basepath=str(tmp_path / "store"))
    (tmp_path / "secret.txt").write_text("s")
    with pytest.raises(BlockError, match="outside"):
        fs.read_path(str(tmp_path / "secret.txt"))
    with pytest.raises(BlockError, match="outside"):
        fs.get_directory(from_path=str(tmp_path), local_path=str(tmp_path / "out"))
    with pytest.raises(BlockError, match="outside"):
        fs.put_directory(local_path=str(tmp_path), to_path="../elsewhere")


def test_local_without_basepath_uses_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fs = LocalFileSystem()
    assert fs.write_path("rel/file.txt", b"1") == str(tmp_path / "rel" / "file.txt")
    other = tmp_path.parent / f"elsewhere-{uuid.uuid4().hex}.txt"
    try:
        fs.write_path(str(other), b"2")  # no basepath: no confinement
        assert fs.read_path(str(other)) == b"2"
    finally:
        other.unlink(missing_ok=True)


def test_local_read_errors_are_clear(tmp_path: Path) -> None:
    fs = LocalFileSystem(basepath=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no file at .*missing.txt"):
        fs.read_path("missing.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="get_directory"):
        fs.read_path("folder")
    with pytest.raises(IsADirectoryError):
        fs.write_path("folder", b"x")
    with pytest.raises(TypeError, match="encode"):
        fs.write_path("text.txt", "not bytes")  # type: ignore[arg-type]


# -- LocalFileSystem: folders ---------------------------------------------------------------------


def test_local_get_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_tree(tmp_path / "store", TREE)
    fs = LocalFileSystem(basepath=str(store))
    fs.get_directory(local_path=str(tmp_path / "all"))
    assert tree_of(tmp_path / "all") == TREE
    # a sub folder's contents land directly in local_path (trailing slash as deployments send)
    fs.get_directory(from_path="sub/", local_path=str(tmp_path / "some"))
    assert tree_of(tmp_path / "some") == {"b.txt": "b", "deeper/c.txt": "c"}
    # one file
    fs.get_directory(from_path="sub/b.txt", local_path=str(tmp_path / "one"))
    assert tree_of(tmp_path / "one") == {"b.txt": "b"}
    # default local_path: the working directory
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    fs.get_directory("sub/deeper")
    assert tree_of(work) == {"c.txt": "c"}
    with pytest.raises(FileNotFoundError, match="no folder at .*nope"):
        fs.get_directory("nope", str(tmp_path / "x"))


def test_local_get_directory_into_itself_terminates(tmp_path: Path) -> None:
    store = make_tree(tmp_path / "store", TREE)
    fs = LocalFileSystem(basepath=str(store))
    fs.get_directory(local_path=str(store))  # same folder: nothing to do
    fs.get_directory(local_path=str(store / "copy"))  # a destination inside the source
    assert tree_of(store / "copy") == TREE


def test_local_put_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", TREE)
    fs = LocalFileSystem(basepath=str(tmp_path / "store"))
    assert fs.put_directory(local_path=str(src)) == 4
    assert tree_of(tmp_path / "store") == TREE
    assert fs.put_directory(local_path=str(src / "sub"), to_path="v2/") == 2
    assert tree_of(tmp_path / "store" / "v2") == {"b.txt": "b", "deeper/c.txt": "c"}
    # default local_path: the working directory; a basepath inside it is not copied into itself
    monkeypatch.chdir(src)
    inner = LocalFileSystem(basepath="storage")
    assert inner.put_directory() == 4
    assert tree_of(src / "storage") == TREE
    assert inner.put_directory(local_path=".", to_path=str(src / "storage")) == 4
    assert LocalFileSystem(basepath=str(src)).put_directory(str(src)) == 8  # same folder
    with pytest.raises(NotADirectoryError):
        fs.put_directory(local_path=str(src / "a.txt"))
    with pytest.raises(FileNotFoundError, match="ignore file"):
        fs.put_directory(local_path=str(src), ignore_file="no-such.legatoignore")


def test_put_directory_finds_the_ignore_file_beside_the_upload(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {**TREE, ".legatoignore": "sub/\n.legatoignore\n"})
    fs = LocalFileSystem(basepath=str(tmp_path / "store"))
    assert fs.put_directory(local_path=str(src), ignore_file=".legatoignore") == 2
    assert tree_of(tmp_path / "store") == {"a.txt": "a", "empty.txt": ""}


# -- ignore files follow git's rules: compared with git itself ------------------------------------

IGNORE = r"""# a comment, then a blank line

*.pyc
!keep.pyc
__pycache__/
/build
docs/**/*.md
!docs/keep/**
logs/
*.tmp
tmp?/
data/[ab]*.csv
data/[!x]y.txt
**/secret.env
nested/**
!nested/ok.txt
\#hash.txt
trailing.txt   
sub/dir/
foo**bar
"""

IGNORE_TREE = [
    "a.py", "a.pyc", "keep.pyc", "pkg/mod.py", "pkg/__pycache__/m.pyc", "pkg/__pycache__/x.py",
    "build/out.txt", "src/build/x.txt", "buildings.txt", "docs/index.md", "docs/a/b/c.md",
    "docs/a/b/c.txt", "docs/keep/k.md", "logs/x.log", "deep/logs/y.log", "logs.txt",
    "f.tmp", "deep/f.tmp", "tmp1/z", "tmpx/z", "tmp12/z", "data/a1.csv", "data/c1.csv",
    "data/by.txt", "data/xy.txt", "x/y/secret.env", "secret.env", "nested/ok.txt",
    "nested/no.txt", "nested/deeper/ok.txt", "#hash.txt", "trailing.txt", "sub/dir/file",
    "other/sub/dir/file", "fooXbar", "foobar", "foo/bar", "sub/dirt",
]


def _git_keeps(tree: Path, ignore: Path, tmp: Path) -> set[str]:
    gitdir = tmp / "gitdir"
    subprocess.run(["git", "init", "-q", str(gitdir)], check=True)
    out = subprocess.run(
        ["git", "-c", "core.excludesFile=/dev/null", f"--git-dir={gitdir / '.git'}",
         f"--work-tree={tree}", "ls-files", "--others", f"--exclude-from={ignore}", "-z"],
        check=True, capture_output=True, cwd=tree).stdout.decode()
    return {p for p in out.split("\0") if p}


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_ignore_file_matches_git(tmp_path: Path, kind: str) -> None:
    tree = make_tree(tmp_path / "tree", {rel: rel for rel in IGNORE_TREE})
    ignore = tmp_path / "patterns.gitignore"
    ignore.write_text(IGNORE)
    expected = _git_keeps(tree, ignore, tmp_path)
    assert "a.py" in expected and "keep.pyc" in expected and "a.pyc" not in expected  # sanity
    if kind == "local":
        fs: LocalFileSystem | RemoteFileSystem = LocalFileSystem(basepath=str(tmp_path / "out"))
    else:
        fs = RemoteFileSystem(basepath=f"memory://ignore-{uuid.uuid4().hex}")
    count = fs.put_directory(local_path=str(tree), ignore_file=str(ignore))
    fs.get_directory(local_path=str(tmp_path / "back"))
    assert set(tree_of(tmp_path / "back")) == expected
    assert count == len(expected)


# -- RemoteFileSystem: memory:// --------------------------------------------------------------------


@pytest.fixture
def memfs() -> RemoteFileSystem:
    return RemoteFileSystem(basepath=f"memory://legato-test-{uuid.uuid4().hex}/base")


@pytest.mark.parametrize("basepath", ["bucket/prefix", "/tmp/x", "C:\\data", "", "s3:/bucket"])
def test_remote_basepath_needs_a_scheme(basepath: str) -> None:
    with pytest.raises(ValidationError, match="has no scheme.*LocalFileSystem"):
        RemoteFileSystem(basepath=basepath)


def test_remote_write_then_read(memfs: RemoteFileSystem) -> None:
    url = memfs.write_path("a/b.bin", b"\x00bytes")
    assert url == memfs.basepath + "/a/b.bin"
    assert memfs.read_path("a/b.bin") == b"\x00bytes"
    assert memfs.read_path(url) == b"\x00bytes"  # a full URL inside the basepath
    assert memfs.read_path("/a/./b.bin") == b"\x00bytes"
    with pytest.raises(FileNotFoundError, match="no file at .*missing"):
        memfs.read_path("missing")
    with pytest.raises(IsADirectoryError):
        memfs.read_path("a")
    with pytest.raises(TypeError, match="encode"):
        memfs.write_path("t.txt", "text")  # type: ignore[arg-type]


def test_remote_paths_cannot_escape_the_basepath(memfs: RemoteFileSystem) -> None:
    with pytest.raises(BlockError, match="outside the block's base path"):
        memfs.write_path("../sibling.txt", b"x")
    with pytest.raises(BlockError, match="outside the block's base path"):
        memfs.get_directory("x/../../..", "/tmp/never")
    root = memfs.basepath.rsplit("/", 1)[0]
    with pytest.raises(BlockError, match="outside this block's basepath"):
        memfs.read_path(root + "/other/file")
    with pytest.raises(BlockError, match="not on this block's file system"):
        memfs.read_path("s3://elsewhere/file")
    with pytest.raises(BlockError, match="outside this block's basepath"):
        memfs.read_path(memfs.basepath + "-sibling/file")


def test_remote_directories(memfs: RemoteFileSystem, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", TREE)
    assert memfs.put_directory(local_path=str(src)) == 4
    assert memfs.put_directory(local_path=str(src / "sub"), to_path="v2") == 2
    memfs.get_directory(local_path=str(tmp_path / "all"))
    assert tree_of(tmp_path / "all") == {
        **TREE, "v2/b.txt": "b", "v2/deeper/c.txt": "c"}
    memfs.get_directory(from_path="v2/", local_path=str(tmp_path / "v2"))
    assert tree_of(tmp_path / "v2") == {"b.txt": "b", "deeper/c.txt": "c"}
    memfs.get_directory(from_path="sub/b.txt", local_path=str(tmp_path / "one"))
    assert tree_of(tmp_path / "one") == {"b.txt": "b"}
    with pytest.raises(FileNotFoundError, match="nothing at .*nope"):
        memfs.get_directory("nope", str(tmp_path / "x"))
    # defaults: the working directory on both ends
    monkeypatch.chdir(src / "sub")
    assert memfs.put_directory(to_path="cwd") == 2
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    memfs.get_directory("cwd")
    assert tree_of(work) == {"b.txt": "b", "deeper/c.txt": "c"}


def test_remote_settings_are_secret(memfs: RemoteFileSystem) -> None:
    fs = RemoteFileSystem(basepath=memfs.basepath,
                          settings={"key": "AKIDSHOWN", "secret": "hunter2-secret"})
    for text in (repr(fs), str(fs), fs.model_dump_json(), str(fs.model_dump())):
        assert "hunter2-secret" not in text and "AKIDSHOWN" not in text
    assert fs.settings.get_secret_value() == {"key": "AKIDSHOWN", "secret": "hunter2-secret"}
    assert fs.model_dump()["settings"] == {"key": "********", "secret": "********"}
    assert RemoteFileSystem(basepath="memory://x").settings.get_secret_value() == {}


def test_remote_unknown_scheme() -> None:
    with pytest.raises(BlockError, match="does not know the scheme 'nosuchfs'"):
        RemoteFileSystem(basepath="nosuchfs://bucket/x").read_path("a")


def test_remote_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(MissingExtraError, match=r"legato\[aws\]"):
        RemoteFileSystem(basepath="s3://bucket/x").read_path("a")
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(ImportError, match=r"legato\[gcp\]"):
        RemoteFileSystem(basepath="gcs://bucket/x").filesystem  # noqa: B018


def test_remote_file_scheme(tmp_path: Path) -> None:
    fs = RemoteFileSystem(basepath=f"file://{tmp_path}/store")
    assert fs.write_path("new/dir/f.txt", b"local") == f"file://{tmp_path}/store/new/dir/f.txt"
    assert (tmp_path / "store/new/dir/f.txt").read_bytes() == b"local"
    src = make_tree(tmp_path / "src", TREE)
    assert fs.put_directory(str(src), "up") == 4
    assert tree_of(tmp_path / "store/up") == TREE


# -- RemoteFileSystem: s3:// against moto -----------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials or config from the developer's machine."""
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def bucket(moto_endpoint: str, aws_env: None) -> str:
    import boto3

    name = f"legato-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(
        Bucket=name)
    return name


def s3_settings(endpoint: str) -> dict:
    return {"key": "testing", "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}


def s3_keys(endpoint: str, bucket: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def test_s3_files_and_folders(moto_endpoint: str, bucket: str, tmp_path: Path) -> None:
    fs = RemoteFileSystem(basepath=f"s3://{bucket}/flows", settings=s3_settings(moto_endpoint))
    assert fs.write_path("conf/a.json", b'{"a": 1}') == f"s3://{bucket}/flows/conf/a.json"
    assert fs.read_path("conf/a.json") == b'{"a": 1}'
    src = make_tree(tmp_path / "src", TREE)
    assert fs.put_directory(local_path=str(src), to_path="code") == 4
    # a sibling prefix that merely starts the same must not leak into downloads
    RemoteFileSystem(basepath=f"s3://{bucket}/flows/code-other",
                     settings=s3_settings(moto_endpoint)).write_path("x.txt", b"x")
    assert s3_keys(moto_endpoint, bucket) == {
        "flows/conf/a.json": b'{"a": 1}', "flows/code/a.txt": b"a", "flows/code/empty.txt": b"",
        "flows/code/sub/b.txt": b"b", "flows/code/sub/deeper/c.txt": b"c",
        "flows/code-other/x.txt": b"x"}
    fs.get_directory(from_path="code", local_path=str(tmp_path / "back"))
    assert tree_of(tmp_path / "back") == TREE
    with pytest.raises(FileNotFoundError, match="no file at"):
        fs.read_path("code/missing.txt")
    with pytest.raises(FileNotFoundError, match="nothing at"):
        fs.get_directory(from_path="missing", local_path=str(tmp_path / "none"))


def test_s3_missing_bucket_is_clear(moto_endpoint: str, aws_env: None, tmp_path: Path) -> None:
    fs = RemoteFileSystem(basepath="s3://no-such-bucket-legato/x",
                          settings=s3_settings(moto_endpoint))
    with pytest.raises(FileNotFoundError, match="no-such-bucket-legato"):
        fs.write_path("a.txt", b"a")
    with pytest.raises(FileNotFoundError, match="no-such-bucket-legato"):
        fs.read_path("a.txt")
    with pytest.raises(FileNotFoundError, match="no-such-bucket-legato"):
        fs.put_directory(str(make_tree(tmp_path / "src", TREE)))


def test_s3_honours_aws_endpoint_url(moto_endpoint: str, bucket: str,
                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    fs = RemoteFileSystem(basepath=f"s3://{bucket}/env")  # no settings at all
    fs.write_path("hello.txt", b"via env")
    assert s3_keys(moto_endpoint, bucket) == {"env/hello.txt": b"via env"}
    assert fs.read_path("hello.txt") == b"via env"
    src = make_tree(tmp_path / "src", TREE)
    assert fs.put_directory(str(src), "tree") == 4
    fs.get_directory("tree", str(tmp_path / "back"))
    assert tree_of(tmp_path / "back") == TREE



# -- RemoteFileSystem: gcs:// against the gcp-storage-emulator ----------------------------------


@pytest.fixture(scope="session")
def gcs_emulator():
    from gcs_emulator import GcsEmulator  # tests/blocks/gcs_emulator.py

    emulator = GcsEmulator()
    yield emulator
    emulator.stop()


def test_gcs_through_storage_emulator_host(gcs_emulator, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    name = f"legato-{uuid.uuid4().hex[:12]}"
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    client.create_bucket(name)
    # token "anon": no credential lookup (which would try the cloud metadata server)
    fs = RemoteFileSystem(basepath=f"gcs://{name}/flows",
                          settings={"token": "anon", "project": "test"})
    assert fs.write_path("a/b.txt", b"gcs") == f"gcs://{name}/flows/a/b.txt"
    assert client.bucket(name).blob("flows/a/b.txt").download_as_bytes() == b"gcs"
    assert fs.read_path("a/b.txt") == b"gcs"
    assert fs.put_directory(str(make_tree(tmp_path / "src", TREE)), "code") == 4
    fs.get_directory("code", str(tmp_path / "back"))
    assert tree_of(tmp_path / "back") == TREE
    with pytest.raises(FileNotFoundError, match="no file at"):
        fs.read_path("missing.txt")



# -- saved and loaded (embedded store, PostgreSQL, and through a server) -------------------------


def test_local_file_system_round_trip(history_or_server: str, tmp_path: Path) -> None:
    LocalFileSystem(basepath=str(tmp_path / "store")).save("local-store")
    loaded = LocalFileSystem.load("local-store")
    assert loaded.basepath == str(tmp_path / "store")
    loaded.write_path("x.txt", b"saved")
    assert Block.load("local-file-system/local-store").read_path("x.txt") == b"saved"


def test_remote_file_system_round_trip_keeps_settings_secret(
        history_or_server: str, moto_endpoint: str, bucket: str, tmp_path: Path) -> None:
    from legato.client.factory import get_client

    RemoteFileSystem(basepath=f"s3://{bucket}/saved",
                     settings=s3_settings(moto_endpoint)).save("s3-store")
    listed = get_client().read_block_document("remote-file-system", "s3-store")
    assert "testing" not in str(listed["data"]["settings"])
    loaded = RemoteFileSystem.load("s3-store")
    assert loaded.settings.get_secret_value() == s3_settings(moto_endpoint)
    assert loaded.put_directory(str(make_tree(tmp_path / "src", TREE))) == 4
    Block.load("remote-file-system/s3-store").get_directory(local_path=str(tmp_path / "back"))
    assert tree_of(tmp_path / "back") == TREE
