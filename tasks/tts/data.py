"""Data layer of the TTS head: the flite ``slt`` corpus in the cache, and the LightningDataModule.

Cache layout, ``$SUITE_DATA_DIR/tts/slt-n{N}-s{seed}/`` (one data set, ``flite-slt``):

- ``features.pt``: texts, splits, utterance ids, flite's phones with their end frames, all
  log-mels in one float16 tensor with offsets, and the training set's per-bin mean/std
  (:func:`tasks.tts.corpus.build`); recorded in the cache's manifest with what it was built
  from (:func:`suite.cache.built`), and built again when damaged or built from other inputs;
- ``test/short-NNN.wav``, ``test/long-NNN.wav``: flite's own audio of the held-out items, the
  reference that synthesised audio is compared with.

Mels reach the model normalised per bin with the *training* statistics (:attr:`mel_mean`,
:attr:`mel_std`), which a checkpoint carries to turn its predictions back into log-mels.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from suite import cache
from suite.cache import State, atomic_path
from suite.data import cache_dir, load_built
from suite.data import pad_sequences as pad
from suite.errors import UsageError
from tasks.asr.text import normalize
from tasks.tts import corpus

DATASET = "flite-slt"
DEFAULT_CORPUS_SIZE = 12_000
"""Training utterances of the default corpus (validation and held-out items come on top)."""
TEST_SETS = ("short", "long")
"""Order of the test dataloaders: 200 held-out sentences, then 50 long items of 3-5 sentences."""
SHORT_ITEMS = 200
LONG_ITEMS = 50
"""Test-set sizes a corpus is built with; read at build time, so a test can make them small."""
DEFAULT_VAL_SIZE = 64
POOL_MIN_UTTERANCES = 1000
"""Smaller corpora render in this process: starting worker processes would cost more."""
JOIN_MAX_UTTERANCES = 3
JOIN_MAX_FRAMES = 1500
"""Joined training items (:func:`join_groups`) hold at most this many utterances and frames
(15 s): long enough that a sentence's final pause is often followed by more speech."""
BUCKET_BATCHES = 50
"""Batches per length bucket: utterances are sorted by length within a random pool this many
batches large, so a batch pads little yet batches differ from epoch to epoch."""


def corpus_dir(corpus_size: int, seed: int) -> Path:
    return cache_dir() / "tts" / f"slt-n{corpus_size}-s{seed}"


def corpus_inputs(corpus_size: int, seed: int, val_size: int) -> dict[str, object]:
    """What a corpus's ``features.pt`` is built from (the corpus is a function of these)."""
    return {"corpus_size": corpus_size, "seed": seed, "val_size": val_size,
            "short": SHORT_ITEMS, "long": LONG_ITEMS, "voice": corpus.VOICE, "version": 1}


def _verdict(corpus_size: int, seed: int, val_size: int) -> cache.Verdict:
    """``features.pt``'s state; missing too when a held-out WAV is gone."""
    root = corpus_dir(corpus_size, seed)
    verdict = cache.check(root / "features.pt", inputs=corpus_inputs(corpus_size, seed, val_size))
    if verdict.ready and not all((root / "test" / name).is_file() for name in wav_names()):
        return cache.Verdict(State.MISSING, "held-out WAVs missing")
    return verdict


def wav_names() -> list[str]:
    """The held-out WAVs a corpus has (:func:`tasks.tts.corpus.build` names them so)."""
    return ([f"short-{i:03d}.wav" for i in range(SHORT_ITEMS)]
            + [f"long-{i:03d}.wav" for i in range(LONG_ITEMS)])


def workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0))


def prepare_corpus(corpus_size: int = DEFAULT_CORPUS_SIZE, seed: int = 0,
                   val_size: int = DEFAULT_VAL_SIZE, n_workers: int | None = None) -> Path:
    """Render the corpus into the cache unless it is there intact (idempotent, atomic);
    ``features.pt``'s path. ``n_workers``: processes (default: one per core, one for a corpus
    too small to repay starting them)."""
    if corpus_size < 1 or val_size < 1:
        raise UsageError(f"corpus_size and val_size must be >= 1, got {corpus_size}, {val_size}")
    root = corpus_dir(corpus_size, seed)
    target, inputs = root / "features.pt", corpus_inputs(corpus_size, seed, val_size)
    if _verdict(corpus_size, seed, val_size).ready:
        return target
    target.unlink(missing_ok=True)  # also when intact but its WAVs are gone: build both again
    corpus.require_flite()
    if n_workers is None:
        n_workers = workers() if corpus_size >= POOL_MIN_UTTERANCES else 1

    def build(tmp: Path) -> None:
        with atomic_path(root / "test") as wav_dir:
            wav_dir.unlink()
            wav_dir.mkdir()
            corpus.build(tmp, wav_dir, corpus.sentences(), corpus_size, seed, val_size,
                         SHORT_ITEMS, LONG_ITEMS, n_workers)
            shutil.rmtree(root / "test", ignore_errors=True)  # a directory is not replaced

    return cache.built(target, inputs, build)


def prepare(dataset: str | None = None) -> None:
    """Build ``flite-slt`` (the default corpus) into the data cache."""
    if dataset not in (None, DATASET):
        raise UsageError(f"unknown TTS data set {dataset!r}; valid: {DATASET}")
    prepare_corpus(DEFAULT_CORPUS_SIZE, 0, DEFAULT_VAL_SIZE)


def available() -> dict[str, State]:
    """The default corpus's state in the cache (nothing is built)."""
    return {DATASET: _verdict(DEFAULT_CORPUS_SIZE, 0, DEFAULT_VAL_SIZE).state}


# ----------------------------------------------------------------------------- batching


class UtteranceDataset(Dataset):
    """Items of one split: token ids, normalised log-mel, token end frames, id, text, and for
    held-out items the path of flite's WAV.

    An item is one utterance, or (``groups``) several training utterances read one after
    another: their mels and token sequences joined, the pause that ends one and the pause
    that starts the next merged into one pause token, as flite itself pauses between the
    sentences of a longer text. Its id is its first utterance's.
    """

    def __init__(self, data: dict, groups: list[tuple[int, ...]], units: str,
                 wav_dir: Path) -> None:
        self.data, self.groups, self.units, self.wav_dir = data, groups, units, wav_dir
        self.mean, self.std = data["mean"], data["std"]

    def __len__(self) -> int:
        return len(self.groups)

    def _frames(self, j: int) -> int:
        offsets = self.data["mel_offsets"]
        return int(offsets[j + 1] - offsets[j])

    def length(self, i: int) -> int:
        """Frames of the ``i``-th item."""
        return sum(self._frames(j) for j in self.groups[i])

    def _symbols(self, j: int) -> list[str]:
        if self.units == "phones":
            return self.data["phones"][j].split()
        return list(normalize(self.data["texts"][j]))

    def tokens(self, i: int) -> torch.Tensor:
        """Token ids of the ``i``-th item (EOS included), without reading its mel."""
        first, *rest = self.groups[i]
        symbols = self._symbols(first)
        for j in rest:  # phones: the next sentence's leading pause merges into this one's end
            symbols += self._symbols(j)[1:] if self.units == "phones" else [" ", *self._symbols(j)]
        return corpus.ids(self.units, symbols)

    def _ends(self, i: int, tokens: torch.Tensor, frames: int) -> torch.Tensor:
        """Each token's end frame: flite's phone ends, shifted by the frames before each
        utterance; a merged pause ends where the next utterance's leading pause did."""
        if self.units != "phones":
            return torch.full_like(tokens, -1)  # characters have no alignment
        data, parts, start = self.data, [], 0
        for j in self.groups[i]:
            ends = data["ends"][data["end_offsets"][j]:data["end_offsets"][j + 1]] + start
            if parts:  # the merged pause ends where this utterance's leading pause did
                parts[-1][-1] = ends[0]
                ends = ends[1:]
            parts.append(ends)
            start += self._frames(j)
        return torch.cat([*parts, torch.tensor([frames])])  # EOS ends with the audio

    def __getitem__(self, i: int) -> dict:
        data, group = self.data, self.groups[i]
        mel = torch.cat([data["mel"][data["mel_offsets"][j]:data["mel_offsets"][j + 1]]
                         for j in group]).float()
        mel = (mel - self.mean) / self.std  # (frames, 80)
        tokens = self.tokens(i)
        item = {"tokens": tokens, "mel": mel, "token_ends": self._ends(i, tokens, len(mel)),
                "index": int(data["ids"][group[0]]),
                "text": ". ".join(data["texts"][j] for j in group)}
        if len(group) == 1 and data["wavs"][group[0]]:
            item["wav"] = str(self.wav_dir / data["wavs"][group[0]])
        return item


def check_join_share(share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise UsageError(f"data.join_share must be in [0, 1], got {share}")


def join_groups(indices: list[int], frames: list[int], share: float, seed: int
                ) -> list[tuple[int, ...]]:
    """Group training utterances into items: each utterance, in a seeded random order, starts
    a joined item of 2 or :data:`JOIN_MAX_UTTERANCES` utterances with probability ``share``
    (while the item stays within :data:`JOIN_MAX_FRAMES`), else stands alone. Every utterance
    lands in exactly one item. ``frames[k]`` is ``indices[k]``'s length."""
    check_join_share(share)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(indices), generator=generator).tolist()
    draws = torch.rand(len(order), generator=generator).tolist()
    sizes = torch.randint(2, JOIN_MAX_UTTERANCES + 1, (len(order),), generator=generator).tolist()
    groups, k = [], 0
    while k < len(order):
        group, total = [order[k]], frames[order[k]]
        if draws[k] < share:
            while (len(group) < sizes[k] and k + len(group) < len(order)
                   and total + frames[order[k + len(group)]] <= JOIN_MAX_FRAMES):
                total += frames[order[k + len(group)]]
                group.append(order[k + len(group)])
        groups.append(tuple(indices[g] for g in group))
        k += len(group)
    return groups


def collate(items: list[dict]) -> dict:
    """Pad utterances into the batch every TTS model consumes (see :class:`TTSDataModule`)."""
    tokens, token_lengths = pad([it["tokens"] for it in items], corpus.PAD)
    mel, mel_lengths = pad([it["mel"] for it in items])
    unknown = bool((items[0]["token_ends"] < 0).all())
    token_ends, _ = pad([it["token_ends"] for it in items], -1 if unknown else 0)
    batch = {"tokens": tokens, "token_lengths": token_lengths, "mel": mel,
             "mel_lengths": mel_lengths, "token_ends": token_ends,
             "index": torch.tensor([it["index"] for it in items]),
             "text": [it["text"] for it in items]}
    if all("wav" in it for it in items):
        batch["wav"] = [it["wav"] for it in items]
    return batch


class BucketSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` utterances of similar length, in a seeded random order.

    Each epoch (seed + epoch) shuffles the utterances, sorts each pool of
    :data:`BUCKET_BATCHES` batches by length, cuts it into batches and shuffles the batches.
    Under torch.distributed each rank takes every world-size-th batch, truncated so all ranks
    run the same number of steps.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        pool = self.batch_size * BUCKET_BATCHES
        batches = []
        for start in range(0, len(order), pool):
            bucket = sorted(order[start:start + pool], key=lambda i: self.lengths[i])
            batches += [bucket[i:i + self.batch_size] for i in range(0, len(bucket),
                                                                      self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            batches = batches[: len(batches) // world * world][rank::world]
        return batches

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        self.epoch += 1
        yield from batches


class TTSDataModule(pl.LightningDataModule):
    """flite ``slt`` reading WordNet sentences: text (phones or characters) -> log-mel.

    A batch is a dict: ``tokens`` ``(B, N)`` (PAD 0, each row ends with EOS) and
    ``token_lengths`` ``(B,)``; ``mel`` ``(B, T, 80)`` normalised per bin, padding 0, and
    ``mel_lengths`` ``(B,)``; ``token_ends`` ``(B, N)``, each token's exclusive end frame as
    flite spoke it (EOS: the mel length; padding 0; all -1 for ``units="chars"``, unknown);
    ``index`` ``(B,)``, the utterance's stable id; ``text``; and in test batches ``wav``, the
    paths of flite's own audio. ``test_dataloader()`` returns ``[short, long]``
    (:data:`TEST_SETS`). ``seed`` picks the corpus, the joined items and the batch order.

    ``join_share``: the share of training utterances that start a joined item of 2-3
    utterances (:func:`join_groups`); 0 keeps the corpus's single sentences, the default
    recipe (``configs/tts/default.yaml``) joins a quarter. Every utterance of the corpus is
    one sentence; without joined items the model only ever hears a sentence's final pause
    followed by the end, and on a text of several sentences stops speaking (or babbles)
    after the first. Validation and test items are never joined.
    """

    def __init__(self, corpus_size: int = DEFAULT_CORPUS_SIZE,
                 units: Literal["phones", "chars"] = "phones", batch_size: int = 32,
                 val_size: int = DEFAULT_VAL_SIZE, seed: int = 0, num_workers: int = 0,
                 join_share: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vocab = corpus.vocabulary(units)
        self.vocab_size: int = len(self.vocab)
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.corpus_size, self.units, self.batch_size = corpus_size, units, batch_size
        self.val_size, self.seed, self.num_workers = val_size, seed, num_workers
        check_join_share(join_share)  # here, not at the first epoch
        self.join_share = join_share
        self._data: dict | None = None

    def prepare_data(self) -> None:
        prepare_corpus(self.corpus_size, self.seed, self.val_size)

    def setup(self, stage: str | None = None) -> None:
        self._load()

    def _load(self) -> dict:
        if self._data is None:
            self._data = load_built(corpus_dir(self.corpus_size, self.seed) / "features.pt",
                                    _verdict(self.corpus_size, self.seed, self.val_size),
                                    "TTS corpus", "tts")
        return self._data

    @property
    def mel_mean(self) -> torch.Tensor:
        """Per-bin log-mel mean of the training split, ``(80,)`` float32."""
        return self._load()["mean"]

    @property
    def mel_std(self) -> torch.Tensor:
        """Per-bin log-mel standard deviation of the training split, ``(80,)`` float32."""
        return self._load()["std"]

    @property
    def frames_per_token(self) -> float:
        """Mean mel frames per input token (EOS included) over the training split: how long a
        text of n tokens is expected to last, which caps free-running synthesis."""
        train = self.dataset("train")
        frames = sum(train.length(i) for i in range(len(train)))
        tokens = sum(len(train.tokens(i)) for i in range(len(train)))
        return frames / max(tokens, 1)

    def dataset(self, split: Literal["train", "val", "short", "long"]) -> UtteranceDataset:
        """The items of one split: single utterances in corpus order, except that training
        items may join several (:attr:`join_share`)."""
        data = self._load()
        indices = [i for i, s in enumerate(data["splits"]) if s == split]
        groups = [(i,) for i in indices]
        if split == "train" and self.join_share > 0:
            offsets = data["mel_offsets"]
            frames = [int(offsets[i + 1] - offsets[i]) for i in indices]
            groups = join_groups(indices, frames, self.join_share, self.seed)
        return UtteranceDataset(data, groups, self.units,
                                corpus_dir(self.corpus_size, self.seed) / "test")

    def _loader(self, dataset: UtteranceDataset, **batching: object) -> DataLoader:
        return DataLoader(dataset, collate_fn=collate, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, **batching)

    def train_dataloader(self) -> DataLoader:
        train = self.dataset("train")
        sampler = BucketSampler([train.length(i) for i in range(len(train))], self.batch_size,
                                self.seed)
        return self._loader(train, batch_sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), batch_size=self.batch_size, shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.dataset(name), batch_size=self.batch_size, shuffle=False)
                for name in TEST_SETS]
