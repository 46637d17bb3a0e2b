"""Linear n-gram baselines: the numbers a sentiment Transformer has to beat, and the
``sentiment`` experiment's stage that fits them on the runs' splits.

On ~10k short sentences a linear model over word uni- and bigrams is strong (published n-gram
baselines on MR polarity come close to neural models; the report lists them), so a
self-attention model that does not beat it has learned nothing the bag of n-grams did not
already give. Two of them, on the same splits as the runs (Rotten Tomatoes or IMDb):

- ``tfidf-logreg``: TF-IDF-weighted uni+bigrams, logistic regression.
- ``nb-logreg``: NB-LR, the logistic-regression member of Wang & Manning's (2012) NBSVM family:
  binarised uni+bigrams scaled by the naive-Bayes log-count ratio of each n-gram
  (:func:`nb_log_count_ratio`), so that the linear model starts from how strongly each n-gram
  indicates a class. Five classes are one-vs-rest, each class with its own ratio.

Both pick ``C`` on the validation split. Run on the real splits with
``python -m experiments.sentiment.baselines [--model nb-logreg] [--dataset imdb] [--classes 5]
[--seed 0] [--fold K]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline

from suite.data import atomic_write_bytes
from suite.errors import UsageError
from suite.paths import ROOT
from tasks.sentiment import imdb, ratings
from tasks.sentiment.data import DATASET, DATASETS, check_dataset, load_splits

C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)
# NB-scaled rows are far larger than TF-IDF's unit-norm ones, so the useful C sit lower
NB_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
TASK_NAMES = {2: "binary", 5: "5class"}
TFIDF, NB = "tfidf-logreg", "nb-logreg"


def tfidf_model(c: float) -> Pipeline:
    """TF-IDF uni+bigrams into logistic regression. SAGA rather than the default L-BFGS: same
    optimum, far faster on many sparse n-grams."""
    features = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    return make_pipeline(features, LogisticRegression(C=c, solver="saga", max_iter=2000))


def nb_log_count_ratio(features: Any, positive: Sequence[bool], alpha: float = 1.0
                       ) -> np.ndarray:
    """The NB log-count ratio ``r = log((p / |p|_1) / (q / |q|_1))`` of each feature, with
    ``p = alpha + sum of the positive documents' rows``, ``q`` the same over the others.

    ``features`` is ``(docs, features)`` (sparse or dense, binarised by the caller);
    ``positive`` is one bool per document. Returns ``(features,)``: above 0 where a feature is
    relatively more frequent in positive documents.
    """
    rows = sparse.csr_matrix(features, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    p = alpha + np.asarray(rows[positive].sum(axis=0)).ravel()
    q = alpha + np.asarray(rows[~positive].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


class NBLogisticRegression(ClassifierMixin, BaseEstimator):
    """Binary NB-LR: logistic regression on binarised features scaled by their NB log-count
    ratio ``r`` (:func:`nb_log_count_ratio`; ``r_`` after :meth:`fit`). For more classes wrap
    it in ``OneVsRestClassifier`` (:func:`nb_model`), which gives each class its own ``r``.

    liblinear: each problem is binary, and it solves sparse ones quickly and deterministically.
    """

    def __init__(self, C: float = 1.0, alpha: float = 1.0) -> None:
        # stored under the argument names, as clone() and get_params() read them back
        self.C = C
        self.alpha = alpha

    def _scaled(self, features: Any) -> sparse.csr_matrix:
        binary = (sparse.csr_matrix(features) > 0).astype(np.float64)
        return sparse.csr_matrix(binary.multiply(self.r_))

    def fit(self, features: Any, labels: Sequence[int]) -> NBLogisticRegression:
        labels = np.asarray(labels)
        self.classes_ = np.unique(labels)
        if len(self.classes_) != 2:
            raise ValueError(f"NBLogisticRegression is binary, got {len(self.classes_)} classes "
                             "(wrap it in OneVsRestClassifier)")
        binary = (sparse.csr_matrix(features) > 0).astype(np.float64)
        self.r_ = nb_log_count_ratio(binary, labels == self.classes_[1], self.alpha)
        self.logreg_ = LogisticRegression(C=self.C, solver="liblinear", random_state=0)
        self.logreg_.fit(self._scaled(binary), labels)
        return self

    def decision_function(self, features: Any) -> np.ndarray:
        return self.logreg_.decision_function(self._scaled(features))

    def predict_proba(self, features: Any) -> np.ndarray:
        return self.logreg_.predict_proba(self._scaled(features))

    def predict(self, features: Any) -> np.ndarray:
        return self.logreg_.predict(self._scaled(features))


def nb_model(c: float, alpha: float = 1.0) -> Pipeline:
    """Binarised uni+bigram counts into one-vs-rest NB-LR (one estimator for two classes)."""
    features = CountVectorizer(ngram_range=(1, 2), binary=True, lowercase=True)
    return make_pipeline(features, OneVsRestClassifier(NBLogisticRegression(C=c, alpha=alpha)))


def _select_and_score(build: Callable[[float], Pipeline], train_texts: Sequence[str],
                      train_labels: Sequence[int], test_texts: Sequence[str],
                      test_labels: Sequence[int], val_texts: Sequence[str] | None,
                      val_labels: Sequence[int] | None, c_grid: Sequence[float]
                      ) -> dict[str, float]:
    """Fit ``build(C)`` on train; test ``accuracy``, ``macro_f1`` and the ``C`` used.

    With a validation set, ``C`` is the grid value with the best validation macro-F1 (ties go to
    the stronger regularisation); without one it is 1.0, scikit-learn's default, so the test set
    never chooses anything.
    """
    if (val_texts is None) != (val_labels is None):
        raise ValueError("give both val_texts and val_labels, or neither")
    if val_texts is None:
        best_c, model = 1.0, build(1.0).fit(list(train_texts), list(train_labels))
    else:
        best_score, best_c, model = -1.0, 1.0, None
        for c in sorted(c_grid):
            candidate = build(c).fit(list(train_texts), list(train_labels))
            score = f1_score(list(val_labels), candidate.predict(list(val_texts)),
                             average="macro")
            if score > best_score:
                best_score, best_c, model = score, c, candidate
    predicted = model.predict(list(test_texts))
    return {"accuracy": float(accuracy_score(list(test_labels), predicted)),
            "macro_f1": float(f1_score(list(test_labels), predicted, average="macro")),
            "C": float(best_c)}


def tfidf_logreg(train_texts: Sequence[str], train_labels: Sequence[int],
                 test_texts: Sequence[str], test_labels: Sequence[int],
                 val_texts: Sequence[str] | None = None, val_labels: Sequence[int] | None = None,
                 c_grid: Sequence[float] = C_GRID) -> dict[str, float]:
    """TF-IDF + logistic regression fitted on train, scored on test (``C`` as in
    :func:`_select_and_score`)."""
    return _select_and_score(tfidf_model, train_texts, train_labels, test_texts, test_labels,
                             val_texts, val_labels, c_grid)


def nb_logreg(train_texts: Sequence[str], train_labels: Sequence[int],
              test_texts: Sequence[str], test_labels: Sequence[int],
              val_texts: Sequence[str] | None = None, val_labels: Sequence[int] | None = None,
              c_grid: Sequence[float] = NB_C_GRID) -> dict[str, float]:
    """NB-LR fitted on train, scored on test (``C`` as in :func:`_select_and_score`)."""
    return _select_and_score(nb_model, train_texts, train_labels, test_texts, test_labels,
                             val_texts, val_labels, c_grid)


BASELINES: dict[str, tuple[Callable[..., dict[str, float]], tuple[float, ...]]] = {
    TFIDF: (tfidf_logreg, C_GRID), NB: (nb_logreg, NB_C_GRID)}


def _baseline(model: str) -> tuple[Callable[..., dict[str, float]], tuple[float, ...]]:
    if model not in BASELINES:
        raise UsageError(f"unknown sentiment baseline {model!r}; valid: {', '.join(BASELINES)}")
    return BASELINES[model]


def run(classes: int = 2, seed: int = 0, fold: int | None = None, num_folds: int = 10,
        dataset: str = DATASET, model: str = TFIDF) -> dict[str, float]:
    """A baseline on the same split the SentimentDataModule builds for these arguments."""
    fit, _ = _baseline(model)
    splits = load_splits(classes, seed, fold, num_folds, dataset)
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    return fit(train.texts, train.labels, test.texts, test.labels,
               validation.texts, validation.labels)


def baseline_row(classes: int, seed: int, c_grid: Sequence[float] | None = None,
                 dataset: str = DATASET, model: str = TFIDF) -> dict[str, Any]:
    """Baseline ``model`` on ``dataset``'s hold-out split ``seed`` (the runs' ``data.seed``;
    IMDb has one split whatever the seed), as a results row; ``c_grid`` defaults to the
    model's own grid.

    Cached in ``runs/sentiment-baseline/`` by model, data set, task, seed, C grid and the data
    file's sha256.
    """
    fit, default_grid = _baseline(model)
    check_dataset(dataset, classes)
    grid = list(default_grid if c_grid is None else c_grid)
    data_file = imdb.REVIEWS if dataset == imdb.DATASET else ratings.RATINGS
    key_parts = [classes, seed, grid, data_file.sha256]
    if (model, dataset) != (TFIDF, DATASET):  # today's rows keep today's cache key
        key_parts = [model, dataset, *key_parts]
    key = hashlib.sha256(json.dumps(key_parts).encode())
    cache = ROOT / "runs" / "sentiment-baseline" / f"{key.hexdigest()[:16]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    splits = load_splits(classes, seed, dataset=dataset)
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    start = time.perf_counter()
    scores = fit(train.texts, train.labels, test.texts, test.labels,
                 validation.texts, validation.labels, c_grid=grid)
    task = TASK_NAMES[classes]
    tag = task if dataset == DATASET else f"{dataset}-{task}"
    overrides = {"data.seed": seed, "C_grid": grid}
    if dataset != DATASET:
        overrides = {"data.dataset": dataset, **overrides}
    row = {"name": f"{model}-{tag}-s{seed}", "group": f"{model}-{tag}",
           "head": "sentiment", "model": model,
           "dataset": f"{dataset}-{task}", "train_size": len(train.texts), "seed": seed,
           "config": None, "overrides": overrides,
           "precision": "64-true", "params": None,
           "train_seconds": round(time.perf_counter() - start, 2),
           "samples_per_second": None, "peak_memory_mb": None,
           "metrics": {"test/acc": scores["accuracy"], "test/macro_f1": scores["macro_f1"],
                       "C": scores["C"]}}
    atomic_write_bytes(cache, json.dumps(row, indent=2).encode())
    return row


def rows(classes: Sequence[int], seeds: Sequence[int], c_grid: Sequence[float] | None = None,
         dataset: str = DATASET, model: str = TFIDF) -> list[dict[str, Any]]:
    """Stage ``tfidf-logreg`` (or another ``model``): the baseline on ``dataset`` for every task
    (2 or 5 classes) and split seed."""
    return [baseline_row(n, seed, c_grid, dataset, model) for n in classes for seed in seeds]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, choices=(2, 5), default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fold", type=int, default=None)
    parser.add_argument("--num-folds", type=int, default=10)
    parser.add_argument("--dataset", choices=list(DATASETS), default=DATASET)
    parser.add_argument("--model", choices=list(BASELINES), default=TFIDF)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.classes, args.seed, args.fold, args.num_folds, args.dataset,
                         args.model)))


if __name__ == "__main__":
    main()
