"""legato.aws against a real S3-compatible server: moto in server mode on 127.0.0.1 (a free port),
reached over HTTP by boto3 through AWS_ENDPOINT_URL, as a user's unchanged flow would be."""

from __future__ import annotations

import copy
import gzip
import io
import os
import pickle
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from legato.aws import AwsClientParameters, AwsCredentials, DataFrameSerializationFormat, S3Bucket
from legato.exceptions import BlockError, MissingExtraError

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server in a thread of this process, on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 15
    while True:  # bound already; wait until it answers HTTP
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2).close()
            break
        except urllib.error.HTTPError:
            break  # it answered
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"moto did not answer at {url}") from None
            time.sleep(0.01)
    yield url
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Only the emulator's settings: fake keys, a region, AWS_ENDPOINT_URL; no ~/.aws files."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return moto_endpoint


@pytest.fixture
def plain(aws_env: str) -> Any:
    """A plain boto3 client with the emulator's address spelled out: the independent check."""
    import boto3

    return boto3.client("s3", endpoint_url=aws_env, region_name=REGION,
                        aws_access_key_id="checker", aws_secret_access_key="checker")


@pytest.fixture
def bucket_name(plain: Any) -> str:
    name = f"legato-{uuid.uuid4().hex[:12]}"
    plain.create_bucket(Bucket=name)
    return name


def _keys(plain: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in plain.list_objects_v2(Bucket=bucket).get("Contents", [])}


def _body(plain: Any, bucket: str, key: str) -> bytes:
    return plain.get_object(Bucket=bucket, Key=key)["Body"].read()


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "ç"], "score": [0.5, 1.25, -2.0]})


# -- the blocks as types -------------------------------------------------------------------------
def test_block_types_names_capabilities_and_secret_fields() -> None:
    assert AwsCredentials.get_block_type_name() == "AWS Credentials"
    assert AwsCredentials.get_block_type_slug() == "aws-credentials"
    assert S3Bucket.get_block_type_name() == "S3 Bucket"
    assert S3Bucket.get_block_type_slug() == "s3-bucket"
    assert {"read-path", "write-path", "get-directory", "put-directory"} <= set(
        S3Bucket.get_block_capabilities())
    assert AwsCredentials._secret_fields() == ["aws_secret_access_key", "aws_session_token"]
    assert S3Bucket._secret_fields() == ["credentials.aws_secret_access_key",
                                         "credentials.aws_session_token"]
    bucket = S3Bucket(bucket_name="b")
    assert bucket.credentials == AwsCredentials() and bucket.bucket_folder == ""
    creds = AwsCredentials(aws_secret_access_key="s3cr3t-value", aws_session_token="t0ken-value",
                           aws_client_parameters={"endpoint_url": "http://127.0.0.1:1"})
    assert isinstance(creds.aws_client_parameters, AwsClientParameters)
    for text in (repr(creds), str(creds), creds.model_dump_json(), repr(S3Bucket(
            bucket_name="b", credentials=creds))):
        assert "s3cr3t-value" not in text and "t0ken-value" not in text
    assert creds.aws_secret_access_key.get_secret_value() == "s3cr3t-value"


def test_importing_legato_aws_does_not_import_boto3() -> None:
    code = ("import sys\nsys.modules['boto3'] = None\nsys.modules['botocore'] = None\n"
            "import legato.aws\nfrom legato.aws import AwsCredentials, S3Bucket\n"
            "S3Bucket(bucket_name='b', credentials=AwsCredentials(region_name='x'))\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingExtraError, match=r"legato\[aws\]"):
        AwsCredentials().get_boto3_session()
    with pytest.raises(MissingExtraError, match=r"legato\[aws\]"):
        S3Bucket(bucket_name="b").read_path("x")
    with pytest.raises(ImportError, match=r"pip install 'legato\[aws\]'"):
        S3Bucket(bucket_name="b").list_objects()


# -- endpoints: the emulator, and where stored credentials go -------------------------------------
def test_unchanged_block_talks_to_the_endpoint_in_aws_endpoint_url(
        aws_env: str, plain: Any, bucket_name: str) -> None:
    bucket = S3Bucket(bucket_name=bucket_name)
    assert bucket.credentials.get_s3_client().meta.endpoint_url == aws_env
    assert bucket.write_path("hello.txt", b"hi from legato") == "hello.txt"
    assert _body(plain, bucket_name, "hello.txt") == b"hi from legato"


def test_service_specific_endpoint_variable(monkeypatch: pytest.MonkeyPatch, aws_env: str,
                                            plain: Any, bucket_name: str) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_env)
    S3Bucket(bucket_name=bucket_name).write_path("s3-only.txt", b"x")
    assert _body(plain, bucket_name, "s3-only.txt") == b"x"


def test_stored_credentials_sign_requests_to_the_emulator_only(
        aws_env: str, plain: Any, bucket_name: str) -> None:
    creds = AwsCredentials(aws_access_key_id="AKIASTOREDINBLOCK",
                           aws_secret_access_key="stored-secret-never-sent",
                           region_name=REGION)
    sent: list[tuple[str, dict[str, str], bytes]] = []

    def capture(request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else b""
        sent.append((request.url, {k: str(v) for k, v in request.headers.items()}, body))

    creds.get_s3_client().meta.events.register("before-send.s3", capture)
    bucket = S3Bucket(bucket_name=bucket_name, credentials=creds)
    bucket.write_path("signed.txt", b"payload")
    assert bucket.read_path("signed.txt") == b"payload"
    assert _body(plain, bucket_name, "signed.txt") == b"payload"
    assert len(sent) == 2
    for url, headers, body in sent:
        assert url.startswith(aws_env + "/")
        assert "Credential=AKIASTOREDINBLOCK/" in headers["Authorization"]
        everything = url + repr(headers) + body.decode(errors="replace")
        assert "stored-secret-never-sent" not in everything


def test_block_endpoint_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch, aws_env: str,
                                                  plain: Any, bucket_name: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    creds = AwsCredentials(aws_client_parameters={"endpoint_url": aws_env,
                                                  "config": {"retries": {"max_attempts": 1}}})
    S3Bucket(bucket_name=bucket_name, credentials=creds).write_path("explicit.txt", b"e")
    assert _body(plain, bucket_name, "explicit.txt") == b"e"


def test_unreachable_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                               aws_env: str) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(BlockError, match=r"Could not reach S3 at .*127\.0\.0\.1.*running"):
        S3Bucket(bucket_name="anything").read_path("x")


def test_no_credentials_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                 aws_env: str) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup
    with pytest.raises(BlockError, match="No AWS credentials to read s3://b/x.*AWS_ACCESS_KEY_ID"):
        S3Bucket(bucket_name="b").read_path("x")


def test_clients_are_reused_until_fields_or_environment_change(
        monkeypatch: pytest.MonkeyPatch, aws_env: str) -> None:
    creds = AwsCredentials(region_name=REGION)
    first = creds.get_s3_client()
    assert creds.get_client("s3") is first
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_env + "/")
    assert creds.get_s3_client() is not first
    creds.region_name = "eu-west-1"
    assert creds.get_s3_client().meta.region_name == "eu-west-1"
    # a block that has made clients still pickles and copies (the clients live outside it)
    bucket = S3Bucket(bucket_name="b", credentials=creds)
    assert pickle.loads(pickle.dumps(bucket)) == bucket
    assert copy.deepcopy(bucket) == bucket


# -- objects -----------------------------------------------------------------------------------
def test_parquet_file_upload_and_download(tmp_path: Path, plain: Any, bucket_name: str) -> None:
    df = _frame()
    source = tmp_path / "in.parquet"
    df.to_parquet(source)
    bucket = S3Bucket(bucket_name=bucket_name, bucket_folder="runs/")
    assert bucket.upload_from_path(source) == "runs/in.parquet"
    assert bucket.upload_from_path(str(source), "copies/named.parquet") == \
        "runs/copies/named.parquet"
    assert _keys(plain, bucket_name) == {"runs/in.parquet", "runs/copies/named.parquet"}
    assert _body(plain, bucket_name, "runs/in.parquet") == source.read_bytes()

    out = bucket.download_object_to_path("copies/named.parquet", tmp_path / "out" / "x.parquet")
    assert out == (tmp_path / "out" / "x.parquet").absolute()
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    into_dir = bucket.download_object_to_path("in.parquet", tmp_path / "out")
    assert into_dir == (tmp_path / "out" / "in.parquet").absolute()
    pd.testing.assert_frame_equal(pd.read_parquet(into_dir), df)


@pytest.mark.parametrize("fmt", list(DataFrameSerializationFormat))
def test_dataframe_upload_round_trip(fmt: DataFrameSerializationFormat, plain: Any,
                                     bucket_name: str) -> None:
    df = _frame()
    bucket = S3Bucket(bucket_name=bucket_name, bucket_folder="tables")
    key = bucket.upload_from_dataframe(df, "daily/df.csv", serialization_format=fmt.name.lower())
    assert key == f"tables/daily/df{fmt.suffix}"
    obj = plain.get_object(Bucket=bucket_name, Key=key)
    assert obj["ContentType"] == fmt.content_type
    data = obj["Body"].read()
    if fmt.format == "csv":
        if fmt.compression == "gzip":
            data = gzip.decompress(data)
        back = pd.read_csv(io.BytesIO(data))
    else:
        back = pd.read_parquet(io.BytesIO(data))
    pd.testing.assert_frame_equal(back, df)


def test_dataframe_default_format_and_bad_format(plain: Any, bucket_name: str) -> None:
    bucket = S3Bucket(bucket_name=bucket_name)
    key = bucket.upload_from_dataframe(_frame(), "df")
    assert key == "df.csv.gz"
    assert gzip.decompress(_body(plain, bucket_name, key)).startswith(b"id,name,score\n")
    assert DataFrameSerializationFormat.PARQUET.fix_extension_with("a/b.csv.gz") == "a/b.parquet"
    assert DataFrameSerializationFormat.CSV.fix_extension_with("v1.2/data") == "v1.2/data.csv"
    with pytest.raises(BlockError, match="Unknown serialization_format 'xlsx'.*parquet_snappy"):
        bucket.upload_from_dataframe(_frame(), "df", serialization_format="xlsx")


def test_file_objects_and_read_write_path(plain: Any, bucket_name: str) -> None:
    bucket = S3Bucket(bucket_name=bucket_name, bucket_folder="base")
    assert bucket.upload_from_file_object(io.BytesIO(b"\x00binary\xff"), "f/obj.bin") == \
        "base/f/obj.bin"
    sink = io.BytesIO()
    assert bucket.download_object_to_file_object("f/obj.bin", sink) is sink
    assert sink.getvalue() == b"\x00binary\xff"
    assert bucket.write_path("./f/../notes.txt", b"notes") == "base/notes.txt"
    assert bucket.read_path("/notes.txt") == b"notes"
    assert _body(plain, bucket_name, "base/notes.txt") == b"notes"
    with pytest.raises(BlockError, match=r"'\.\./secret\.txt' leads outside the bucket folder"):
        bucket.read_path("../secret.txt")


def test_list_objects_and_list_blobs(plain: Any, bucket_name: str) -> None:
    for key in ("data/a.csv", "data/b.csv", "data/sub/c.csv", "data2/d.csv", "top.txt"):
        plain.put_object(Bucket=bucket_name, Key=key, Body=b"x" * 3)
    bucket = S3Bucket(bucket_name=bucket_name)

    def keys(objs: list[dict[str, Any]]) -> list[str]:
        return [o["Key"] for o in objs]

    assert keys(bucket.list_objects()) == ["data/a.csv", "data/b.csv", "data/sub/c.csv",
                                           "data2/d.csv", "top.txt"]
    assert keys(bucket.list_objects("data")) == ["data/a.csv", "data/b.csv", "data/sub/c.csv"]
    assert keys(bucket.list_objects("data", delimiter="/")) == ["data/a.csv", "data/b.csv"]
    assert keys(bucket.list_objects("data", max_items=2, page_size=1)) == ["data/a.csv",
                                                                          "data/b.csv"]
    assert bucket.list_objects("data")[0]["Size"] == 3
    assert bucket.list_objects("nothing-here") == []
    assert keys(bucket.list_blobs("data2")) == ["data2/d.csv"]
    folder = S3Bucket(bucket_name=bucket_name, bucket_folder="data")
    assert keys(folder.list_objects("sub")) == ["data/sub/c.csv"]
    assert bucket.list_objects(jmespath_query="Contents[?Size > `5`].Key") == []


def test_missing_key_and_missing_bucket_are_named(tmp_path: Path, bucket_name: str) -> None:
    bucket = S3Bucket(bucket_name=bucket_name, bucket_folder="f")
    address = rf"s3://{bucket_name}/f/absent\.txt"
    with pytest.raises(FileNotFoundError, match=rf"No object {address}"):
        bucket.read_path("absent.txt")
    with pytest.raises(FileNotFoundError, match=rf"No object {address}"):
        bucket.download_object_to_path("absent.txt", tmp_path / "x")
    with pytest.raises(FileNotFoundError, match=rf"No object {address}"):
        bucket.download_object_to_file_object("absent.txt", io.BytesIO())
    with pytest.raises(FileNotFoundError, match="no file .*nope.bin.* to upload"):
        bucket.upload_from_path(tmp_path / "nope.bin")

    gone = S3Bucket(bucket_name=f"missing-{uuid.uuid4().hex[:10]}")
    message = rf"The S3 bucket '{gone.bucket_name}' does not exist .*bucket_name"
    for call in (lambda: gone.read_path("a"), lambda: gone.write_path("a", b"x"),
                 lambda: gone.list_objects(), lambda: gone.get_directory(local_path=tmp_path),
                 lambda: gone.download_object_to_path("a", tmp_path / "a"),
                 lambda: gone.upload_from_file_object(io.BytesIO(b"x"), "a")):
        with pytest.raises(BlockError, match=message):
            call()


# -- directories -------------------------------------------------------------------------------
def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_put_and_get_directory_with_an_ignore_file(tmp_path: Path, plain: Any,
                                                   bucket_name: str) -> None:
    project = tmp_path / "project"
    kept = {"flow.py": b"print('flow')", "pkg/mod.py": b"x = 1", "pkg/deep/data.csv": b"a\n1\n",
            "keep.log": b"kept", ".legatoignore": b""}
    dropped = {"__pycache__/flow.cpython-311.pyc": b"\x00", "pkg/__pycache__/mod.pyc": b"\x00",
               "run.log": b"noise", "pkg/deep/trace.log": b"noise", "build/out.bin": b"\x01",
               "secrets/.env": b"KEY=1"}
    _tree(project, {**kept, **dropped})
    (project / ".legatoignore").write_text(
        "# caches and logs\n__pycache__/\n*.log\n!keep.log\n/build/\nsecrets\n\n")
    kept[".legatoignore"] = (project / ".legatoignore").read_bytes()

    bucket = S3Bucket(bucket_name=bucket_name, bucket_folder="deployments")
    count = bucket.put_directory(str(project), "proj", ignore_file=".legatoignore")
    assert count == len(kept)
    assert _keys(plain, bucket_name) == {f"deployments/proj/{rel}" for rel in kept}

    restore = tmp_path / "restore"
    written = bucket.get_directory("proj", str(restore))
    assert sorted(written) == sorted(str(restore / rel) for rel in kept)
    for rel, content in kept.items():
        assert (restore / rel).read_bytes() == content
    assert not (restore / "run.log").exists()

    # no ignore file: everything; to_path default is the bucket folder itself
    assert bucket.put_directory(str(project)) == len(kept) + len(dropped)
    assert "deployments/build/out.bin" in _keys(plain, bucket_name)
    with pytest.raises(FileNotFoundError, match="ignore file 'missing.ignore' does not exist"):
        bucket.put_directory(str(project), ignore_file="missing.ignore")
    with pytest.raises(FileNotFoundError, match="no folder"):
        bucket.put_directory(str(tmp_path / "absent"))


def test_folder_helpers_and_get_directory_of_the_whole_folder(tmp_path: Path, plain: Any,
                                                              bucket_name: str) -> None:
    src = tmp_path / "src"
    _tree(src, {"a.txt": b"a", "b/c.txt": b"c"})
    bucket = S3Bucket(bucket_name=bucket_name, bucket_folder="root")
    assert bucket.upload_from_folder(src, "up") == "root/up"
    plain.put_object(Bucket=bucket_name, Key="root/up/empty-folder/", Body=b"")
    plain.put_object(Bucket=bucket_name, Key="rootless.txt", Body=b"outside the folder")
    target = bucket.download_folder_to_path("up", str(tmp_path / "down"))
    assert target == (tmp_path / "down").absolute()
    assert (target / "a.txt").read_bytes() == b"a" and (target / "b/c.txt").read_bytes() == b"c"
    assert not (target / "empty-folder").exists()
    whole = tmp_path / "whole"
    bucket.get_directory(local_path=str(whole))
    assert sorted(p.relative_to(whole).as_posix() for p in whole.rglob("*") if p.is_file()) == \
        ["up/a.txt", "up/b/c.txt"]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- saved and loaded through the store (embedded on SQLite / PostgreSQL, and a real server) ------
def test_saved_bucket_with_saved_credentials_round_trips(
        history_or_server: str, tmp_path: Path, plain: Any, bucket_name: str) -> None:
    from legato.client.factory import get_client

    secret = f"stored-secret-{uuid.uuid4().hex}"
    AwsCredentials(aws_access_key_id="AKIASAVED", aws_secret_access_key=secret,
                   region_name=REGION,
                   aws_client_parameters={"config": {"retries": {"max_attempts": 2}}}
                   ).save("aws-creds")
    creds = AwsCredentials.load("aws-creds")
    assert creds.aws_secret_access_key.get_secret_value() == secret
    assert creds.aws_client_parameters.config == {"retries": {"max_attempts": 2}}
    # botocore counts max_attempts as retries after the first try
    assert creds.get_s3_client().meta.config.retries["total_max_attempts"] == 3
    S3Bucket(bucket_name=bucket_name, credentials=creds, bucket_folder="saved").save("data-lake")

    # the credentials are stored once, by reference, with the secret masked in listings
    listed = {d["name"]: d for d in get_client().read_block_documents("aws-credentials")}
    assert listed["aws-creds"]["data"]["aws_secret_access_key"] == "********"
    assert secret not in repr(get_client().read_block_documents("s3-bucket"))

    block = S3Bucket.load("data-lake")
    assert isinstance(block.credentials, AwsCredentials)
    assert block.credentials.aws_secret_access_key.get_secret_value() == secret
    for text in (repr(block), str(block), block.model_dump_json(), repr(block.credentials)):
        assert secret not in text
    source = tmp_path / "in.parquet"
    _frame().to_parquet(source)
    assert block.upload_from_path(source) == "saved/in.parquet"
    assert _body(plain, bucket_name, "saved/in.parquet") == source.read_bytes()
    assert block.upload_from_dataframe(_frame(), "df", "parquet") == "saved/df.parquet"
    pd.testing.assert_frame_equal(
        pd.read_parquet(io.BytesIO(_body(plain, bucket_name, "saved/df.parquet"))), _frame())

    # the bucket loads the credentials as they are now
    AwsCredentials(aws_access_key_id="AKIAROTATED", aws_secret_access_key="rotated-secret",
                   region_name=REGION).save("aws-creds", overwrite=True)
    reloaded = S3Bucket.load("data-lake")
    assert reloaded.credentials.aws_access_key_id == "AKIAROTATED"
    assert reloaded.credentials.aws_secret_access_key.get_secret_value() == "rotated-secret"
    assert reloaded.read_path("in.parquet") == source.read_bytes()
