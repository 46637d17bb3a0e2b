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


@pytest.fixture
def planted(data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    """Paths of files a test writes straight into the data cache in place of the real data:
    the cache takes them as verified (their hashes cannot match the real files'), while every
    other file is checked as usual."""
    from suite import cache

    paths: set[Path] = set()
    real = cache.check

    def check(path: Path, sha256: str | None = None, inputs: dict | None = None
              ) -> cache.Verdict:
        if Path(path) in paths:
            return cache.Verdict(cache.State.READY)
        return real(path, sha256, inputs)

    monkeypatch.setattr(cache, "check", check)
    return paths
