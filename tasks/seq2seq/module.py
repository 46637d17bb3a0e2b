"""Seq2seq TaskModule: teacher-forced cross-entropy, greedy exact-match accuracy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric

from suite.blocks import LayerConfig
from suite.module import Stage, TaskModule
from tasks.seq2seq.data import BOS, DIGIT0, EOS, PAD, VOCAB_SIZE, encode_text
from tasks.seq2seq.model import Seq2SeqTransformer


def strip_eos(tokens: Tensor) -> list[list[int]]:
    """Token rows -> digit lists, cut at the first [EOS]."""
    rows = []
    for row in tokens.tolist():
        row = row[: row.index(EOS)] if EOS in row else row
        rows.append([t - DIGIT0 for t in row if t >= DIGIT0])
    return rows


ENCODER = LayerConfig(dim=64, depth=2, ffn_dim=256)
"""The seq2seq head's default size of each stack (``--model.encoder.*``)."""


class Seq2SeqModule(TaskModule):
    """Digit-string transduction with :class:`tasks.seq2seq.model.Seq2SeqTransformer`.

    Args:
        encoder: the size of the encoder stack and of the decoder stack, which mirrors it
            (``--model.encoder.depth=1``: one layer each).
        The optimiser arguments are :class:`suite.module.TaskModule`'s.
    """

    def __init__(self, encoder: LayerConfig = ENCODER, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = Seq2SeqTransformer(VOCAB_SIZE, encoder)
        self.exact = {s: MeanMetric() for s in ("val", "test")}
        self._metrics = torch.nn.ModuleDict(self.exact)

    def batch_size(self, batch: dict[str, Tensor]) -> int:
        return batch["src"].shape[0]

    def step(self, batch: dict[str, Tensor], stage: Stage) -> Tensor:
        logits, _ = self.model(batch["src"], batch["src_lengths"], batch["tgt_in"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(),
                               ignore_index=PAD)
        n = self.batch_size(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n)
        if stage != "train":
            target = batch["tgt_out"]
            predicted = self.model.greedy(batch["src"], batch["src_lengths"], BOS, EOS,
                                          target.shape[1])
            hits = [p == t for p, t in zip(strip_eos(predicted), strip_eos(target), strict=True)]
            self.exact[stage].update(torch.tensor(hits, dtype=torch.float))
            self.log(f"{stage}/exact_match", self.exact[stage], prog_bar=True, batch_size=n)
        return loss

    def on_test_epoch_end(self) -> None:
        batch = next(iter(self.trainer.datamodule.test_dataloader()))
        src, lengths, tgt_in = (batch[k][:4].to(self.device)
                                for k in ("src", "src_lengths", "tgt_in"))
        _, maps = self.model(src, lengths, tgt_in, need_weights=True)
        self.log_attention_maps(maps[-1][:, 0], "test/cross_attention",
                                [f"example {i}, head 0" for i in range(len(src))])

    def predict_inputs(self, inputs: list[str]) -> list[str]:
        lines = []
        for text in inputs:
            src = encode_text(text)[None].to(self.device)
            out = self.model.greedy(src, torch.tensor([src.shape[1]]), BOS, EOS,
                                    src.shape[1] + 1)
            lines.append(f"{text} -> {' '.join(map(str, strip_eos(out)[0]))}")
        return lines
