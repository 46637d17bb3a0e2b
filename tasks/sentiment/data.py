"""Sentiment data sets (Rotten Tomatoes sentences, IMDb reviews): splits, tokenizer,
DataModule.

The first data set, ``rotten-tomatoes``, holds rated sentences (:mod:`tasks.sentiment.ratings`):
a binary and a five-class task. The second, ``imdb``, holds whole movie reviews with binary labels
(:mod:`tasks.sentiment.imdb`); its training split is also the unlabelled pretraining corpus
(:func:`tasks.sentiment.imdb.imdb_pretraining_texts`).

Splits are stratified by label and seeded (:mod:`tasks.sentiment.splits`), so a run is
reproducible and class balance does not drift between train and test on a small set. The
subword tokenizer is learned from the training split only (no peeking at test vocabulary) and
travels in checkpoints as a JSON string.
Optionally each token also carries its word's valence from the VADER lexicon
(:mod:`tasks.sentiment.lexicon`), a prior for words the training set barely covers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import lightning.pytorch as pl
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Sampler

from suite.cache import State, worst
from suite.data import fetch, pad_sequences
from suite.errors import DataError, UsageError
from tasks.sentiment import imdb, ratings
from tasks.sentiment.lexicon import fetch_lexicon, lexicon_state, load_lexicon, word_valence
from tasks.sentiment.pretraining import window_starts
from tasks.sentiment.splits import (
    HOLDOUT_FRACTIONS,
    SPLITS,
    LabelledTexts,
    stratified_folds,
    stratified_split,
)
from tasks.sentiment.tokenizer import (
    CLS_ID,
    PAD_ID,
    load_tokenizer,
    pretrained_tokenizer,
    train_tokenizer,
)

DATASET = ratings.DATASET
DATASETS = (DATASET, imdb.DATASET)


# ----------------------------------------------------------------------------- splits


def check_dataset(dataset: str, classes: int = 2, fold: int | None = None) -> None:
    """Refuse an unknown data set, or a task the data set cannot pose
    (:func:`tasks.sentiment.imdb.check_task`)."""
    if dataset not in DATASETS:
        raise UsageError(f"unknown sentiment data set {dataset!r}; valid: {', '.join(DATASETS)}")
    if dataset == imdb.DATASET:
        imdb.check_task(classes, fold)


def load_splits(classes: int = 2, seed: int = 0, fold: int | None = None, num_folds: int = 10,
                dataset: str = DATASET) -> dict[str, LabelledTexts]:
    """Fetch a data set and split it into train / validation / test for one task.

    ``fold=None`` is a stratified 80/10/10 hold-out split. With ``fold=k`` the data are cut into
    ``num_folds`` stratified folds (cross-validation, as the MR literature reports): fold ``k``
    is the test set, fold ``k+1`` (cyclically) the validation set, the rest the training set.
    ``dataset="imdb"`` (binary, hold-out only) has one split whatever ``seed`` is
    (:func:`tasks.sentiment.imdb.load_splits`).
    """
    check_dataset(dataset, classes, fold)
    if dataset == imdb.DATASET:
        return imdb.load_splits()
    if fold is not None and not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1} (num_folds={num_folds}), got {fold}")
    texts, scores = ratings.read_ratings(fetch(ratings.RATINGS))
    labelled = zip(texts, ratings.label_scores(scores, classes), strict=True)
    kept = [(t, y) for t, y in labelled if y is not None]
    labels = torch.tensor([y for _, y in kept])
    if fold is None:
        parts = stratified_split(labels, HOLDOUT_FRACTIONS, seed)
    else:
        folds = stratified_folds(labels, num_folds, seed)
        validation = (fold + 1) % num_folds
        train = [f for i, f in enumerate(folds) if i not in (fold, validation)]
        parts = [torch.cat(train).sort().values, folds[validation], folds[fold]]
    return {name: LabelledTexts([kept[i][0] for i in idx.tolist()],
                                [kept[i][1] for i in idx.tolist()])
            for name, idx in zip(SPLITS, parts, strict=True)}


Item = tuple[torch.Tensor, int] | tuple[torch.Tensor, int, torch.Tensor]


def collate(items: Sequence[Item]) -> dict[str, torch.Tensor]:
    """Stack ``(token_ids, label)`` or ``(token_ids, label, valence)`` items into a padded
    batch dict (``valence`` padded with 0)."""
    tokens, lengths = pad_sequences([item[0] for item in items], value=PAD_ID)
    batch = {"tokens": tokens, "lengths": lengths,
             "labels": torch.tensor([item[1] for item in items], dtype=torch.long)}
    if len(items[0]) == 3:
        batch["valence"] = pad_sequences([item[2] for item in items])[0]
    return batch


class LengthBucketSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length sentences, so little of each batch is padding.

    Each epoch the indices are shuffled, cut into pools of ``pool_batches`` batches, each pool
    is sorted by length and cut into batches, and the batches are shuffled: batches stay
    random in content and order, but a batch's sentences are of similar length. Seeded; the
    epoch count advances the permutation.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int,
                 pool_batches: int = 50) -> None:
        self.lengths = torch.tensor(list(lengths))
        self.batch_size = batch_size
        self.seed = seed
        self.pool = batch_size * pool_batches
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=generator)
        batches = []
        for pool in order.split(self.pool):
            pool = pool[self.lengths[pool].argsort(stable=True)]
            batches += [b.tolist() for b in pool.split(self.batch_size)]
        for i in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[i]


# ----------------------------------------------------------------------------- DataModule


class SentimentDataModule(pl.LightningDataModule):
    """Sentiment batches of one data set (``dataset``: Rotten Tomatoes sentences or IMDb
    reviews): ``{"tokens", "lengths", "labels"}``, plus ``valence`` with ``lexicon=True``.

    ``tokens`` is ``(B, T)`` long, ``[CLS]`` first, padded with ``pad_id`` (0); a sequence is
    cut to ``max_length`` tokens including ``[CLS]``. ``valence`` is ``(B, T)`` float: each
    token's word valence from the VADER lexicon in [-1, 1], 0 at ``[CLS]``, on words the
    lexicon lacks and on padding. IMDb reviews run far past a sentence's length: the same cut
    to ``max_length`` keeps each review's beginning. ``vocab_size`` is the size of the
    embedding the model needs (every id is below it), known before :meth:`setup`: the CLI
    links it, ``classes``, ``max_length`` and ``lexicon`` into the model's arguments. The
    tokenizer is part of :meth:`state_dict`, so Lightning stores it in every checkpoint and
    restores it with the weights.

    ``objective="mlm"`` serves the masked-LM pretraining corpus instead: IMDb's training
    reviews only (:func:`tasks.sentiment.imdb.pretraining_splits`), labels unused, each review
    read whole in windows of ``max_length`` tokens (:meth:`_windows`).
    ``pretrained`` (a checkpoint path) takes that checkpoint's tokenizer and ``vocab_size``
    instead of learning them, and is linked to the model's ``init_from``: one setting
    fine-tunes a pretrained encoder on text read exactly as it was in pretraining.
    ``head_tokens`` keeps a long text's first ``head_tokens`` tokens and its end instead of
    its beginning alone (:meth:`_cut`).
    """

    def __init__(self, classes: Literal[2, 5] = 2, vocab_size: int = 8000,
                 max_length: int = 128, batch_size: int = 64, seed: int = 0,
                 fold: int | None = None, num_folds: int = 10, num_workers: int = 0,
                 lexicon: bool = False,
                 dataset: Literal["rotten-tomatoes", "imdb"] = DATASET,
                 objective: Literal["classify", "mlm"] = "classify",
                 pretrained: str | None = None, head_tokens: int | None = None) -> None:
        super().__init__()
        if head_tokens is not None and not 0 <= head_tokens < max_length - 1:
            raise UsageError(f"data.head_tokens must be in [0, max_length - 1) = [0, "
                             f"{max_length - 1}), got {head_tokens}")
        check_dataset(dataset, classes, fold)
        if objective == "mlm" and dataset != imdb.DATASET:
            raise UsageError("data.objective=mlm pretrains on IMDb's training reviews only: "
                             f"set data.dataset={imdb.DATASET}, not {dataset}")
        if classes not in ratings.CLASS_NAMES:
            raise ValueError(f"classes must be one of {sorted(ratings.CLASS_NAMES)}, got {classes}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 ([CLS] and one token), got {max_length}")
        if fold is not None and not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in 0..{num_folds - 1} (num_folds={num_folds}), "
                             f"got {fold}")
        tokenizer = None
        if pretrained is not None:
            tokenizer, vocab_size = pretrained_tokenizer(pretrained)
        self.save_hyperparameters()
        # The checkpoint's vocabulary, not the argument's: Lightning checks the saved arguments
        # against the model's linked copy, and under LightningCLI they are the parsed config's.
        self.hparams["vocab_size"] = self._hparams_initial["vocab_size"] = vocab_size
        self.classes, self.vocab_size, self.max_length = classes, vocab_size, max_length
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.fold, self.num_folds, self.lexicon = fold, num_folds, lexicon
        self.dataset, self.objective, self.pretrained = dataset, objective, pretrained
        self.head_tokens = head_tokens
        self.valence_table: dict[str, float] | None = None  # read on first use
        self.pad_id, self.cls_id = PAD_ID, CLS_ID
        self.tokenizer: Tokenizer | None = tokenizer
        self.splits: dict[str, LabelledTexts] = {}
        # Run summaries and W&B tags name the data set by ``hparams.dataset``: the full tag
        # (data set, task, fold) replaces the bare data-set name saved from the arguments.
        self.hparams["dataset"] = self.dataset_name

    @property
    def num_classes(self) -> int:
        return self.classes

    @property
    def class_names(self) -> list[str]:
        return list(ratings.CLASS_NAMES[self.classes])

    @property
    def dataset_name(self) -> str:
        """Tag for logs and reports: the data set, the task and the fold if any."""
        if self.objective == "mlm":
            return f"{self.dataset}-mlm"
        task = "binary" if self.classes == 2 else "5class"
        fold = "" if self.fold is None else f"-fold{self.fold}of{self.num_folds}"
        return f"{self.dataset}-{task}{fold}"

    def prepare_data(self) -> None:
        fetch(imdb.REVIEWS if self.dataset == imdb.DATASET else ratings.RATINGS)
        if self.lexicon:
            fetch_lexicon()

    def setup(self, stage: str | None = None) -> None:
        """Split the data; train the tokenizer unless one was loaded (:meth:`load_state_dict`)."""
        if not self.splits and self.objective == "mlm":
            self.splits = imdb.pretraining_splits()
        if not self.splits:
            self.splits = load_splits(self.classes, self.seed, self.fold, self.num_folds,
                                      self.dataset)
        if self.tokenizer is None:
            self.tokenizer = train_tokenizer(self.splits["train"].texts, self.vocab_size)

    def state_dict(self) -> dict[str, str]:
        return {} if self.tokenizer is None else {"tokenizer": self.tokenizer.to_str()}

    def load_state_dict(self, state_dict: dict[str, str]) -> None:
        if "tokenizer" in state_dict:
            tokenizer = load_tokenizer(state_dict["tokenizer"])
            if tokenizer.get_vocab_size() > self.vocab_size:
                raise DataError(f"checkpoint tokenizer has {tokenizer.get_vocab_size()} tokens, "
                                f"more than vocab_size={self.vocab_size}")
            self.tokenizer = tokenizer

    def _encode(self, texts: Sequence[str]) -> tuple[list, list[list[float]] | None]:
        """Each text's subword encoding (no special tokens) and, with ``lexicon``, its
        tokens' valences."""
        if self.tokenizer is None:
            raise DataError("no tokenizer yet: call setup() or load a checkpoint first")
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        if not self.lexicon:
            return encodings, None
        if self.valence_table is None:
            self.valence_table = load_lexicon()
        return encodings, word_valence(encodings, texts, self.valence_table)

    def _token_ids(self, texts: Sequence[str]
                   ) -> tuple[list[list[int]], list[bool], list[list[float]] | None]:
        """``[CLS]`` + subword ids cut to ``max_length``, whether each text was cut, and (with
        ``lexicon``) the ids' valences, 0 at ``[CLS]``."""
        encodings, valence = self._encode(texts)
        ids = [[CLS_ID, *self._cut(e.ids)] for e in encodings]
        truncated = [len(e.ids) > self.max_length - 1 for e in encodings]
        if valence is None:
            return ids, truncated, None
        return ids, truncated, [[0.0, *self._cut(v)] for v in valence]

    def _windows(self, texts: Sequence[str], labels: Sequence[int]
                 ) -> tuple[list[list[int]], list[int], list[list[float]] | None]:
        """Masked-LM items: every text whole, in windows of ``max_length - 1`` tokens
        (:func:`window_starts`), each led by ``[CLS]`` as BERT reads its corpus - not only each
        review's beginning. Returns the windows' ids, their texts' labels and (with
        ``lexicon``) their valences, 0 at ``[CLS]``."""
        encodings, valence = self._encode(texts)
        room = self.max_length - 1
        ids, kept, values = [], [], []
        for i, (encoding, label) in enumerate(zip(encodings, labels, strict=True)):
            for start in window_starts(len(encoding.ids), room):
                ids.append([CLS_ID, *encoding.ids[start:start + room]])
                kept.append(label)
                if valence is not None:
                    values.append([0.0, *valence[i][start:start + room]])
        return ids, kept, values if valence is not None else None

    def _cut(self, pieces: list) -> list:
        """A text's tokens (or their valences) cut to ``max_length - 1``: its beginning, or with
        ``head_tokens`` its first ``head_tokens`` and its end (head + tail, Sun et al. 2019:
        a review's verdict is often in its last sentences)."""
        room = self.max_length - 1
        if len(pieces) <= room:
            return list(pieces)
        if self.head_tokens is None:
            return list(pieces[:room])
        return [*pieces[:self.head_tokens], *pieces[len(pieces) - (room - self.head_tokens):]]

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor | list[bool]]:
        """Encode a user's sentences for prediction: the batch format minus ``labels``.

        Returns ``tokens``, ``lengths``, ``valence`` (with ``lexicon``) and ``truncated`` (one
        bool per text, True where the sentence lost its tail to ``max_length``). A text with no
        tokens after normalisation (empty, blank, control characters only) raises
        :class:`DataError`: a model would otherwise output a confident label for nothing.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string")
        ids, truncated, valence = self._token_ids(texts)
        for i, (text, seq) in enumerate(zip(texts, ids, strict=True)):
            if len(seq) < 2:
                raise DataError(f"text {i} ({text[:40]!r}) is empty or blank after "
                                f"normalisation: there is nothing to classify")
        tokens, lengths = pad_sequences([torch.tensor(seq, dtype=torch.long) for seq in ids],
                                        value=PAD_ID)
        batch: dict[str, torch.Tensor | list[bool]] = {"tokens": tokens, "lengths": lengths,
                                                       "truncated": truncated}
        if valence is not None:
            batch["valence"] = pad_sequences([torch.tensor(v) for v in valence])[0]
        return batch

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.splits:
            raise DataError("no data yet: call setup() first")
        texts, labels = self.splits[split]
        if self.objective == "mlm":
            ids, labels, valence = self._windows(texts, labels)
        else:
            ids, _, valence = self._token_ids(texts)
        items: list[Item] = [(torch.tensor(seq, dtype=torch.long), label)
                             for seq, label in zip(ids, labels, strict=True)]
        if valence is not None:
            items = [(*item, torch.tensor(v)) for item, v in zip(items, valence, strict=True)]
        if shuffle:
            sampler = LengthBucketSampler([len(seq) for seq in ids], self.batch_size, self.seed)
            return DataLoader(items, batch_sampler=sampler, collate_fn=collate,
                              num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        return DataLoader(items, batch_size=self.batch_size, collate_fn=collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


# ----------------------------------------------------------------------------- CLI hooks


def prepare(dataset: str | None = None) -> None:
    """Fetch a data set's files (every data set's when None) into the data cache: the ratings
    and the VADER lexicon for Rotten Tomatoes, the reviews for IMDb (verified, atomic; a no-op
    when present and intact)."""
    if dataset is not None:
        check_dataset(dataset)
    if dataset in (None, DATASET):
        fetch(ratings.RATINGS)
        fetch_lexicon()
    if dataset in (None, imdb.DATASET):
        fetch(imdb.REVIEWS)


def available() -> dict[str, State]:
    """Each sentiment data set's state in the cache (missing, ready or corrupt)."""
    return {DATASET: worst([ratings.RATINGS.state(), lexicon_state()]),
            imdb.DATASET: imdb.REVIEWS.state()}
