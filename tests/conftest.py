"""How the test tree is split, by path.

Everything under ``tests/integration/`` is marked ``integration``: those tests run against the
real control plane and real servers (Git, registry, S3, proxy), on binaries built from pinned Go
modules. ``tests/unit/`` and ``tests/fuzz/`` need neither a control plane nor Go, so
``hack/test.sh -m "not integration"`` runs them without starting one or building anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_TESTS = Path(__file__).resolve().parent / "integration"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(INTEGRATION_TESTS):
            item.add_marker(pytest.mark.integration)
