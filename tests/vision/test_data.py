"""Vision data layer, on tiny files written here in the real formats: no network, no carriers.

The web-only paths (torchvision's MNIST and CIFAR-10 downloaders) run against a mirror served
on localhost holding tiny IDX gz files and CIFAR pickle batches (torchvision's downloader needs
HTTP, not ``file://``), so the code users with internet run is the code tested here.
"""

import dataclasses
import gzip
import hashlib
import os
import pickle
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, MNIST

from suite.data import DebianMember, RemoteFile, URLMember, fetch
from suite.errors import DataError, UsageError
from tasks.vision import data as vd
from tasks.vision import images as vi

from .idx import fake_set, image_ids, write_idx_set


@pytest.fixture(autouse=True)
def cache(request: pytest.FixtureRequest) -> Path | None:
    """An empty data cache per test; tests marked slow use the real one (None)."""
    if request.node.get_closest_marker("slow") is None:
        return request.getfixturevalue("data_cache")
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output free of request lines."""


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on localhost: ``(folder, base URL ending in /)``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "mirror"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fashion_sources_are_debian_first_then_torchvision_mirror() -> None:
    for name, file in vd.FASHION_FILES.items():
        first, *rest = file.sources
        assert first == DebianMember("dataset-fashion-mnist",
                                     f"usr/share/datasets/fashion-mnist/{name}.gz", gunzip=True)
        assert rest and all(isinstance(s, URLMember) and s.gunzip for s in rest)
        assert rest[0].url.endswith(f"{name}.gz") and "fashion-mnist" in rest[0].url


def test_idx_gz_from_a_url_source_is_verified_and_read(tmp_path: Path) -> None:
    decoded = write_idx_set(tmp_path / "mirror", 30, 10, gz=True)
    paths = {}
    for name in vd.IDX_NAMES["train"]:
        source = URLMember(f"file://{tmp_path / 'mirror' / name}.gz", gunzip=True)
        paths[name] = fetch(RemoteFile(f"t/{name}", hashlib.sha256(decoded[name]).hexdigest(),
                                       (source,)))
    images, labels = vi.read_idx(*paths.values())
    expected_images, expected_labels = fake_set(30, 0)
    assert images.dtype == torch.uint8 and images.shape == (30, 1, 28, 28)
    assert torch.equal(images[:, 0], torch.from_numpy(expected_images))
    assert labels.dtype == torch.long and labels.tolist() == expected_labels.tolist()


def test_overwritten_fashion_pixels_are_fetched_again(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Pixels overwritten in the cache make the set corrupt; loading it fetches it again."""
    decoded = write_idx_set(tmp_path / "mirror", 200, 50, gz=True)
    monkeypatch.setattr(vd, "FASHION_FILES", {name: dataclasses.replace(
        file, sha256=hashlib.sha256(decoded[name]).hexdigest(),
        sources=(URLMember((tmp_path / "mirror" / f"{name}.gz").as_uri(), gunzip=True),))
        for name, file in vd.FASHION_FILES.items()})
    first = vd.load_splits("fashion-mnist")
    images = vd.FASHION_FILES["train-images-idx3-ubyte"].local
    with open(images, "r+b") as handle:
        handle.seek(1000)
        handle.write(bytes(20_000))
    assert vd.available()["fashion-mnist"] == "corrupt"
    assert torch.equal(vd.load_splits("fashion-mnist").train_images, first.train_images)
    assert vd.available()["fashion-mnist"] == "ready"


def test_malformed_files_raise_data_error(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"\x01\x02 not idx, not pickle")
    with pytest.raises(DataError, match="IDX"):
        vi.read_idx(tmp_path / "junk", tmp_path / "junk")
    with pytest.raises(DataError, match="CIFAR-10"):
        vi.read_cifar_batches(tmp_path, ["junk"])
    with pytest.raises(UsageError, match="valid: fashion-mnist"):
        vd.VisionDataModule(dataset="svhn")  # type: ignore[arg-type]


def test_carve_splits_balanced_disjoint_nested() -> None:
    labels = torch.arange(1000) % 10
    train, val = vd.carve_splits(labels, 100, 300, seed=5)
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    assert torch.bincount(labels[train]).tolist() == [30] * 10
    assert torch.bincount(labels[val]).tolist() == [10] * 10
    smaller, same_val = vd.carve_splits(labels, 100, 100, seed=5)
    assert torch.equal(same_val, val) and set(smaller.tolist()) <= set(train.tolist())
    everything, _ = vd.carve_splits(labels, 100, None, seed=5)
    assert len(everything) == 900
    with pytest.raises(ValueError, match="train_size=901"):
        vd.carve_splits(labels, 100, 901, seed=5)
    with pytest.raises(ValueError, match="val_size=1000"):
        vd.carve_splits(labels, 1000, None, seed=5)


@pytest.mark.usefixtures("fashion")
def test_fashion_module_subsets_and_batches() -> None:
    dm = vd.VisionDataModule(train_size=50, val_size=30, batch_size=16, seed=3)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 28)
    assert dm.class_names[0] == "T-shirt/top" and dm.mean == (0.2860,)
    dm.setup("fit")
    train, val, test = (dm.parts[p] for p in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (50, 30, 50)
    assert torch.bincount(train.labels).tolist() == [5] * 10
    assert torch.bincount(val.labels).tolist() == [3] * 10
    train_ids, val_ids = image_ids(train.images), image_ids(val.images)
    assert len(train_ids) == 50 and len(val_ids) == 30 and not train_ids & val_ids

    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.float32 and images.shape == (16, 1, 28, 28)
    assert labels.dtype == torch.long and labels.shape == (16,)
    batches = list(dm.val_dataloader())
    assert [len(b[1]) for b in batches] == [16, 14]
    expected = (val.images[:16].float() / 255 - 0.2860) / 0.3530
    assert torch.allclose(batches[0][0], expected, atol=1e-6)  # no augmentation outside train


def test_augment_batch_draws_a_crop_and_flip_per_image() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 2, 8, 8), dtype=torch.uint8)
    out = vd.augment_batch(images, padding=2, flip=False)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    offsets = set()
    for i in range(64):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert found, f"image {i} is not a crop of its padded self"
        offsets.add(found[0])
    assert len(offsets) > 5
    flipped = vd.augment_batch(images, padding=0, flip=True)
    same = [torch.equal(flipped[i], images[i]) for i in range(64)]
    mirrored = [torch.equal(flipped[i], images[i].flip(-1)) for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and 0 < sum(same) < 64


def test_mnist_5k_fixed_stratified_split(planted: set[Path]) -> None:
    images, labels = fake_set(100, 0)
    rows = np.concatenate([images.reshape(100, -1), labels[:, None]], axis=1)
    path = vd.MNIST_5K_FILE.local
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, rows, fmt="%d", delimiter=",")
    planted.add(path)
    tests = []
    for seed in (0, 1):
        dm = vd.VisionDataModule("mnist-5k", val_size=10, seed=seed)
        dm.setup()
        assert [len(dm.parts[p]) for p in ("train", "val", "test")] == [70, 10, 20]
        assert torch.bincount(dm.parts["test"].labels).tolist() == [2] * 10
        tests.append(image_ids(dm.parts["test"].images))
        assert not tests[-1] & image_ids(dm.parts["train"].images)
    assert tests[0] == tests[1]  # the test split does not move with the run's seed
    assert vd.available()["mnist-5k"] == "ready" and vd.available()["fashion-mnist"] == "missing"


def test_mnist_through_torchvision_downloader(mirror: tuple[Path, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder, url = mirror
    write_idx_set(folder, 60, 20, gz=True)
    resources = [(f"{name}.gz", hashlib.md5((folder / f"{name}.gz").read_bytes()).hexdigest())
                 for pair in vd.IDX_NAMES.values() for name in pair]
    monkeypatch.setattr(MNIST, "mirrors", [url])
    monkeypatch.setattr(MNIST, "resources", resources)
    assert vd.available()["mnist"] == "missing"
    vd.prepare("mnist")
    assert vd.available()["mnist"] == "ready"
    dm = vd.VisionDataModule("mnist", val_size=10, batch_size=8)
    dm.setup()
    assert [len(dm.parts[p]) for p in ("train", "val", "test")] == [50, 10, 20]
    assert image_ids(dm.parts["test"].images) == set(range(20))


def test_cifar10_pickles_through_torchvision_downloader(tmp_path: Path, mirror: tuple[Path, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "src" / CIFAR10.base_folder
    folder.mkdir(parents=True)
    names = [n for n, _ in CIFAR10.train_list + CIFAR10.test_list]
    rng = np.random.default_rng(0)
    data = {name: rng.integers(0, 256, (10, 3072), dtype=np.uint8) for name in names}
    for name in names:
        batch = {"batch_label": name, "labels": list(range(10)), "data": data[name]}
        (folder / name).write_bytes(pickle.dumps(batch))
    archive = mirror[0] / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=CIFAR10.base_folder)
    monkeypatch.setattr(CIFAR10, "url", f"{mirror[1]}cifar.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    vd.prepare("cifar10")
    assert vd.available()["cifar10"] == "ready"
    splits = vd.load_splits("cifar10")
    assert splits.train_images.shape == (50, 3, 32, 32) and splits.test_images.shape[0] == 10
    assert torch.equal(splits.test_images.reshape(10, -1), torch.from_numpy(data["test_batch"]))
    dm = vd.VisionDataModule("cifar10", val_size=10, batch_size=8)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and labels.dtype == torch.long
    batch = vd._cifar_batches() / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-100])  # damaged in the cache: downloaded again
    assert vd.available()["cifar10"] == "corrupt"
    assert torch.equal(vd.load_splits("cifar10").test_images, splits.test_images)


class _Runs:
    """Unpickling this calls ``os.system``: what a CIFAR batch must never be able to do."""

    def __reduce__(self) -> tuple:
        return os.system, ("true",)


def test_a_cifar_batch_naming_anything_but_arrays_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({"data": _Runs(), "labels": [0]}))
    with pytest.raises(DataError, match="refusing to load posix.system"):
        vi.read_cifar_batches(tmp_path, ["data_batch_1"])


def test_load_image_file_odd_size_and_mode(tmp_path: Path) -> None:
    image = Image.new("RGBA", (50, 37), (0, 0, 0, 0))  # transparent: flattened onto white
    image.paste((20, 20, 20, 255), (20, 5, 30, 32))  # a dark bar, as drawn on paper
    image.save(tmp_path / "bar.png")
    x = vd.load_image_file(tmp_path / "bar.png")
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    background = (0 - 0.2860) / 0.3530
    assert x[0, 0, 0] == pytest.approx(background, abs=1e-4)  # inverted: light on black
    assert x[0, 14, 14] > 1.5  # 255 - 20 after inversion
    rgb = vd.load_image_file(tmp_path / "bar.png", dataset="cifar10")
    assert rgb.shape == (3, 32, 32)


def _picture(channels: int) -> np.ndarray:
    """A 40x30 8-bit picture: a light blob on a dark ground, every grey level (or colour) used."""
    yy, xx = np.mgrid[:40, :30]
    grey = (np.hypot(yy - 20, xx - 15) * -9 + 255).clip(0, 255).astype(np.uint8)
    grey[0, :] = np.arange(30) * 8  # a ramp: exactness at many levels, not just the extremes
    if channels == 1:
        return grey
    return np.stack([grey, grey // 2, 255 - grey], axis=-1)


def _grey_variants(grey: np.ndarray) -> dict[str, Image.Image]:
    """The same grey picture in each wider or indexed Pillow mode a user's file may open as."""
    wide = grey.astype(np.int32) * 257  # 8-bit p -> 16-bit p * 257 spans the full 16-bit range
    alpha = np.full_like(grey, 255)
    return {
        "I;16.png": Image.fromarray(wide.astype(np.uint16)),
        "I.tif": Image.fromarray(wide),
        "F.tif": Image.fromarray(grey.astype(np.float32)),  # Pillow's F scale is L's, 0..255
        "F-unit.tif": Image.fromarray(grey.astype(np.float32) / 255),
        "P.png": Image.fromarray(grey).convert("P"),
        "LA.png": Image.fromarray(np.stack([grey, alpha], axis=-1), "LA"),
    }


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10"])
def test_load_image_file_scales_wide_and_indexed_modes_like_8_bit(tmp_path: Path,
                                                                  dataset: str) -> None:
    grey = _picture(1)
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    expected = vd.load_image_file(tmp_path / "grey8.png", dataset)
    for name, image in _grey_variants(grey).items():
        image.save(tmp_path / name)
        mode = Image.open(tmp_path / name).mode
        assert mode == name.split(".")[0].removesuffix("-unit"), name  # the file keeps its mode
        assert torch.equal(vd.load_image_file(tmp_path / name, dataset), expected), name
    rgb = _picture(3)
    Image.fromarray(rgb).save(tmp_path / "rgb8.png")
    expected = vd.load_image_file(tmp_path / "rgb8.png", dataset)
    alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
    variants = {
        "P.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "RGBA.png": Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA"),
    }
    for name, image in variants.items():
        image.save(tmp_path / name)
        assert torch.equal(vd.load_image_file(tmp_path / name, dataset), expected), name


def test_load_image_file_rejects_out_of_range_wide_images(tmp_path: Path) -> None:
    grey = _picture(1).astype(np.float32)
    cases = {
        "big.tif": (Image.fromarray(grey * 1000), r"values span \[0, 255000\]; expected"),
        "nan.tif": (Image.fromarray(np.where(grey > 200, np.nan, grey).astype(np.float32)),
                    "NaN or infinite"),
        "negative.tif": (Image.fromarray(grey.astype(np.int32) - 5), r"span \[-5, 250\]"),
    }
    for name, (image, message) in cases.items():
        image.save(tmp_path / name)
        with pytest.raises(DataError, match=message) as err:
            vd.load_image_file(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_load_image_file_rejects_non_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(DataError, match=r"notes\.txt: not an image file \("):
        vd.load_image_file(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no such file"):
        vd.load_image_file(tmp_path / "missing.png")


@pytest.mark.slow
def test_real_fashion_mnist_counts() -> None:
    """The real, checksummed Fashion-MNIST (fetched from the Debian package if not cached)."""
    splits = vd.load_splits("fashion-mnist")
    assert splits.train_images.shape == (60000, 1, 28, 28)
    assert torch.bincount(splits.train_labels).tolist() == [6000] * 10
    assert torch.bincount(splits.test_labels).tolist() == [1000] * 10
