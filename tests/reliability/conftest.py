"""The reliability tests reuse the integration tests' helpers: ``deploy_helpers`` (servers,
stacks, polling) and the child-process fixtures of tests/integration/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

_INTEGRATION = str(Path(__file__).resolve().parent.parent / "integration")
if _INTEGRATION not in sys.path:  # `from deploy_helpers import ...`, as the integration tests do
    sys.path.insert(0, _INTEGRATION)

from tests.integration.conftest import kill_on_exit  # noqa: E402,F401 - a fixture, reused
