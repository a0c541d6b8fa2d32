"""The reliability tests reuse the integration tests' helpers (``tests.integration.
deploy_helpers``: servers, stacks, polling) and their child-process fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.conftest import helpers, kill_on_exit  # noqa: F401 - fixtures, reused
from tests.integration.deploy_helpers import Stack, open_stack, truncate

from legato.settings import reset_settings_cache


@pytest.fixture
def pg_stack(tmp_path: Path, legato_home: Path, postgres_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A test's stack on the session's PostgreSQL database, emptied first (the processes it
    starts get LEGATO_DATABASE_URL from the environment)."""
    truncate(postgres_url)
    monkeypatch.setenv("LEGATO_DATABASE_URL", postgres_url)
    reset_settings_cache()
    with open_stack(tmp_path, legato_home) as stack:
        yield stack
