"""Seeded, label-stratified train / validation / test splits shared by the sentiment data sets.

Stratifying keeps each split's class balance equal to the whole set's, so a small test split
cannot drift towards one label; seeding makes a run's split reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from suite.data import split_indices

SPLITS = ("train", "validation", "test")
HOLDOUT_FRACTIONS = (0.8, 0.1, 0.1)


class LabelledTexts(NamedTuple):
    """One split's raw texts and integer labels (what the baseline and reports consume)."""

    texts: list[str]
    labels: list[int]


def stratified_split(labels: torch.Tensor, fractions: Sequence[float], seed: int
                     ) -> list[torch.Tensor]:
    """Seeded split of ``range(len(labels))`` with ``fractions`` of every class in each part.

    Indices come back sorted (file order), so the split is a set and not an ordering.
    """
    labels = torch.as_tensor(labels)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for c in labels.unique().tolist():
        members = torch.nonzero(labels == c).flatten()
        for part, chosen in zip(parts, split_indices(len(members), fractions, seed + c),
                                strict=True):
            part.append(members[chosen])
    return [torch.cat(part).sort().values for part in parts]


def stratified_folds(labels: torch.Tensor, num_folds: int, seed: int) -> list[torch.Tensor]:
    """Seeded partition into ``num_folds`` folds, each with the same class mix.

    Each class is shuffled and dealt round-robin, continuing across classes, so fold sizes
    differ by at most one.
    """
    if num_folds < 3:
        raise ValueError(f"num_folds must be >= 3 (a test, a validation and a training fold), "
                         f"got {num_folds}")
    labels = torch.as_tensor(labels)
    if len(labels) < num_folds:
        raise ValueError(f"{len(labels)} examples cannot fill {num_folds} folds")
    generator = torch.Generator().manual_seed(seed)
    fold_of = torch.empty(len(labels), dtype=torch.long)
    dealt = 0
    for c in labels.unique():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        fold_of[members] = (torch.arange(len(members)) + dealt) % num_folds
        dealt += len(members)
    return [torch.nonzero(fold_of == f).flatten() for f in range(num_folds)]
