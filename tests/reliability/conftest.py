"""The reliability tests reuse the integration tests' helpers (``tests.integration.
deploy_helpers``: servers, stacks, polling) and their child-process fixtures."""

from tests.integration.conftest import helpers, kill_on_exit  # noqa: F401 - fixtures, reused
