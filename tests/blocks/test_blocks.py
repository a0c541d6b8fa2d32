"""The block machinery, through both doors: embedded on SQLite and PostgreSQL, and through a real
server (``history_or_server``). Save, load, nest by reference, overwrite, delete, and every bad
input leaving the store as it was."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import Field, SecretStr, ValidationError

from legato.blocks.core import Block
from legato.blocks.fields import SecretDict
from legato.blocks.system import JSON, DateTime, Secret, String
from legato.client.factory import get_client
from legato.exceptions import BlockError, ConflictError, ObjectNotFound


class Creds(Block):
    """Test credentials."""

    _block_type_name = "Test Creds"
    token: SecretStr = Field(description="An API token.")
    info: SecretDict | None = None
    project: str | None = None


class Bucket(Block):
    """A test bucket that nests credentials."""

    _block_type_name = "Test Bucket"
    bucket: str
    folder: str = ""
    creds: Creds = Field(default_factory=lambda: Creds(token="default-token"))

    def read_path(self, path: str) -> bytes:
        return f"{self.bucket}/{self.folder}/{path}".encode()


def _count(slug: str) -> int:
    return len(get_client().read_block_documents(slug))


def test_save_and_load_round_trip(history_or_server: str) -> None:
    creds = Creds(token="tok-1", info={"private_key": "pk-1"}, project="p")
    block_id = creds.save("my-creds")
    assert creds._block_document_id == block_id
    loaded = Creds.load("my-creds")
    assert loaded.token.get_secret_value() == "tok-1"
    assert loaded.info.get_secret_value() == {"private_key": "pk-1"}
    assert loaded.project == "p"
    assert loaded._block_document_id == block_id
    # the base class loads by address, giving the right class
    by_address = Block.load("test-creds/my-creds")
    assert isinstance(by_address, Creds) and by_address.token.get_secret_value() == "tok-1"


def test_nested_saved_block_is_stored_by_reference(history_or_server: str) -> None:
    Creds(token="v1").save("shared")
    creds = Creds.load("shared")
    Bucket(bucket="a", creds=creds).save("bucket-a")
    Bucket(bucket="b", creds=creds).save("bucket-b")
    assert _count("test-creds") == 1  # not copied into each bucket

    # loading the outer loads the inner as it is now
    Creds(token="v2").save("shared", overwrite=True)
    loaded = Bucket.load("bucket-a")
    assert isinstance(loaded.creds, Creds)
    assert loaded.creds.token.get_secret_value() == "v2"
    assert loaded.creds._block_document_id == creds._block_document_id
    # re-saving a loaded outer block keeps the reference
    loaded.folder = "x"
    loaded.save("bucket-a", overwrite=True)
    assert _count("test-creds") == 1
    doc = get_client().read_block_document("test-bucket", "bucket-a")
    assert doc["references"]["creds"]["name"] == "shared"
    assert doc["data"] == {"bucket": "a", "folder": "x"}


def test_unsaved_nested_block_is_stored_inline(history_or_server: str) -> None:
    Bucket(bucket="c", creds=Creds(token="inline-tok")).save("inline")
    assert _count("test-creds") == 0
    loaded = Bucket.load("inline")
    assert loaded.creds.token.get_secret_value() == "inline-tok"
    assert loaded.creds._block_document_id is None
    assert loaded.read_path("f") == b"c//f"


def test_taken_name_is_refused_without_overwrite(history_or_server: str) -> None:
    String(value="first").save("greeting")
    with pytest.raises(ConflictError, match="already exists.*overwrite=True"):
        String(value="second").save("greeting")
    assert String.load("greeting").value == "first"
    String(value="second").save("greeting", overwrite=True)
    assert String.load("greeting").value == "second"
    assert _count("string") == 1


def test_missing_name_lists_the_saved_ones(history_or_server: str) -> None:
    String(value="a").save("alpha")
    String(value="b").save("beta")
    with pytest.raises(ObjectNotFound, match=r"No string block named 'gamma'.*'alpha', 'beta'"):
        String.load("gamma")
    with pytest.raises(ObjectNotFound, match="No date-time block named 'never'. No date-time "
                       "block is saved yet"):
        DateTime.load("never")


def test_unknown_type_and_bad_names(history_or_server: str) -> None:
    String(value="x").save("x")
    with pytest.raises(ObjectNotFound, match="block type 'no-such-type' is not registered; "
                       "registered types: .*'string'"):
        Block.load("no-such-type/x")
    with pytest.raises(ObjectNotFound, match="Unknown block type 'no-such-type'.*registered types: .*'string'"):
        get_client().read_block_documents("no-such-type")
    with pytest.raises(BlockError, match="not a block address"):
        Block.load("no-slash")
    with pytest.raises(BlockError, match="Invalid block name 'Bad Name'"):
        String(value="x").save("Bad Name")
    assert _count("string") == 1


def test_delete_by_instance_and_by_name(history_or_server: str) -> None:
    s = String(value="x")
    s.save("one")
    String(value="y").save("two")
    s.delete()
    String.delete("two")
    assert _count("string") == 0
    with pytest.raises(ObjectNotFound):
        String.delete("two")
    JSON(value={"a": [1, 2]}).save("j")
    Block.delete("json/j")
    assert _count("json") == 0


def test_a_held_block_cannot_be_deleted(history_or_server: str) -> None:
    Creds(token="t").save("held")
    Bucket(bucket="b", creds=Creds.load("held")).save("holder")
    with pytest.raises(ConflictError, match=r"test-bucket/holder \(field 'creds'\)"):
        Creds.delete("held")
    assert Bucket.load("holder").creds.token.get_secret_value() == "t"
    Bucket.delete("holder")
    Creds.delete("held")
    assert _count("test-creds") == 0


def test_reference_to_a_deleted_block_is_refused_and_nothing_saved(history_or_server: str) -> None:
    creds = Creds(token="t")
    creds.save("gone")
    stale = Creds.load("gone")
    Creds.delete("gone")
    with pytest.raises(BlockError, match="field 'creds'.*no longer exists"):
        Bucket(bucket="b", creds=stale).save("orphan")
    assert _count("test-bucket") == 0
    # with overwrite too: the old document stays as it was
    Bucket(bucket="kept").save("kept")
    with pytest.raises(BlockError, match="no longer exists"):
        Bucket(bucket="changed", creds=stale).save("kept", overwrite=True)
    assert Bucket.load("kept").bucket == "kept"


def test_schema_violating_document_is_refused(history_or_server: str) -> None:
    Bucket.register_type_and_schema()
    client = get_client()
    doc = {"name": "bad", "block_type_slug": "test-bucket",
           "block_schema_checksum": Bucket.get_block_schema_checksum(),
           "data": {"bucket": 12, "creds": {"token": "t"}}, "references": {}}
    with pytest.raises(BlockError, match=r"bucket: expected type 'string'.*Nothing was saved"):
        client.save_block_document(doc)
    doc["data"] = {"creds": {"token": "t"}}
    with pytest.raises(BlockError, match="'bucket' is required"):
        client.save_block_document(doc)
    assert _count("test-bucket") == 0
    # the class refuses it first when built in Python
    with pytest.raises(ValidationError):
        Bucket(bucket={"not": "a string"})


def test_system_blocks(history_or_server: str) -> None:
    when = dt.datetime(2026, 11, 26, 8, 30, tzinfo=dt.timezone.utc)
    Secret(value="s3cret").save("pw")
    Secret(value={"user": "u", "password": "p"}).save("pair")
    String(value="hello").save("s")
    JSON(value={"a": [1, 2, {"b": None}]}).save("j")
    DateTime(value=when).save("d")
    assert Secret.load("pw").get() == "s3cret"
    assert Secret.load("pair").get() == {"user": "u", "password": "p"}
    assert String.load("s").value == "hello"
    assert JSON.load("j").value == {"a": [1, 2, {"b": None}]}
    assert DateTime.load("d").value == when
    assert "s3cret" not in repr(Secret.load("pw"))


def test_listings_mask_secrets_and_show_the_rest(history_or_server: str) -> None:
    Creds(token="tok-XYZ", info={"k": "v-XYZ"}, project="proj").save("c")
    Bucket(bucket="b", creds=Creds.load("c")).save("b")
    docs = {d["name"]: d for d in get_client().read_block_documents()}
    assert docs["c"]["data"] == {"token": "********", "info": {"k": "********"}, "project": "proj"}
    nested = docs["b"]["references"]["creds"]
    assert nested["data"]["token"] == "********"
    assert "XYZ" not in repr(docs)
    one = get_client().read_block_document("test-creds", "c")
    assert one["data"]["token"] == "********"
    clear = get_client().read_block_document("test-creds", "c", include_secrets=True)
    assert clear["data"]["token"] == "tok-XYZ"


def test_capabilities_and_schema_are_registered(history_or_server: str) -> None:
    Bucket(bucket="b").save("b")
    t = get_client().read_block_type("test-bucket")
    schema = t["block_schemas"][0]
    assert schema["capabilities"] == ["read-path"]
    assert schema["fields"]["secret_fields"] == ["creds.info.*", "creds.token"]
    assert schema["fields"]["block_schema_references"] == {
        "creds": {"block_type_slug": "test-creds"}}
    assert t["description"] == "A test bucket that nests credentials."


def test_a_deleted_type_is_registered_again_by_the_next_save(history_or_server: str) -> None:
    String(value="a").save("a")
    String.delete("a")
    get_client().delete_block_type("string")
    assert "string" not in [t["slug"] for t in get_client().read_block_types()]
    String(value="b").save("b")  # this process registered it before: it notices and re-registers
    assert String.load("b").value == "b"


def test_in_async_code_save_load_and_delete_are_awaitable(history_or_server: str) -> None:
    import asyncio

    from legato import flow

    @flow
    async def uses_blocks() -> tuple[str, str]:
        await Creds(token="async-tok").save("async-creds")
        loaded = await Creds.load("async-creds")
        other = await Creds.aload("async-creds")
        await Bucket(bucket="ab", creds=loaded).asave("async-bucket")
        await Bucket.delete("async-bucket")
        await other.adelete()
        return loaded.token.get_secret_value(), other.token.get_secret_value()

    assert asyncio.run(uses_blocks()) == ("async-tok", "async-tok")
    assert _count("test-creds") == 0 and _count("test-bucket") == 0
    # outside an event loop the same calls answer at once
    Creds(token="sync").save("sync-creds")
    assert Creds.load("sync-creds").token.get_secret_value() == "sync"
