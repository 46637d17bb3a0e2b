"""Synthesized digit-string corpus: the target is the source sorted (or reversed).

Deterministic from the seed; train, validation and test are drawn from disjoint generator
streams. Tokens: 0 = [PAD], 1 = [BOS], 2 = [EOS], 3..12 = digits 0..9.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from suite.cache import State
from suite.data import pad_sequences
from suite.errors import DataError, UsageError

PAD, BOS, EOS, DIGIT0 = 0, 1, 2, 3
VOCAB_SIZE = DIGIT0 + 10


def make_pairs(n: int, min_len: int, max_len: int, task: str, seed: int
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` (source, target) digit sequences (values 0..9) of random length."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    pairs = []
    for length in lengths.tolist():
        src = torch.randint(0, 10, (length,), generator=generator)
        tgt = src.sort().values if task == "sort" else src.flip(0)
        pairs.append((src, tgt))
    return pairs


def encode_text(text: str) -> torch.Tensor:
    """"3 1 2" or "312" -> token ids; anything but digits and spaces is an error."""
    digits = text.replace(" ", "")
    if not (digits.isascii() and digits.isdigit()):  # str.isdigit alone takes "²" and "٣"
        raise DataError(f"input {text!r}: expected a non-empty string of digits 0-9")
    return torch.tensor([DIGIT0 + int(d) for d in digits])


def collate(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch of ``src`` (B, S), ``src_lengths`` (B,), ``tgt_in`` = [BOS] y and ``tgt_out`` =
    y [EOS], both (B, T), padded with [PAD]."""
    src, src_lengths = pad_sequences([s + DIGIT0 for s, _ in pairs], PAD)
    bos, eos = torch.tensor([BOS]), torch.tensor([EOS])
    tgt_in, _ = pad_sequences([torch.cat([bos, t + DIGIT0]) for _, t in pairs], PAD)
    tgt_out, _ = pad_sequences([torch.cat([t + DIGIT0, eos]) for _, t in pairs], PAD)
    return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}


class Seq2SeqDataModule(pl.LightningDataModule):
    """Digit strings to sort or reverse.

    Args:
        task: ``sort`` or ``reverse``.
        train_size / val_size / test_size: number of pairs in each split.
        min_len / max_len: source length range.
        batch_size: pairs per batch.
        seed: corpus seed (splits use seed, seed + 1, seed + 2).
    """

    def __init__(self, task: Literal["sort", "reverse"] = "sort", train_size: int = 20000,
                 val_size: int = 1000, test_size: int = 1000, min_len: int = 1,
                 max_len: int = 12, batch_size: int = 128, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vocab_size = VOCAB_SIZE

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        make = lambda n, s: make_pairs(n, hp.min_len, hp.max_len, hp.task, s)  # noqa: E731
        self.train_set = make(hp.train_size, hp.seed)
        self.val_set = make(hp.val_size, hp.seed + 1)
        self.test_set = make(hp.test_size, hp.seed + 2)

    def _loader(self, data: list, shuffle: bool) -> DataLoader:
        return DataLoader(data, batch_size=self.hparams.batch_size, shuffle=shuffle,
                          collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


def prepare(dataset: str | None = None) -> None:
    """Nothing to fetch: the corpus is generated on the fly from the seed."""
    if dataset not in (None, *available()):
        raise UsageError(f"unknown seq2seq data set {dataset!r}; valid: {', '.join(available())}")


def available() -> dict[str, State]:
    """The synthesized corpus is always ready: it is generated from the seed."""
    return {"digits (synthesized)": State.READY}
