"""legato.gcp against local endpoints over HTTP: Cloud Storage through the gcp-storage-emulator
(a real emulator, STORAGE_EMULATOR_HOST), BigQuery through a server that records what the real
google-cloud-bigquery client sends (BIGQUERY_EMULATOR_HOST; see gcs_emulator.RecordingServer)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from gcs_emulator import GcsEmulator, RecordingServer, service_account_info
from pydantic import ValidationError

import legato.gcp
from legato.exceptions import BlockError, MissingExtraError
from legato.gcp import BigQueryWarehouse, GcpCredentials, GcsBucket
from legato.gcp.bigquery import chunk_bounds, parse_table

PROJECT = "legato-test-project"
EMULATOR_VARS = ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE")


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sa_info() -> dict[str, str]:
    return service_account_info(PROJECT)


@pytest.fixture(autouse=True)
def no_ambient_google(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No emulator, key file or gcloud configuration from the developer's shell."""
    for var in (*EMULATOR_VARS, "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
                "GCLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud-config"))


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsEmulator]:
    server = GcsEmulator()
    yield server
    server.stop()


@pytest.fixture
def gcs(gcs_server: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """The emulator, emptied, named by STORAGE_EMULATOR_HOST (as a user would point at it)."""
    gcs_server.wipe()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    return gcs_server.url


@pytest.fixture
def plain(gcs: str) -> Any:
    """A plain storage client with the emulator's address spelled out: the independent check."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="checker", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": gcs})


@pytest.fixture
def bucket_name(plain: Any) -> str:
    name = f"legato-{uuid.uuid4().hex[:12]}"
    plain.create_bucket(name)
    return name


@pytest.fixture
def block(bucket_name: str, sa_info: dict[str, str]) -> GcsBucket:
    return GcsBucket(bucket=bucket_name, gcp_credentials=GcpCredentials(service_account_info=sa_info))


@pytest.fixture(scope="session")
def recorder_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.stop()


@pytest.fixture
def recorder(recorder_server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> RecordingServer:
    recorder_server.clear()
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", recorder_server.url)
    return recorder_server


def read_object(plain: Any, bucket: str, name: str) -> bytes:
    return plain.bucket(bucket).blob(name).download_as_bytes()


def object_names(plain: Any, bucket: str) -> list[str]:
    return sorted(b.name for b in plain.list_blobs(bucket))


# -- the seed, with only imports renamed -----------------------------------------------------------
def test_seed_blocks_saved_loaded_and_upload_lands_in_emulator(
        history_or_server: str, gcs: str, plain: Any, sa_info: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain.create_bucket("de-zoomcamp-gcs")
    monkeypatch.chdir(tmp_path)
    GcpCredentials(service_account_info=sa_info).save("de-zoomcamp-gcp-creds")

    creds = GcpCredentials.load("de-zoomcamp-gcp-creds")
    GcsBucket(bucket="de-zoomcamp-gcs", gcp_credentials=creds).save("de-zoomcamp-bucket")

    # the seed's save_data_local: a gzip-compressed parquet file under data/
    df = pd.DataFrame({
        "VendorID": [1, 2, 2],
        "tpep_pickup_datetime": pd.to_datetime(["2021-01-01 00:30:10", "2021-01-01 00:51:20",
                                                "2021-01-01 00:43:30"]),
        "passenger_count": [1.0, 1.0, 2.0],
        "store_and_fwd_flag": ["N", "N", "Y"],
        "total_amount": [11.8, 4.3, 51.95],
    })
    path = Path("data/yellow/yellow_tripdata_2021-01.parquet")
    path.parent.mkdir(parents=True)
    df.to_parquet(path, compression="gzip")

    bucket = GcsBucket.load("de-zoomcamp-bucket")
    assert bucket.gcp_credentials.service_account_info.get_secret_value() == sa_info
    assert bucket.upload_from_path(from_path=path, to_path=path) == path.as_posix()

    assert object_names(plain, "de-zoomcamp-gcs") == ["data/yellow/yellow_tripdata_2021-01.parquet"]
    landed = read_object(plain, "de-zoomcamp-gcs", path.as_posix())
    assert landed == path.read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(landed)), df)


def test_saved_bucket_refers_to_the_saved_credentials(history_or_server: str,
                                                      sa_info: dict[str, str]) -> None:
    creds = GcpCredentials(service_account_info=sa_info)
    creds.save("creds")
    GcsBucket(bucket="b", gcp_credentials=GcpCredentials.load("creds")).save("bucket")
    GcpCredentials(service_account_info=sa_info, project="other-project").save("creds",
                                                                               overwrite=True)
    assert GcsBucket.load("bucket").gcp_credentials.project == "other-project"


# -- credentials ----------------------------------------------------------------------------------
def test_credentials_from_service_account_info_are_real_and_signed_offline(
        sa_info: dict[str, str]) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from google.oauth2 import service_account

    block = GcpCredentials(service_account_info=sa_info)
    assert block.project == PROJECT  # taken from the key
    creds = block.get_credentials_from_service_account()
    assert isinstance(creds, service_account.Credentials)
    assert creds.service_account_email == sa_info["client_email"]
    assert creds.project_id == PROJECT
    assert "https://www.googleapis.com/auth/cloud-platform" in creds.scopes
    signature = creds.sign_bytes(b"legato")
    public = serialization.load_pem_private_key(sa_info["private_key"].encode(), None).public_key()
    public.verify(signature, b"legato", padding.PKCS1v15(), hashes.SHA256())  # raises if wrong


def test_credentials_from_key_file_with_home_expanded(
        sa_info: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "key.json").write_text(json.dumps(sa_info))
    block = GcpCredentials(service_account_file="~/key.json")
    assert block.get_credentials_from_service_account().service_account_email == (
        sa_info["client_email"])
    assert block.get_project() == PROJECT
    assert block.get_project("explicit") == "explicit"


def test_service_account_info_as_json_text(sa_info: dict[str, str]) -> None:
    block = GcpCredentials(service_account_info=json.dumps(sa_info))
    assert block.service_account_info.get_secret_value() == sa_info


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    block = GcpCredentials(service_account_file=tmp_path / "nope.json")
    with pytest.raises(BlockError, match="nope.json.*does not exist"):
        block.get_credentials_from_service_account()


def test_both_sources_are_refused(sa_info: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="either service_account_info or"):
        GcpCredentials(service_account_info=sa_info, service_account_file=tmp_path / "k.json")


def test_unusable_key_says_so_without_echoing_it(sa_info: dict[str, str]) -> None:
    partial = {k: v for k, v in sa_info.items() if k not in ("client_email", "token_uri")}
    with pytest.raises(BlockError, match="not a usable service-account key") as err:
        GcpCredentials(service_account_info=partial).get_credentials_from_service_account()
    assert "client_email" in str(err.value)
    assert "PRIVATE KEY" not in str(err.value)


def test_no_credentials_and_no_emulator_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # what NO_GCE_CHECK=true does, set after google.auth read the environment: never ask the
    # metadata server (169.254.169.254 is off this machine's loopback)
    from google.auth.compute_engine import _metadata

    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)
    block = GcpCredentials()
    for call in (block.get_credentials_from_service_account, block.get_cloud_storage_client,
                 block.get_bigquery_client):
        with pytest.raises(BlockError, match="No GCP credentials.*GOOGLE_APPLICATION_CREDENTIALS"):
            call()


def test_secrets_stay_out_of_repr_and_dumps(sa_info: dict[str, str]) -> None:
    bucket = GcsBucket(bucket="b", gcp_credentials=GcpCredentials(service_account_info=sa_info))
    for text in (repr(bucket), str(bucket), bucket.model_dump_json(), json.dumps(
            bucket.model_dump(mode="json"))):
        assert "PRIVATE KEY" not in text
        assert sa_info["client_email"] not in text


def test_storage_client_on_emulator_sends_no_credentials(
        recorder_server: RecordingServer, sa_info: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With STORAGE_EMULATOR_HOST set, requests go there and carry no Authorization (a token
    for the stored key could not even be fetched offline)."""
    recorder_server.clear()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", recorder_server.url)
    block = GcsBucket(bucket="some-bucket",
                      gcp_credentials=GcpCredentials(service_account_info=sa_info))
    with pytest.raises(BlockError, match="bucket 'some-bucket' does not exist"):
        block.read_path("a.txt")
    seen = recorder_server.requests
    assert seen and {r.path.split("/")[1] for r in seen} <= {"download", "storage"}
    assert all("authorization" not in r.headers for r in seen)


def test_importing_legato_gcp_loads_no_google_sdk() -> None:
    code = ("import sys, legato.gcp, legato.gcp.cloud_storage, legato.gcp.credentials, "
            "legato.gcp.bigquery; "
            "print(sorted(m for m in sys.modules if m.startswith(('google', 'pandas'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                     sa_info: dict[str, str]) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    monkeypatch.setitem(sys.modules, "google.cloud.bigquery", None)
    creds = GcpCredentials(service_account_info=sa_info)
    with pytest.raises(MissingExtraError, match=r"legato\[gcp\]"):
        GcsBucket(bucket="b", gcp_credentials=creds).read_path("x")
    with pytest.raises(MissingExtraError, match=r"legato\[gcp\]"):
        BigQueryWarehouse(gcp_credentials=creds).fetch_all("SELECT 1")


def test_block_types_and_module_paths() -> None:
    from legato.gcp import cloud_storage, credentials

    assert cloud_storage.GcsBucket is legato.gcp.GcsBucket
    assert credentials.GcpCredentials is legato.gcp.GcpCredentials
    assert (GcsBucket.get_block_type_name(), GcsBucket.get_block_type_slug()) == (
        "GCS Bucket", "gcs-bucket")
    assert (GcpCredentials.get_block_type_name(), GcpCredentials.get_block_type_slug()) == (
        "GCP Credentials", "gcp-credentials")
    assert BigQueryWarehouse.get_block_type_name() == "BigQuery Warehouse"
    assert GcsBucket.get_block_capabilities() == [
        "get-directory", "put-directory", "read-path", "write-path"]
    assert GcpCredentials.get_block_schema()["secret_fields"] == ["service_account_info.*"]
    assert GcsBucket(bucket="b").gcp_credentials == GcpCredentials()
    assert GcsBucket(bucket="b", bucket_folder="flows").bucket_folder == "flows/"


# -- GcsBucket on the emulator ----------------------------------------------------------------------
def test_upload_and_download_paths_under_bucket_folder(
        block: GcsBucket, plain: Any, tmp_path: Path) -> None:
    block.bucket_folder = "runs"
    src = tmp_path / "notes.txt"
    src.write_bytes(b"hello gcs")
    assert block.upload_from_path(src) == "runs/notes.txt"  # to_path defaults to the file name
    assert block.upload_from_path(str(src), "/deep/er/n.txt") == "runs/deep/er/n.txt"
    assert object_names(plain, block.bucket) == ["runs/deep/er/n.txt", "runs/notes.txt"]
    assert read_object(plain, block.bucket, "runs/deep/er/n.txt") == b"hello gcs"

    out = block.download_object_to_path("deep/er/n.txt", tmp_path / "out" / "n.txt")
    assert out == (tmp_path / "out" / "n.txt") and out.read_bytes() == b"hello gcs"
    buf = io.BytesIO()
    assert block.download_object_to_file_object("notes.txt", buf) is buf
    assert buf.getvalue() == b"hello gcs"
    assert block.upload_from_file_object(io.BytesIO(b"from memory"), "mem.bin") == "runs/mem.bin"
    assert read_object(plain, block.bucket, "runs/mem.bin") == b"from memory"


def test_create_bucket_and_download_into_a_folder(gcs: str, plain: Any, tmp_path: Path) -> None:
    block = GcsBucket(bucket=f"made-{uuid.uuid4().hex[:8]}")  # Application Default: anonymous
    block.create_bucket()
    assert plain.bucket(block.bucket).exists()
    with pytest.raises(BlockError, match="GCS could not create the bucket"):
        block.create_bucket()
    block.write_path("deep/file.txt", b"x")
    assert block.download_object_to_path("deep/file.txt", tmp_path) == tmp_path / "file.txt"


def test_raw_json_api_shows_the_objects(block: GcsBucket, gcs: str) -> None:
    block.write_path("a/b.txt", b"one")
    block.write_path("c.txt", b"two")
    listing = httpx.get(f"{gcs}/storage/v1/b/{block.bucket}/o").json()
    assert sorted(item["name"] for item in listing["items"]) == ["a/b.txt", "c.txt"]
    media = httpx.get(f"{gcs}/download/storage/v1/b/{block.bucket}/o/a%2Fb.txt",
                      params={"alt": "media"})
    assert media.content == b"one"


def test_read_write_and_list(block: GcsBucket) -> None:
    assert block.write_path("x/1.txt", b"1") == "x/1.txt"
    block.write_path("x/y/2.txt", b"2")
    block.write_path("z.txt", b"3")
    assert block.read_path("x/y/2.txt") == b"2"
    assert sorted(b.name for b in block.list_blobs()) == ["x/1.txt", "x/y/2.txt", "z.txt"]
    assert sorted(b.name for b in block.list_blobs("x")) == ["x/1.txt", "x/y/2.txt"]
    assert block.list_folders() == ["x", "x/y"]
    assert block.get_bucket().name == block.bucket


@pytest.mark.parametrize(("fmt", "suffix"), [
    ("csv", ".csv"), ("csv_gzip", ".csv.gz"), ("parquet", ".parquet"),
    ("parquet_snappy", ".snappy.parquet"), ("PARQUET_GZIP", ".gz.parquet")])
def test_upload_from_dataframe(block: GcsBucket, plain: Any, fmt: str, suffix: str) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    name = block.upload_from_dataframe(df, "frames/data.parquet", serialization_format=fmt)
    assert name == f"frames/data{suffix}"
    blob = plain.bucket(block.bucket).get_blob(name)
    data = blob.download_as_bytes()
    if "parquet" in fmt.lower():
        back = pd.read_parquet(io.BytesIO(data))
    else:
        back = pd.read_csv(io.BytesIO(gzip.decompress(data) if fmt == "csv_gzip" else data))
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_unknown_dataframe_format(block: GcsBucket) -> None:
    with pytest.raises(BlockError, match="Unknown serialization_format 'xlsx'.*'csv_gzip'"):
        block.upload_from_dataframe(pd.DataFrame({"a": [1]}), "f", serialization_format="xlsx")


def test_put_and_get_directory(block: GcsBucket, plain: Any, tmp_path: Path) -> None:
    block.bucket_folder = "code/"
    src = tmp_path / "src"
    (src / "flows" / "__pycache__").mkdir(parents=True)
    (src / "flows" / "etl.py").write_text("print('etl')")
    (src / "flows" / "__pycache__" / "etl.cpython-311.pyc").write_bytes(b"\0")
    (src / "README.md").write_text("readme")
    (src / "secret.env").write_text("X=1")
    ignore = tmp_path / ".legatoignore"
    ignore.write_text("# ignored\n__pycache__/\n*.env\n")

    assert block.put_directory(local_path=src, to_path="v1", ignore_file=str(ignore)) == 2
    assert object_names(plain, block.bucket) == ["code/v1/README.md", "code/v1/flows/etl.py"]

    # an ignore file named relative to the folder uploaded, when the working directory has none
    (src / ".legatoignore").write_text("*.md\n")
    assert block.put_directory(local_path=src, to_path="v2", ignore_file=".legatoignore") == 4
    assert [n for n in object_names(plain, block.bucket) if n.startswith("code/v2/")] == [
        "code/v2/.legatoignore", "code/v2/flows/__pycache__/etl.cpython-311.pyc",
        "code/v2/flows/etl.py", "code/v2/secret.env"]

    dest = tmp_path / "dest"
    written = block.get_directory(from_path="v1", local_path=dest)
    assert sorted(Path(p).relative_to(dest).as_posix() for p in written) == [
        "README.md", "flows/etl.py"]
    assert (dest / "flows" / "etl.py").read_text() == "print('etl')"

    everything = tmp_path / "all"
    block.get_directory(local_path=everything)  # the whole bucket folder
    assert (everything / "v1" / "README.md").read_text() == "readme"


def test_upload_and_download_folders(block: GcsBucket, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    assert block.upload_from_folder(src, "folder") == "folder"
    out = block.download_folder_to_path("folder", tmp_path / "out")
    assert (out / "a.txt").read_text() == "a" and (out / "sub" / "b.txt").read_text() == "b"


def test_missing_object_bucket_and_local_file_are_named(
        block: GcsBucket, sa_info: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No object 'nope.txt' in the GCS bucket"):
        block.read_path("nope.txt")
    with pytest.raises(FileNotFoundError, match="'missing/x.bin'"):
        block.download_object_to_path("missing/x.bin", tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError, match="no such local file"):
        block.upload_from_path(tmp_path / "absent.parquet")
    ghost = GcsBucket(bucket="no-such-bucket",
                      gcp_credentials=GcpCredentials(service_account_info=sa_info))
    for call in (lambda: ghost.write_path("a", b"a"), lambda: ghost.list_blobs(),
                 lambda: ghost.read_path("a")):
        with pytest.raises(BlockError, match="GCS bucket 'no-such-bucket' does not exist"):
            call()


def test_paths_may_not_leave_the_bucket_folder(block: GcsBucket) -> None:
    block.bucket_folder = "safe"
    with pytest.raises(BlockError, match=r"'\.\./escape.txt' is outside .*gs://.*/safe/"):
        block.write_path("../escape.txt", b"x")
    with pytest.raises(BlockError, match="outside"):
        block.read_path("a/../../escape.txt")
    assert block.write_path("./a/../b.txt", "text") == "safe/b.txt"  # resolved; str as UTF-8
    assert block.read_path("b.txt") == b"text"
    with pytest.raises(ValidationError, match="outside"):
        GcsBucket(bucket="b", bucket_folder="../up")
    with pytest.raises(BlockError, match="names no object"):
        block.read_path("")


# -- BigQuery -----------------------------------------------------------------------------------
def test_chunk_bounds() -> None:
    assert chunk_bounds(1_200_001, 500_000) == [
        (0, 500_000), (500_000, 1_000_000), (1_000_000, 1_200_001)]
    assert chunk_bounds(1_000_000, 500_000) == [(0, 500_000), (500_000, 1_000_000)]
    assert chunk_bounds(3, None) == [(0, 3)]
    assert chunk_bounds(0, 10) == [(0, 0)]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(BlockError, match="chunksize must be a positive"):
            chunk_bounds(10, bad)


def test_parse_table() -> None:
    assert parse_table("zoom.taxiData", "p") == ("p", "zoom", "taxiData")
    assert parse_table("my-proj.zoom.taxiData", None) == ("my-proj", "zoom", "taxiData")
    for bad in ("taxiData", "a.b.c.d", ".t", "zoom.", "bad-dataset.t"):
        with pytest.raises(BlockError, match=r"DATASET\.TABLE"):
            parse_table(bad, "p")
    with pytest.raises(BlockError, match="No project"):
        parse_table("zoom.t", None)


def test_write_dataframe_in_chunks_to_the_emulator_endpoint_without_credentials(
        recorder: RecordingServer, sa_info: dict[str, str]) -> None:
    """The seed's save_to_bq: 1,200,001 rows appended in chunks of 500,000."""
    warehouse = BigQueryWarehouse(gcp_credentials=GcpCredentials(service_account_info=sa_info))
    df = pd.DataFrame({"trip": range(1_200_001)})
    assert warehouse.write_dataframe(df, "zoom.taxiData", if_exists="append",
                                     chunksize=500_000) == 1_200_001

    uploads = recorder.uploads
    frames = [pd.read_parquet(io.BytesIO(u.data)) for u in uploads]
    assert [len(f) for f in frames] == [500_000, 500_000, 200_001]
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), df)
    loads = [u.job["configuration"]["load"] for u in uploads]
    assert {json.dumps(load["destinationTable"], sort_keys=True) for load in loads} == {
        json.dumps({"datasetId": "zoom", "projectId": PROJECT, "tableId": "taxiData"},
                   sort_keys=True)}
    assert [load["writeDisposition"] for load in loads] == ["WRITE_APPEND"] * 3
    seen = recorder.requests
    assert all(r.path.startswith(("/bigquery/v2/projects/", "/upload/bigquery/v2/projects/"))
               for r in seen)
    assert all("authorization" not in r.headers for r in seen)


def test_write_dataframe_taxi_types_and_replace(recorder: RecordingServer,
                                                sa_info: dict[str, str]) -> None:
    warehouse = BigQueryWarehouse(gcp_credentials=GcpCredentials(service_account_info=sa_info),
                                  project="other-project")
    df = pd.DataFrame({
        "VendorID": [1, 2, 1],
        "tpep_pickup_datetime": pd.to_datetime(["2021-01-01 00:30:10", None,
                                                "2021-01-01 00:43:30"]),
        "store_and_fwd_flag": ["N", None, "Y"],
        "total_amount": [11.8, 4.3, None],
    })
    warehouse.write_dataframe(df, "zoom.taxiData", if_exists="replace", chunksize=2)
    loads = [u.job["configuration"]["load"] for u in recorder.uploads]
    assert [load["writeDisposition"] for load in loads] == ["WRITE_TRUNCATE", "WRITE_APPEND"]
    assert {load["destinationTable"]["projectId"] for load in loads} == {"other-project"}
    types = {f["name"]: f["type"] for f in loads[0]["schema"]["fields"]}
    assert types == {"VendorID": "INTEGER", "tpep_pickup_datetime": "TIMESTAMP",
                     "store_and_fwd_flag": "STRING", "total_amount": "FLOAT"}
    back = pd.concat([pd.read_parquet(io.BytesIO(u.data)) for u in recorder.uploads],
                     ignore_index=True)
    assert back["VendorID"].tolist() == [1, 2, 1]
    assert back["store_and_fwd_flag"].tolist()[::2] == ["N", "Y"]


def test_write_dataframe_if_exists_fail(recorder: RecordingServer,
                                        sa_info: dict[str, str]) -> None:
    warehouse = BigQueryWarehouse(gcp_credentials=GcpCredentials(service_account_info=sa_info))
    df = pd.DataFrame({"a": [1]})
    warehouse.write_dataframe(df, "zoom.t", if_exists="fail")
    assert recorder.uploads[0].job["configuration"]["load"]["writeDisposition"] == "WRITE_EMPTY"
    with pytest.raises(BlockError, match=f"{PROJECT}.zoom.t already exists"):
        warehouse.write_dataframe(df, "zoom.t", if_exists="fail")
    assert len(recorder.uploads) == 1
    with pytest.raises(BlockError, match="if_exists must be one of"):
        warehouse.write_dataframe(df, "zoom.t", if_exists="truncate")


def test_bad_table_name_or_missing_dataset(recorder: RecordingServer,
                                           sa_info: dict[str, str]) -> None:
    warehouse = BigQueryWarehouse(gcp_credentials=GcpCredentials(service_account_info=sa_info))
    with pytest.raises(BlockError, match=r"'taxiData' is not a BigQuery table name.*DATASET\.TAB"):
        warehouse.write_dataframe(pd.DataFrame({"a": [1]}), "taxiData")
    assert recorder.requests == []  # refused before asking anything
    recorder.state.missing_datasets.add(f"{PROJECT}.nowhere")
    with pytest.raises(BlockError, match="Not found: Dataset .*nowhere.*dataset exists"):
        warehouse.write_dataframe(pd.DataFrame({"a": [1]}), "nowhere.t")


def test_fetch_rows_from_the_emulator_endpoint(recorder: RecordingServer,
                                               sa_info: dict[str, str]) -> None:
    recorder.state.query_schema = [{"name": "n", "type": "INTEGER"},
                                   {"name": "s", "type": "STRING"}]
    recorder.state.query_rows = [[3, "a"], [4, None], [5, "c"]]
    with BigQueryWarehouse(gcp_credentials=GcpCredentials(service_account_info=sa_info)) as wh:
        rows = wh.fetch_all("SELECT n, s FROM zoom.t WHERE n > %(low)s", {"low": 2})
        assert rows == [(3, "a"), (4, None), (5, "c")]
        sent = json.loads(recorder.requests[-1].body)
        assert sent["query"] == "SELECT n, s FROM zoom.t WHERE n > @`low`"
        assert sent["queryParameters"][0]["parameterValue"] == {"value": "2"}
        assert wh.fetch_one("SELECT n, s FROM zoom.t") == (3, "a")
        assert wh.fetch_many("SELECT n, s FROM zoom.t", size=5) == [(4, None), (5, "c")]
        assert wh.fetch_one("SELECT n, s FROM zoom.t") is None
        wh.reset_cursors()
        assert wh.fetch_one("SELECT n, s FROM zoom.t") == (3, "a")
    assert all("authorization" not in r.headers for r in recorder.requests)


def test_bigquery_emulator_needs_a_project(recorder: RecordingServer) -> None:
    with pytest.raises(BlockError, match="BIGQUERY_EMULATOR_HOST is set.*project"):
        BigQueryWarehouse().fetch_all("SELECT 1")
    assert BigQueryWarehouse(project="p").get_client().project == "p"


def test_warehouse_saved_loaded_and_used(recorder: RecordingServer,
                                         sa_info: dict[str, str]) -> None:
    GcpCredentials(service_account_info=sa_info).save("my-cred")
    BigQueryWarehouse(gcp_credentials=GcpCredentials.load("my-cred"),
                      location="EU").save("warehouse")
    loaded = BigQueryWarehouse.load("warehouse")
    assert loaded.location == "EU"
    loaded.write_dataframe(pd.DataFrame({"a": [1, 2, 3]}), "zoom.taxiData", chunksize=2)
    assert [len(pd.read_parquet(io.BytesIO(u.data))) for u in recorder.uploads] == [2, 1]
    assert os.environ["BIGQUERY_EMULATOR_HOST"] == recorder.url
