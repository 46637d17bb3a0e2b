"""Fixtures shared across the test tree; those shared only inside one head's tests live in
``tests/<head>/conftest.py``."""

from pathlib import Path

import pytest


@pytest.fixture
def data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty private data cache (``SUITE_DATA_DIR``), so no test reads or writes the real one."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUITE_DATA_DIR", str(cache))
    return cache
