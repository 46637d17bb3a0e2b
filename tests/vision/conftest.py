"""The vision tests' tiny Fashion-MNIST."""

from pathlib import Path

import pytest

from tasks.vision import data as vd

from .idx import write_idx_set


@pytest.fixture
def fashion(data_cache: Path) -> None:
    """A tiny Fashion-MNIST in the data cache: 200 train (20 a class), 50 test."""
    write_idx_set(vd.FASHION_FILES["train-images-idx3-ubyte"].local.parent, 200, 50)
