"""Tiny image sets in the IDX format (MNIST's and Fashion-MNIST's), written by the vision
tests; each image's first two pixels encode its index, so splits can be checked for overlap."""

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from tasks.vision import data as vd


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX format: two zero bytes, type 0x08 (uint8), rank, big-endian sizes, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_set(n: int, seed: int, shape: tuple[int, ...] = (28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images whose first two pixels encode their index, labels cycling 0..9."""
    images = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    flat = images.reshape(n, -1)
    flat[:, 0], flat[:, 1] = np.arange(n) // 256, np.arange(n) % 256
    return images, np.arange(n, dtype=np.uint8) % 10


def write_idx_set(folder: Path, train: int, test: int, gz: bool = False) -> dict[str, bytes]:
    """Write the four IDX files (optionally gzipped); return their decoded bytes by name."""
    folder.mkdir(parents=True, exist_ok=True)
    decoded = {}
    for part, n, seed in (("train", train, 0), ("test", test, 1)):
        images, labels = fake_set(n, seed)
        for name, array in zip(vd.IDX_NAMES[part], (images, labels), strict=True):
            decoded[name] = idx_bytes(array)
            data = gzip.compress(decoded[name]) if gz else decoded[name]
            (folder / (name + (".gz" if gz else ""))).write_bytes(data)
    return decoded


def image_ids(images: torch.Tensor) -> set[int]:
    """Recover the index that :func:`fake_set` wrote into the first two pixels of uint8 images."""
    flat = images.reshape(len(images), -1).long()
    return set((flat[:, 0] * 256 + flat[:, 1]).tolist())
