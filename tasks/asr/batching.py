"""Batching of the ASR head: padding, length-bucketed batches in an epoch's order, and
SpecAugment - per utterance in the data set, or on the padded batch with a ramp.

Two SpecAugment paths share one policy (``freq_masks`` bands of up to ``freq_width`` mel bins,
``time_masks`` spans of up to ``time_width`` frames, each span at most 20% of its utterance):

- :func:`spec_augment_masks`: torchaudio's transforms on one utterance, in the data set (the
  loader's workers); the widths are fixed.
- :class:`BatchSpecAugment`: the same draws on a padded batch ``(B, T, n_mels)`` in the training
  step, each utterance masked within its own length, the widths scaled by a factor the training
  step computes from the global step (:meth:`BatchSpecAugment.ramp`), which a data set in a
  worker process cannot see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor
from torch.utils.data import Sampler

from suite.data import pad_sequences as pad

TIME_MASK_FRACTION = 0.2
"""A time mask spans at most this share of its utterance (SpecAugment's ``p``)."""


def spec_augment_masks(freq_masks: int = 2, freq_width: int = 27, time_masks: int = 2,
                       time_width: int = 40) -> torch.nn.Sequential:
    """SpecAugment's masking (torchaudio) of one utterance ``(n_mels, frames)``: ``freq_masks``
    bands of up to ``freq_width`` mel bins and ``time_masks`` spans of up to ``time_width``
    frames (each at most 20% of the utterance). The defaults are the LibriSpeech "LD" policy."""
    freq, time = torchaudio.transforms.FrequencyMasking, torchaudio.transforms.TimeMasking
    return torch.nn.Sequential(*[freq(freq_width) for _ in range(freq_masks)],
                               *[time(time_width, p=TIME_MASK_FRACTION)
                                 for _ in range(time_masks)])


def span_masks(sizes: Tensor, widths: Tensor, count: int, total: int) -> Tensor:
    """``count`` random spans per row, as torchaudio's ``mask_along_axis`` draws one: a width
    ``w ~ U[0, widths[b])``, a start ``floor(U * (sizes[b] - w))``, ``floor(w)`` positions long.

    ``sizes`` ``(B,)``: each row's valid length; ``widths`` ``(B,)``: each row's largest width
    (float). Returns ``(B, total)`` boolean, true where masked (never at or past ``sizes``).
    """
    shape = (len(sizes), count)
    width = torch.rand(shape, device=sizes.device) * widths[:, None]  # (B, count)
    start = (torch.rand(shape, device=sizes.device) * (sizes[:, None] - width)).long()
    end = start + width.long()
    position = torch.arange(total, device=sizes.device)[None, None]  # (1, 1, total)
    inside = (position >= start[..., None]) & (position < end[..., None])  # (B, count, total)
    return inside.any(dim=1)


@dataclass(frozen=True)
class BatchSpecAugment:
    """SpecAugment of a padded batch, its mask widths scaled by a ramp (as ESPnet's and NeMo's
    schedules): none until ``start`` (the learning-rate warmup), then widths growing linearly
    to the full policy over ``ramp_steps`` optimiser steps. Masked values become 0, the
    training mean of the normalised features, as in :func:`spec_augment_masks`."""

    freq_masks: int
    freq_width: int
    time_masks: int
    time_width: int
    ramp_steps: int

    def ramp(self, step: int, start: int) -> float:
        """The width scale at optimiser ``step``: 0 until ``start``, 1 from
        ``start + ramp_steps`` on, linear between."""
        return min(1.0, max(0.0, (step - start) / max(1, self.ramp_steps)))

    def __call__(self, features: Tensor, lengths: Tensor, scale: float) -> Tensor:
        """``features`` ``(B, T, n_mels)`` with valid lengths ``(B,)`` -> masked copy; padded
        frames stay as they were."""
        if scale <= 0:
            return features
        batch, frames, bins = features.shape
        lengths = lengths.to(features.device)
        freq = span_masks(torch.full((batch,), bins, device=features.device),
                          torch.full((batch,), scale * self.freq_width, device=features.device),
                          self.freq_masks, bins)  # (B, n_mels)
        # each span's cap: the scaled width, at most 20% of its own utterance
        cap = torch.minimum(torch.full((batch,), scale * self.time_width, device=lengths.device),
                            (lengths * TIME_MASK_FRACTION).floor())
        time = span_masks(lengths, cap, self.time_masks, frames)  # (B, T)
        valid = torch.arange(frames, device=lengths.device) < lengths[:, None]  # (B, T)
        masked = (freq[:, None, :] & valid[:, :, None]) | time[:, :, None]  # (B, T, n_mels)
        return features.masked_fill(masked, 0.0)


def collate(items: list[tuple[Tensor, Tensor, str]]) -> dict:
    """Pad a list of utterances into the batch dict every ASR model consumes."""
    features, feature_lengths = pad([f for f, _, _ in items])
    targets, target_lengths = pad([t for _, t, _ in items])
    return {"features": features, "feature_lengths": feature_lengths, "targets": targets,
            "target_lengths": target_lengths, "texts": [s for _, _, s in items]}


class EpochOrder:
    """The order in which one epoch visits the batches, a function of the epoch alone.

    Batches are built shortest-first; they keep that order when not ``shuffle`` and, with
    ``sorted_first_epoch`` (SortaGrad, Amodei et al. 2016: short utterances first while the
    model is untrained), in epoch 0; otherwise a permutation seeded by ``seed + epoch``.
    The epoch is what :meth:`set_epoch` last set, never a count of passes, so a run resumed
    in a later epoch does not sort again.
    """

    def __init__(self, shuffle: bool, seed: int, sorted_first_epoch: bool = False) -> None:
        self.shuffle, self.seed, self.sorted_first_epoch = shuffle, seed, sorted_first_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, count: int) -> list[int]:
        """The batch numbers ``0 .. count - 1`` in this epoch's order."""
        if not self.shuffle or (self.sorted_first_epoch and self.epoch == 0):
            return list(range(count))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(count, generator=generator).tolist()


class FrameBudgetSampler(Sampler[list[int]]):
    """Length-sorted buckets of at most ``max_frames`` padded frames per batch.

    Sorting keeps padding (wasted CPU) small; :attr:`sampler` (:class:`EpochOrder`) orders the
    batches each epoch. It is named as torch's ``BatchSampler.sampler`` because that is where
    Lightning's loops call ``set_epoch`` before every epoch, resumed ones included. Under
    torch.distributed each rank takes every world-size-th batch, truncated so all ranks run
    the same number of steps.
    """

    def __init__(self, lengths: list[int], max_frames: int, shuffle: bool, seed: int,
                 sorted_first_epoch: bool = False) -> None:
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        self.batches: list[list[int]] = []
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) + 1) * lengths[i] > max_frames:
                self.batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            self.batches.append(batch)
        self.sampler = EpochOrder(shuffle, seed, sorted_first_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def _mine(self) -> list[list[int]]:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self.batches
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        return self.batches[: len(self.batches) // world * world][rank::world]

    def __len__(self) -> int:
        return len(self._mine())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._mine()
        yield from (batches[i] for i in self.sampler(len(batches)))
