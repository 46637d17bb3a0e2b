"""TF-IDF + logistic regression: the number a sentence Transformer has to beat, and the
``sentiment`` experiment's stage that fits it on the runs' splits.

On ~10k short sentences a linear model over word uni- and bigrams is strong (published n-gram
baselines on MR polarity come close to neural models; the report lists them), so a
self-attention model that does not beat it has learned nothing the bag of n-grams did not
already give. Run on the real splits with
``python -m experiments.sentiment.baselines [--classes 5] [--seed 0] [--fold K]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline, make_pipeline

from suite.data import atomic_write_bytes
from suite.paths import ROOT
from tasks.sentiment.data import RATINGS, load_splits

C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0)
TASK_NAMES = {2: "binary", 5: "5class"}


def _fit(texts: Sequence[str], labels: Sequence[int], c: float) -> Pipeline:
    """SAGA rather than the default L-BFGS: same optimum, far faster on many sparse n-grams."""
    features = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    model = make_pipeline(features, LogisticRegression(C=c, solver="saga", max_iter=2000))
    return model.fit(list(texts), list(labels))


def tfidf_logreg(train_texts: Sequence[str], train_labels: Sequence[int],
                 test_texts: Sequence[str], test_labels: Sequence[int],
                 val_texts: Sequence[str] | None = None, val_labels: Sequence[int] | None = None,
                 c_grid: Sequence[float] = C_GRID) -> dict[str, float]:
    """Fit on train, report test ``accuracy`` and ``macro_f1`` and the regularisation ``C`` used.

    With a validation set, ``C`` is the grid value with the best validation macro-F1 (ties go to
    the stronger regularisation); without one it is 1.0, scikit-learn's default, so the test set
    never chooses anything.
    """
    if (val_texts is None) != (val_labels is None):
        raise ValueError("give both val_texts and val_labels, or neither")
    if val_texts is None:
        best_c, model = 1.0, _fit(train_texts, train_labels, 1.0)
    else:
        best_score, best_c, model = -1.0, 1.0, None
        for c in sorted(c_grid):
            candidate = _fit(train_texts, train_labels, c)
            score = f1_score(list(val_labels), candidate.predict(list(val_texts)),
                             average="macro")
            if score > best_score:
                best_score, best_c, model = score, c, candidate
    predicted = model.predict(list(test_texts))
    return {"accuracy": float(accuracy_score(list(test_labels), predicted)),
            "macro_f1": float(f1_score(list(test_labels), predicted, average="macro")),
            "C": float(best_c)}


def run(classes: int = 2, seed: int = 0, fold: int | None = None, num_folds: int = 10
        ) -> dict[str, float]:
    """The baseline on the same split the SentimentDataModule builds for these arguments."""
    splits = load_splits(classes, seed, fold, num_folds)
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    return tfidf_logreg(train.texts, train.labels, test.texts, test.labels,
                        validation.texts, validation.labels)


def baseline_row(classes: int, seed: int, c_grid: Sequence[float] = C_GRID) -> dict[str, Any]:
    """The baseline on hold-out split ``seed`` (the runs' ``data.seed``), as a results row.

    Cached in ``runs/sentiment-baseline/`` by task, seed, C grid and the data file's sha256.
    """
    grid = list(c_grid)
    key = hashlib.sha256(json.dumps([classes, seed, grid, RATINGS.sha256]).encode())
    cache = ROOT / "runs" / "sentiment-baseline" / f"{key.hexdigest()[:16]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    splits = load_splits(classes, seed)
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    start = time.perf_counter()
    scores = tfidf_logreg(train.texts, train.labels, test.texts, test.labels,
                          validation.texts, validation.labels, c_grid=grid)
    task = TASK_NAMES[classes]
    row = {"name": f"tfidf-logreg-{task}-s{seed}", "group": f"tfidf-logreg-{task}",
           "head": "sentiment", "model": "tfidf-logreg",
           "dataset": f"rotten-tomatoes-{task}", "train_size": len(train.texts), "seed": seed,
           "config": None, "overrides": {"data.seed": seed, "C_grid": grid},
           "precision": "64-true", "params": None,
           "train_seconds": round(time.perf_counter() - start, 2),
           "samples_per_second": None, "peak_memory_mb": None,
           "metrics": {"test/acc": scores["accuracy"], "test/macro_f1": scores["macro_f1"],
                       "C": scores["C"]}}
    atomic_write_bytes(cache, json.dumps(row, indent=2).encode())
    return row


def rows(classes: Sequence[int], seeds: Sequence[int], c_grid: Sequence[float] = C_GRID
         ) -> list[dict[str, Any]]:
    """Stage ``tfidf-logreg``: the baseline for every task (2 or 5 classes) and split seed."""
    return [baseline_row(n, seed, c_grid) for n in classes for seed in seeds]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, choices=(2, 5), default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fold", type=int, default=None)
    parser.add_argument("--num-folds", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.classes, args.seed, args.fold, args.num_folds)))


if __name__ == "__main__":
    main()
