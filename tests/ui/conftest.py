"""Browser tests of the web UI: Debian's Chromium driven by Playwright (never a downloaded
browser), against real `legato server start` processes.

Screenshots: every test may call ``shoot(page, "name")``; with ``LEGATO_UPDATE_SCREENSHOTS=1``
they are written to docs/images/ (the README and docs show them), otherwise to the test's
temporary folder (and still made, so a broken page shows up as a failure to render).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.deploy_helpers import Stack, open_stack

CHROMIUM = os.environ.get("LEGATO_TEST_CHROMIUM", "/usr/bin/chromium")
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# read at import: each test's LEGATO_* environment is its own (tests/conftest.py)
UPDATE_DOCS = os.environ.get("LEGATO_UPDATE_SCREENSHOTS") == "1"


# per module, not per session: Playwright's sync API runs an event loop in this thread while it
# is started, and with a loop running Legato's Block.save/load return awaitables: later tests in
# the same worker must not inherit it
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        raise AssertionError(
            f"The browser tests need Debian's Chromium at {CHROMIUM}: apt-get install chromium "
            "(.ci/run installs it when it is missing).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def stack(tmp_path: Path, legato_home: Path) -> Iterator[Stack]:
    """A server (and room for agents) on the test's own history."""
    with open_stack(tmp_path, legato_home) as s:
        yield s


@pytest.fixture
def shoot(tmp_path: Path) -> Callable[[Any, str], Path]:
    def take(pg: Any, name: str, full_page: bool = False) -> Path:
        folder = DOCS_IMAGES if UPDATE_DOCS else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ui-{name}.png"
        pg.screenshot(path=str(path), full_page=full_page)
        return path

    return take


def base_url(stack: Stack) -> str:
    return stack.api_url.removesuffix("/api")
