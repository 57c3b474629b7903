"""Fixtures of the batch tests (the inputs themselves are built by :mod:`tests.batch.inputs`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.batch.inputs import make_study


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The small mixed study (read-only for the tests)."""
    return make_study(tmp_path_factory.mktemp("batch"), shared_data)
