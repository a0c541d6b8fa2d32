"""The Blocks pages in a real browser (Debian's Chromium) against a real `legato server start`:
a GCS bucket block that nests saved credentials, created entirely by clicking and typing, then
loaded from Python through the server with what was typed; no page shows the key."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.integration.deploy_helpers import Stack
from tests.ui.conftest import base_url

from legato.gcp import GcpCredentials, GcsBucket

KEY = {"type": "service_account", "project_id": "p",
       "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQfakeKEYmaterial42\n-----END PRIVATE KEY-----\n",
       "client_email": "x@p.iam.gserviceaccount.com"}
SECRET_BITS = ("MIIEvQfakeKEYmaterial42", "BEGIN PRIVATE KEY", "x@p.iam.gserviceaccount.com")
DOC_URL = re.compile(r"/blocks/[0-9a-f-]{36}\?notice=")


def _load(cls: Any, name: str, stack: Stack) -> Any:
    """``cls.load(name)`` through the server, as a script would call it (in a thread of its
    own: Playwright's sync API runs an event loop here, where load() returns an awaitable)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(cls.load, name, client=stack.client).result(timeout=30)


def _no_secret_in(page: Any) -> None:
    html = page.content()
    for bit in SECRET_BITS:
        assert bit not in html, f"{bit!r} is in the page {page.url}"


def test_create_a_gcs_bucket_block_that_nests_credentials(stack: Stack, page: Any,
                                                          shoot: Any) -> None:
    stack.start_server()
    url = base_url(stack)

    # the list is empty; "New block" opens the catalog of every shipped type
    page.goto(url + "/blocks")
    assert "No blocks saved yet" in page.locator("main").inner_text()
    page.click("text=New block")
    page.wait_for_url(url + "/blocks/catalog")
    assert page.locator("article.block-type").count() >= 20
    shoot(page, "blocks-catalog")

    # credentials first: a service-account key (a secret object) and a project
    page.locator("article.block-type[data-slug=gcp-credentials] >> text=Create").click()
    page.wait_for_url(url + "/blocks/new/gcp-credentials")
    page.fill("#f-block-name", "team-gcp")
    page.fill("#f-service_account_info", json.dumps(KEY, indent=2))
    page.fill("#f-project", "p")
    page.click("button:text('Create block')")
    page.wait_for_url(DOC_URL)
    assert "Created the GCP Credentials block 'team-gcp'" in page.locator(".notice.ok").inner_text()
    assert page.locator("dd[data-field=service_account_info]").inner_text().strip() == "********"
    _no_secret_in(page)

    # then the bucket: found by the catalog's search, the credentials chosen in the picker
    page.click("nav.side >> text=Blocks")
    page.click("text=New block")
    page.fill("input[name=q]", "gcs")
    page.click("form[role=search] button")
    page.wait_for_url(re.compile(r"/blocks/catalog\?q=gcs"))
    assert page.locator("article.block-type").count() == 1
    page.locator("article.block-type[data-slug=gcs-bucket] >> text=Create").click()
    page.wait_for_url(url + "/blocks/new/gcs-bucket")
    page.fill("#f-block-name", "raw-data")
    page.fill("#f-bucket", "my-bucket")
    page.fill("#f-bucket_folder", "landing/2024/")
    page.select_option("#f-gcp_credentials", label="team-gcp")
    shoot(page, "block-form")
    page.click("button:text('Create block')")
    page.wait_for_url(DOC_URL)
    bucket_url = page.url.split("?")[0]

    # the bucket's page links its credentials and shows no secret
    nested = page.locator("dd[data-field=gcp_credentials] a.nested")
    assert nested.inner_text() == "team-gcp"
    assert page.locator("dd[data-field=bucket]").inner_text() == "my-bucket"
    _no_secret_in(page)
    shoot(page, "block")

    # loaded from Python through the server: what was typed, the credentials nested
    bucket = _load(GcsBucket, "raw-data", stack)
    assert bucket.bucket == "my-bucket"
    assert bucket.bucket_folder == "landing/2024/"
    assert bucket.gcp_credentials.project == "p"
    assert bucket.gcp_credentials.service_account_info.get_secret_value() == KEY

    # the credentials' page says who holds them; editing keeps the key when left empty
    nested.click()
    page.wait_for_url(re.compile(r"/blocks/[0-9a-f-]{36}$"))
    assert "raw-data" in page.locator("section:has(h2:text('Used by'))").inner_text()
    page.click("text=Edit")
    page.wait_for_url(re.compile(r"/edit$"))
    secret = page.locator("#f-service_account_info")
    assert secret.input_value() == ""
    assert secret.get_attribute("placeholder") == "stored (hidden): leave empty to keep it"
    _no_secret_in(page)
    page.fill("#f-project", "p-two")
    page.click("button:text('Save changes')")
    page.wait_for_url(DOC_URL)
    creds = _load(GcpCredentials, "team-gcp", stack)
    assert creds.project == "p-two"
    assert creds.service_account_info.get_secret_value() == KEY

    # the credentials are held by the bucket: deleting them is refused with the reason
    page.once("dialog", lambda d: d.accept())
    page.click("button:text('Delete')")
    page.wait_for_url(re.compile(r"problem="))
    assert "other blocks hold it" in page.locator(".notice.bad").inner_text()

    # the list shows both, and the bucket's page again: nothing secret anywhere
    page.goto(url + "/blocks")
    names = page.locator("table.blocks tbody tr td:first-child").all_inner_texts()
    assert sorted(names) == ["raw-data", "team-gcp"]
    page.goto(bucket_url)
    _no_secret_in(page)
