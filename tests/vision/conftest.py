"""The vision tests' tiny Fashion-MNIST."""

from pathlib import Path

import pytest

from tasks.vision import data as vd

from .idx import write_idx_set


@pytest.fixture
def fashion(planted: set[Path]) -> None:
    """A tiny Fashion-MNIST in the data cache, in place of the real one: 200 train (20 a
    class), 50 test."""
    write_idx_set(vd.FASHION_FILES["train-images-idx3-ubyte"].local.parent, 200, 50)
    planted.update(file.local for file in vd.FASHION_FILES.values())
