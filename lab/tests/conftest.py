"""The lab's tests: the generators, the training script and the demo model's measured floors.

They share the package tests' fixtures and are marked ``lab`` and ``slow`` (``pytest -m "not slow"``
leaves them out; the README's test command runs them).
"""

from __future__ import annotations

import pytest

from tests.conftest import demo_spec, keras  # noqa: F401  (shared session fixtures)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/lab/tests/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.lab)
            item.add_marker(pytest.mark.slow)
