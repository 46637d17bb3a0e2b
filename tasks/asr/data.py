"""Data layer of the ASR head: the two data sets and the LightningDataModule.

The log-mel features (:mod:`tasks.asr.features`) are normalised per mel bin with the mean/std
of the *training* set, which :class:`ASRDataModule` exposes so a checkpoint can carry them and
predict on a user's file the same way (:func:`tasks.asr.features.load_audio_file`).

Data sets (cache layout under ``$SUITE_DATA_DIR/asr/``):

- ``synthetic-n{N}-s{seed}/``: the synthesized corpus of :mod:`tasks.asr.corpus`
  (``manifest.jsonl``, ``audio/*.flac``) plus ``features.pt`` (all log-mels in one float16
  tensor with offsets, and the training-set statistics) so an epoch reads no audio.
- ``asterisk.pt``: the Asterisk prompts, real speech of one professional US voice, decoded from
  G.722 (Debian ``asterisk-core-sounds-en-g722``) with transcripts from Debian
  ``asterisk-core-sounds-en``. The transcript file is fetched with a sha256; the audio is many
  files, so the sha256 of a listing of (name, sha256 of its ``.g722``) is checked instead, which
  holds whatever the ``.deb`` packaging around the files. Used only as a test set.

Both ``.pt`` files are recorded in the cache's manifest with what they were built from
(:func:`suite.cache.built`), and built again when damaged or built from other inputs.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from suite import cache
from suite.cache import State, worst
from suite.data import (
    DebianMember,
    RemoteFile,
    cache_dir,
    fetch,
    load_built,
    single_thread,
)
from suite.errors import DataError, UsageError
from tasks.asr import corpus
from tasks.asr.batching import BatchSpecAugment, FrameBudgetSampler, collate, spec_augment_masks
from tasks.asr.features import N_MELS, SAMPLE_RATE, load_audio, log_mel
from tasks.asr.text import normalize
from tasks.asr.units import CHAR_UNITS, OutputUnits

DEFAULT_CORPUS_SIZE = 16_000
"""Utterances planned for the default corpus (held-out voices included): enough that the default
model cannot memorise it within its training budget, as it did a smaller one. Every run of
reports/truncated_attention trains on it."""
DATASETS = ("synthetic", "asterisk")
TEST_SETS = ("unseen_voices", "asterisk")
"""Order of the test dataloaders: held-out synthetic voices first, then real speech."""

ASTERISK_TRANSCRIPTS = RemoteFile(
    "asr/asterisk/core-sounds-en.txt.gz",
    "436538195b7c7361bd227036686f1a4039f694648c76573bdaca956655d34450",
    (DebianMember("asterisk-core-sounds-en",
                  "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),))
ASTERISK_AUDIO_PACKAGE = "asterisk-core-sounds-en-g722"
ASTERISK_AUDIO_DIR = "usr/share/asterisk/sounds/en_US_f_Allison"
ASTERISK_LISTING_SHA256 = "826db3fcd1ce88da1904951d88b8a1abfcd48f39c658acd2af136c05a1c2e441"
ASTERISK_COUNT = 551
# Transcript typos and a reading the generic rules cannot know (checked against the audio).
_ASTERISK_FIXES = {"exclaimation": "exclamation", "represenatives": "representatives",
                   "umute": "unmute", "Un-indentified": "Unidentified", "witheld": "withheld",
                   "fourtieth": "fortieth", "H.323": "H 3 2 3"}


# ----------------------------------------------------------------------------- data sets


def parse_asterisk_transcripts(raw: str) -> dict[str, str]:
    """``name: text`` lines -> normalised transcripts; silence and bracketed notes dropped.

    ``[...]`` texts are sound descriptions, ``<...>`` beeps and ``(...)`` notes to the
    reader: none is spoken, so they are removed and prompts left with no words are dropped.
    """
    out = {}
    for line in raw.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, _, text = line.partition(":")
        if name.startswith("silence/"):
            continue
        text = re.sub(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)", " ", text)
        for wrong, right in _ASTERISK_FIXES.items():
            text = text.replace(wrong, right)
        if normalize(text):
            out[name.strip()] = normalize(text)
    return out


def asterisk_transcripts() -> dict[str, str]:
    """All normalised Asterisk transcripts (also used to keep them out of the training text)."""
    return parse_asterisk_transcripts(gzip.decompress(fetch(ASTERISK_TRANSCRIPTS).read_bytes())
                                      .decode("utf-8"))


def _asterisk_path() -> Path:
    return cache_dir() / "asr" / "asterisk.pt"


ASTERISK_INPUTS = {"transcripts_sha256": ASTERISK_TRANSCRIPTS.sha256,
                   "listing_sha256": ASTERISK_LISTING_SHA256, "version": 1}
"""What ``asterisk.pt`` is built from, as the cache's manifest records it."""


def synthetic_inputs(corpus_size: int, seed: int) -> dict[str, object]:
    """What a corpus's ``features.pt`` is built from (the corpus is a function of these)."""
    return {"corpus_size": corpus_size, "seed": seed,
            "excluded_sha256": ASTERISK_TRANSCRIPTS.sha256, "version": 2}


def prepare_asterisk() -> Path:
    """Decode, verify and cache the Asterisk test set (idempotent, atomic; built again when
    missing or damaged)."""
    return cache.built(_asterisk_path(), ASTERISK_INPUTS, _build_asterisk)


def _build_asterisk(target: Path) -> None:
    import G722

    texts = asterisk_transcripts()
    # suite.data reads one member per extraction; 551 members need the .deb extracted once.
    deb = DebianMember(ASTERISK_AUDIO_PACKAGE, ASTERISK_AUDIO_DIR).archive()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True)
        root = Path(tmp) / ASTERISK_AUDIO_DIR
        blobs = {str(p.relative_to(root))[: -len(".g722")]: p.read_bytes()
                 for p in root.rglob("*.g722")}
    names = sorted(set(blobs) & set(texts))
    listing = "".join(f"{n}\t{cache.sha256_bytes(blobs[n])}\n" for n in names)
    digest = cache.sha256_bytes(listing.encode())
    if digest != ASTERISK_LISTING_SHA256 or len(names) != ASTERISK_COUNT:
        raise DataError(f"{ASTERISK_AUDIO_PACKAGE}: {len(names)} prompts with listing sha256 "
                        f"{digest[:12]}..., expected {ASTERISK_COUNT} and "
                        f"{ASTERISK_LISTING_SHA256[:12]}...")
    audio = [torch.from_numpy(np.asarray(G722.G722(SAMPLE_RATE, 64000).decode(blobs[n]),
                                         dtype=np.int16)) for n in names]
    with single_thread():
        features = [log_mel(a.float() / 32768.0) for a in audio]
    payload = {"names": names, "texts": [texts[n] for n in names], "audio": audio,
               "listing_sha256": digest, **_pack(features)}
    torch.save(payload, target)


def _pack(features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([len(f) for f in features])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    return {"features": torch.cat(features).half(), "offsets": offsets}


def corpus_dir(corpus_size: int, seed: int) -> Path:
    return cache_dir() / "asr" / f"synthetic-n{corpus_size}-s{seed}"


def prepare_synthetic(corpus_size: int = DEFAULT_CORPUS_SIZE, seed: int = 0,
                      workers: int = 2) -> Path:
    """Synthesize the corpus, then its features and training-set statistics (idempotent;
    the features are built again when missing or damaged)."""
    root = corpus_dir(corpus_size, seed)
    target, inputs = root / "features.pt", synthetic_inputs(corpus_size, seed)
    if cache.check(target, inputs=inputs).ready:
        return target
    # the corpus first: its folder is renamed into place, so nothing may be in it yet
    corpus.build_corpus(root, corpus_size, seed, exclude=set(asterisk_transcripts().values()),
                        workers=workers)
    return cache.built(target, inputs, lambda tmp: _build_features(root, tmp))


def _build_features(root: Path, target: Path) -> None:
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    features, count = [], 0
    total = torch.zeros(N_MELS, dtype=torch.float64)
    squares = torch.zeros(N_MELS, dtype=torch.float64)
    with single_thread():
        for row in rows:
            feats = log_mel(load_audio(root / row["path"]))
            if row["split"] == "train":
                count += len(feats)
                total += feats.sum(0, dtype=torch.float64)
                squares += feats.double().pow(2).sum(0)
            features.append(feats.half())
    if count == 0:
        raise DataError(f"{root}: no training utterances; use a larger corpus_size")
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp_min(1e-6).sqrt()
    payload = {"rows": rows, "mean": mean.float(), "std": std.float(), **_pack(features)}
    torch.save(payload, target)


def prepare(dataset: str | None = None) -> None:
    """Build the named data set (``synthetic`` at its default size, ``asterisk``), or all."""
    if dataset not in (None, *DATASETS):
        raise UsageError(f"unknown ASR data set {dataset!r}; valid: {', '.join(DATASETS)}")
    if dataset in (None, "asterisk"):
        prepare_asterisk()
    if dataset in (None, "synthetic"):
        prepare_synthetic()


def available() -> dict[str, State]:
    """Each data set's state in the cache (nothing is fetched or built)."""
    features = corpus_dir(DEFAULT_CORPUS_SIZE, 0) / "features.pt"
    synthetic = cache.check(features, inputs=synthetic_inputs(DEFAULT_CORPUS_SIZE, 0))
    return {"synthetic": synthetic.state,
            "asterisk": worst([cache.check(_asterisk_path(), inputs=ASTERISK_INPUTS).state,
                               ASTERISK_TRANSCRIPTS.state()])}


def load_asterisk() -> dict:
    """The cached Asterisk set, checked against the verified listing it was built from."""
    payload = torch.load(prepare_asterisk(), weights_only=True)
    if payload["listing_sha256"] != ASTERISK_LISTING_SHA256 or len(payload["names"]) != \
            ASTERISK_COUNT:
        raise DataError(f"{_asterisk_path()}: stale or corrupt cache; delete it and prepare again")
    return payload


# ----------------------------------------------------------------------------- data sets


class FeatureDataset(Dataset):
    """Utterances of a packed feature tensor: normalised features, target ids (the text in
    ``units``) and text; ``masks`` (:func:`spec_augment_masks`) augments them when given."""

    def __init__(self, packed: dict, texts: list[str], indices: list[int], mean: torch.Tensor,
                 std: torch.Tensor, masks: torch.nn.Module | None = None,
                 units: OutputUnits = CHAR_UNITS) -> None:
        self.features, self.offsets = packed["features"], packed["offsets"]
        self.texts, self.indices = texts, indices
        self.mean, self.std = mean, std
        self.masks, self.units = masks, units

    def __len__(self) -> int:
        return len(self.indices)

    def length(self, i: int) -> int:
        j = self.indices[i]
        return int(self.offsets[j + 1] - self.offsets[j])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        j = self.indices[i]
        x = (self.features[self.offsets[j]:self.offsets[j + 1]].float() - self.mean) / self.std
        if self.masks is not None:
            x = self.masks(x.T).T  # masked bins/frames become 0, the training mean
        return x, self.units.encode(self.texts[j]), self.texts[j]


class ASRDataModule(pl.LightningDataModule):
    """Synthetic-voice training, and two test sets: unseen synthetic voices, real speech.

    ``test_dataloader()`` returns ``[unseen_voices, asterisk]`` (:data:`TEST_SETS` order),
    or only the one named by ``test_set``. Batches hold at most ``max_frames`` padded frames
    (1 frame = 10 ms), so short utterances share a batch and a long one goes alone.
    ``seed`` orders the batches; ``corpus_seed`` picks the synthesized corpus, kept apart so
    runs over several seeds share one corpus instead of rendering one each.
    ``sorted_first_epoch`` (SortaGrad) runs epoch 0's training batches shortest-first and
    shuffles them from epoch 1 on (:class:`tasks.asr.batching.EpochOrder`).
    ``spec_augment`` masks training features; ``freq_masks``/``freq_width`` and
    ``time_masks``/``time_width`` set its policy (:func:`spec_augment_masks`).
    ``spec_augment_ramp`` > 0 ramps it in: no masks during the model's learning-rate warmup,
    then widths growing linearly to the policy's over that many optimiser steps, applied to
    the padded batch in the training step (:attr:`batch_augment`); 0 masks each utterance in
    the data set at full width from the first step.
    ``max_test_utterances`` caps the unseen-voice test set (the first of the held-out voices'
    utterances, in the corpus's seeded random order) so scoring time does not grow with the
    corpus; null keeps them all.
    ``units`` encodes the targets: characters until the model's ``setup`` hands over its own
    (word pieces it learned from :meth:`train_texts`, or restored from a checkpoint).
    """

    def __init__(self, corpus_size: int = DEFAULT_CORPUS_SIZE,
                 test_set: Literal["all", "unseen_voices", "asterisk"] = "all",
                 max_frames: int = 12000, spec_augment: bool = True, freq_masks: int = 2,
                 freq_width: int = 27, time_masks: int = 2, time_width: int = 40,
                 num_workers: int = 0, seed: int = 0, corpus_seed: int = 0,
                 max_test_utterances: int | None = 1000, sorted_first_epoch: bool = False,
                 spec_augment_ramp: int = 0) -> None:
        super().__init__()
        if spec_augment_ramp < 0:
            raise UsageError(f"data.spec_augment_ramp must be >= 0 optimiser steps (0 = no "
                             f"ramp), got {spec_augment_ramp}")
        self.save_hyperparameters()
        self.sorted_first_epoch = sorted_first_epoch
        self.max_test_utterances = max_test_utterances
        self.corpus_size, self.test_set, self.max_frames = corpus_size, test_set, max_frames
        self.num_workers, self.seed = num_workers, seed
        ramped = spec_augment and spec_augment_ramp > 0
        self.masks = (spec_augment_masks(freq_masks, freq_width, time_masks, time_width)
                      if spec_augment and not ramped else None)
        self.batch_augment = (BatchSpecAugment(freq_masks, freq_width, time_masks, time_width,
                                               spec_augment_ramp) if ramped else None)
        """SpecAugment the training step applies to each padded batch (ramped); None when
        off or masked per utterance in the data set."""
        self.corpus_seed = corpus_seed
        self.units: OutputUnits = CHAR_UNITS
        self._synthetic: dict | None = None

    def prepare_data(self) -> None:
        prepare_synthetic(self.corpus_size, self.corpus_seed)
        if self.test_set != "unseen_voices":
            prepare_asterisk()

    def _load(self) -> dict:
        if self._synthetic is None:
            path = corpus_dir(self.corpus_size, self.corpus_seed) / "features.pt"
            inputs = synthetic_inputs(self.corpus_size, self.corpus_seed)
            self._synthetic = load_built(path, cache.check(path, inputs=inputs),
                                         "ASR corpus features", "asr")
        return self._synthetic

    @property
    def feature_mean(self) -> torch.Tensor:
        """Per-bin log-mel mean of the training split, shape ``(80,)``."""
        return self._load()["mean"]

    @property
    def feature_std(self) -> torch.Tensor:
        """Per-bin log-mel standard deviation of the training split, shape ``(80,)``."""
        return self._load()["std"]

    def _split(self, split: str, masks: torch.nn.Module | None = None) -> FeatureDataset:
        data = self._load()
        texts = [r["text"] for r in data["rows"]]
        indices = [i for i, r in enumerate(data["rows"]) if r["split"] == split]
        if split == "test" and self.max_test_utterances is not None:
            indices = indices[: self.max_test_utterances]
        return FeatureDataset(data, texts, indices, self.feature_mean, self.feature_std, masks,
                              self.units)

    @property
    def vocab(self) -> list[str]:
        """The targets' symbols, blank first (:attr:`units`)."""
        return self.units.symbols

    def train_texts(self) -> list[str]:
        """The training split's transcripts: the only text output units and LMs learn from."""
        return [r["text"] for r in self._load()["rows"] if r["split"] == "train"]

    def _loader(self, dataset: FeatureDataset, shuffle: bool) -> DataLoader:
        lengths = [dataset.length(i) for i in range(len(dataset))]
        sampler = FrameBudgetSampler(lengths, self.max_frames, shuffle, self.seed,
                                     self.sorted_first_epoch)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                          num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._split("train", self.masks), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._split("val"), shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        loaders = []
        if self.test_set in ("all", "unseen_voices"):
            loaders.append(self._loader(self._split("test"), shuffle=False))
        if self.test_set in ("all", "asterisk"):
            real = load_asterisk()
            dataset = FeatureDataset(real, real["texts"], list(range(len(real["texts"]))),
                                     self.feature_mean, self.feature_std, units=self.units)
            loaders.append(self._loader(dataset, shuffle=False))
        return loaders
