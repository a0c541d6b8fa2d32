"""The web UI's Blocks pages in-process (FastAPI's test client over the app, SQLite): the
catalog, creating and editing a block from its type's schema, and that a secret never comes
back in any page."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from legato.blocks.system import Secret
from legato.gcp import GcpCredentials, GcsBucket

ORIGIN = {"Origin": "http://testserver"}
N = "_block_name"  # the form's key for the block's own name (a type may have a "name" field)
KEY_SECRET = "-----BEGIN PRIVATE KEY-----\nMIIfakefakefake-zq81\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def ui(legato_home: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from legato.server.app import create_app
    from legato.settings import get_settings

    app = create_app(get_settings(), services=False)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        client.blocks = app.app.state.blocks  # the server's BlockCore (same database)
        yield client


def sync(fn: Callable[..., Any], *args: Any) -> Any:
    """A block's save/load as a script calls it: in a thread with no event loop (when the
    browser tests share this process, Playwright runs one in the main thread, where save/load
    return awaitables)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(timeout=30)


def _create(ui: Any, slug: str, form: dict[str, str]) -> Any:
    return ui.post(f"/blocks/new/{slug}", data=form, headers=ORIGIN)


def _doc_id(response: Any) -> str:
    assert response.status_code == 303, response.text
    match = re.match(r"/blocks/([^/?]+)\?notice=", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def _count(ui: Any) -> int:
    return len(ui.blocks.read_block_documents())


def test_catalog_lists_the_shipped_types_with_create_links(ui: Any) -> None:
    page = ui.get("/blocks/catalog")
    assert page.status_code == 200
    for slug, name in (("gcs-bucket", "GCS Bucket"), ("gcp-credentials", "GCP Credentials"),
                       ("secret", "Secret"), ("s3-bucket", "S3 Bucket")):
        assert f'href="/blocks/new/{slug}"' in page.text
        assert name in page.text
    assert "write-path" in page.text  # a capability of the bucket types
    found = ui.get("/blocks/catalog", params={"q": "gcs"}).text
    assert 'href="/blocks/new/gcs-bucket"' in found
    assert 'href="/blocks/new/s3-bucket"' not in found
    assert "No block type matches" in ui.get("/blocks/catalog", params={"q": "zzz"}).text


def test_the_form_follows_the_schema(ui: Any) -> None:
    creds = GcpCredentials(project="p1")
    creds_id = sync(creds.save, "team-creds")
    page = ui.get("/blocks/new/gcs-bucket").text
    assert f'name="{N}"' in page and 'name="bucket"' in page and 'name="bucket_folder"' in page
    picker = re.search(r'<select id="f-gcp_credentials".*?</select>', page, re.S)
    assert picker and f'value="{creds_id}"' in picker.group(0) and "team-creds" in picker.group(0)
    secret_page = ui.get("/blocks/new/gcp-credentials").text
    assert re.search(r'<textarea id="f-service_account_info"[^>]*class="secret"', secret_page)
    assert ui.get("/blocks/new/no-such-type").status_code == 404


def test_a_secret_never_shows_in_any_page_and_is_kept_when_left_empty(ui: Any) -> None:
    doc_id = _doc_id(_create(ui, "secret", {N: "db-password", "value": KEY_SECRET}))
    assert sync(Secret.load, "db-password").get() == KEY_SECRET

    block_page = ui.get(f"/blocks/{doc_id}")
    edit_page = ui.get(f"/blocks/{doc_id}/edit")
    listing = ui.get("/blocks")
    for page in (block_page, edit_page, listing, ui.get("/blocks?type=secret")):
        assert page.status_code == 200
        assert "MIIfakefakefake" not in page.text
    assert "db-password" in listing.text
    assert "********" in block_page.text
    assert "stored (hidden): leave empty to keep it" in edit_page.text
    assert re.search(r'<input id="f-value" type="password" name="value" value=""', edit_page.text)

    kept = ui.post(f"/blocks/{doc_id}/edit", data={"value": ""}, headers=ORIGIN)
    assert _doc_id(kept) == doc_id
    assert sync(Secret.load, "db-password").get() == KEY_SECRET
    assert "MIIfakefakefake" not in ui.get(kept.headers["location"]).text

    changed = ui.post(f"/blocks/{doc_id}/edit", data={"value": "new-pass-9"}, headers=ORIGIN)
    assert changed.status_code == 303
    assert sync(Secret.load, "db-password").get() == "new-pass-9"


def test_editing_keeps_stored_secret_json_and_changes_the_rest(ui: Any) -> None:
    key = {"type": "service_account", "project_id": "p", "private_key": KEY_SECRET,
           "client_email": "x@p.iam.gserviceaccount.com"}
    creds_id = sync(GcpCredentials(service_account_info=key, project="p").save, "svc")
    edit = ui.get(f"/blocks/{creds_id}/edit").text
    assert "MIIfakefakefake" not in edit and "x@p.iam" not in edit
    assert 'value="p"' in edit  # the project, a plain field, is pre-filled
    saved = ui.post(f"/blocks/{creds_id}/edit",
                    data={"project": "p2", "service_account_info": ""}, headers=ORIGIN)
    assert saved.status_code == 303
    loaded = sync(GcpCredentials.load, "svc")
    assert loaded.project == "p2"
    assert loaded.service_account_info.get_secret_value() == key


def test_a_bucket_nests_saved_credentials_and_shows_them_as_a_link(ui: Any) -> None:
    creds = GcpCredentials(project="p", service_account_info={"private_key": KEY_SECRET})
    creds_id = sync(creds.save, "creds-a")
    bucket_id = _doc_id(_create(ui, "gcs-bucket", {
        N: "raw-data", "bucket": "my-bucket", "bucket_folder": "in/",
        "gcp_credentials": creds_id}))
    bucket = sync(GcsBucket.load, "raw-data")
    assert (bucket.bucket, bucket.bucket_folder) == ("my-bucket", "in/")
    assert bucket.gcp_credentials.project == "p"
    page = ui.get(f"/blocks/{bucket_id}").text
    assert f'href="/blocks/{creds_id}"' in page and "MIIfakefakefake" not in page
    assert "raw-data" in ui.get(f"/blocks/{creds_id}").text  # "used by"
    listing = ui.get("/blocks").text
    assert "raw-data" in listing and "creds-a" in listing
    only_creds = ui.get("/blocks", params={"type": "gcp-credentials"}).text
    assert "creds-a" in only_creds and "raw-data" not in only_creds

    edit = ui.get(f"/blocks/{bucket_id}/edit").text
    assert re.search(rf'<option value="{creds_id}" selected>creds-a</option>', edit)
    assert ui.post(f"/blocks/{bucket_id}/edit", data={
        "bucket": "other", "bucket_folder": "", "gcp_credentials": creds_id},
        headers=ORIGIN).status_code == 303
    again = sync(GcsBucket.load, "raw-data")
    assert again.bucket == "other" and again.gcp_credentials.project == "p"

    held = ui.post(f"/blocks/{creds_id}/delete", headers=ORIGIN)
    assert held.status_code == 303 and "problem=" in held.headers["location"]
    assert "other blocks hold it" in ui.get(held.headers["location"]).text
    assert sync(GcpCredentials.load, "creds-a").project == "p"

    gone = ui.post(f"/blocks/{bucket_id}/delete", headers=ORIGIN)
    assert gone.status_code == 303 and "notice=" in gone.headers["location"]
    assert ui.get(f"/blocks/{bucket_id}").status_code == 404
    assert "raw-data" not in ui.get("/blocks").text


@pytest.mark.parametrize(("slug", "form", "field", "message"), [
    ("custom-webhook", {N: "hook", "name": "x", "url": "http://h", "timeout": "ten"},
     "timeout", "must be a number"),
    ("kubernetes-job", {N: "k8s", "job_watch_timeout_seconds": "1.5x"},
     "job_watch_timeout_seconds", "must be a whole number"),
    ("docker-container", {N: "dock", "env": "{not json"}, "env", "is not valid JSON"),
    ("gcs-bucket", {N: "no-bucket", "bucket": ""}, "bucket", "Bucket is required"),
    ("gcs-bucket", {N: "Bad Name!", "bucket": "b"}, N, "Invalid block name"),
])
def test_bad_input_is_shown_at_its_field_and_nothing_is_stored(
        ui: Any, slug: str, form: dict[str, str], field: str, message: str) -> None:
    page = _create(ui, slug, form)
    assert page.status_code == 422
    at_field = re.search(rf'data-field="{field}">.*?</div>', page.text, re.S)
    assert at_field and message in at_field.group(0), page.text
    assert "Nothing was saved" in page.text
    assert _count(ui) == 0


def test_a_taken_name_is_refused_and_the_first_block_unchanged(ui: Any) -> None:
    assert _create(ui, "gcs-bucket", {N: "shared", "bucket": "first"}).status_code == 303
    again = _create(ui, "gcs-bucket", {N: "shared", "bucket": "second"})
    assert again.status_code == 409
    at_name = re.search(rf'data-field="{N}">.*?</div>', again.text, re.S)
    assert at_name and "already exists" in at_name.group(0)
    assert 'value="second"' in again.text  # what was typed is kept
    assert sync(GcsBucket.load, "shared").bucket == "first"


def test_typed_secrets_are_not_echoed_when_the_form_comes_back(ui: Any) -> None:
    page = _create(ui, "gcp-credentials", {
        N: "Not Valid", "project": "proj-x",
        "service_account_info": '{"private_key": "MIIfakefakefake"}'})
    assert page.status_code == 422
    assert "MIIfakefakefake" not in page.text
    assert 'value="proj-x"' in page.text
    bad_json = _create(ui, "gcp-credentials", {
        N: "ok-name", "service_account_info": '{"private_key": "MIIfakefakefake"'})
    assert bad_json.status_code == 422
    assert "MIIfakefakefake" not in bad_json.text and "is not valid JSON" in bad_json.text
    assert _count(ui) == 0


def test_a_schema_violation_from_the_store_is_shown_and_nothing_stored(ui: Any) -> None:
    # an object where the schema wants a list: the form sends JSON, the store's check refuses
    page = _create(ui, "docker-container", {N: "dock", "volumes": '{"a": 1}'})
    assert page.status_code == 422
    text = html.unescape(page.text)
    assert "does not fit its type's schema: volumes: expected type 'array'" in text
    at_field = re.search(r'data-field="volumes">.*?</div>', text, re.S)
    assert at_field and "expected type 'array'" in at_field.group(0)
    assert _count(ui) == 0


def test_a_post_from_another_site_is_refused_and_stores_nothing(ui: Any) -> None:
    form = {N: "sneaky", "value": "s3cr3t"}
    assert ui.post("/blocks/new/secret", data=form).status_code == 403
    assert ui.post("/blocks/new/secret", data=form,
                   headers={"Origin": "http://evil.example"}).status_code == 403
    assert _count(ui) == 0
    doc_id = sync(Secret(value="keep").save, "kept")
    assert ui.post(f"/blocks/{doc_id}/delete").status_code == 403
    assert ui.post(f"/blocks/{doc_id}/edit", data={"value": "x"}).status_code == 403
    assert sync(Secret.load, "kept").get() == "keep"
