"""The NB-LR baseline (NB log-count ratio, binary and one-vs-rest) and the baseline rows on
either data set, on toy corpora."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from experiments.sentiment import baselines
from suite.errors import UsageError
from tasks.sentiment import ratings as rotten_tomatoes

from . import fake_imdb

# Four documents over the vocabulary good, movie, fun, bad, boring (raw counts: "good" twice
# in the second document, which binarising must count once).
TOY = np.array([[1, 1, 0, 0, 0],   # good movie        (positive)
                [2, 0, 1, 0, 0],   # good good fun     (positive)
                [0, 1, 0, 1, 0],   # bad movie         (negative)
                [0, 0, 0, 1, 1]])  # bad boring        (negative)
TOY_LABELS = [1, 1, 0, 0]
# alpha = 1: p = 1 + (2, 1, 1, 0, 0), q = 1 + (0, 1, 0, 2, 1); both sum to 9, so r = log(p / q)
TOY_R = [math.log(3), 0.0, math.log(2), math.log(1 / 3), math.log(1 / 2)]


def test_log_count_ratio_matches_the_hand_computation() -> None:
    binary = sparse.csr_matrix(TOY > 0)
    r = baselines.nb_log_count_ratio(binary, [y == 1 for y in TOY_LABELS], alpha=1.0)
    np.testing.assert_allclose(r, TOY_R)
    model = baselines.NBLogisticRegression().fit(TOY, TOY_LABELS)  # raw counts in
    np.testing.assert_allclose(model.r_, TOY_R)
    assert model.predict(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]])).tolist() == [1, 0]


def _toy_corpus() -> tuple[list[str], list[int]]:
    texts = [f"{w} film number {i} with plot" for i in range(20) for w in ("great", "awful")]
    return texts, [1, 0] * 20


def test_nb_logreg_classifies_held_out_documents() -> None:
    texts, labels = _toy_corpus()
    held_out = ["a great story", "an awful story", "great acting , great music", "awful"]
    result = baselines.nb_logreg(texts, labels, held_out, [1, 0, 1, 0],
                                 val_texts=["great plot", "awful plot"], val_labels=[1, 0])
    assert result["accuracy"] == result["macro_f1"] == 1.0
    assert result["C"] in baselines.NB_C_GRID
    assert baselines.nb_logreg(texts, labels, ["great"], [1])["C"] == 1.0  # no validation set


def test_five_classes_are_one_vs_rest_with_a_ratio_each() -> None:
    words = ("dreadful", "dull", "plain", "nice", "wonderful")
    texts = [f"a {words[c]} film , take {i}" for i in range(12) for c in range(5)]
    labels = [c for _ in range(12) for c in range(5)]
    model = baselines.nb_model(1.0).fit(texts, labels)
    probs = model.predict_proba([f"{w} indeed" for w in words])
    assert probs.shape == (5, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs.argmax(axis=1).tolist() == [0, 1, 2, 3, 4]
    ratios = [est.r_ for est in model[-1].estimators_]
    assert len(ratios) == 5 and not np.allclose(ratios[0], ratios[1])


def test_rows_on_imdb_and_todays_rows_unchanged(ratings: list, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "ROOT", tmp_path)  # the row cache, never the real runs/
    fake_imdb.install(tmp_path, monkeypatch, fake_imdb.csv_bytes(fake_imdb.rows()))
    [row] = baselines.rows([2], [0], dataset="imdb", model="nb-logreg")
    assert (row["name"], row["group"], row["model"], row["dataset"], row["train_size"]) == (
        "nb-logreg-imdb-binary-s0", "nb-logreg-imdb-binary", "nb-logreg", "imdb-binary", 48)
    assert row["overrides"] == {"data.dataset": "imdb", "data.seed": 0,
                                "C_grid": list(baselines.NB_C_GRID)}
    assert set(row["metrics"]) == {"test/acc", "test/macro_f1", "C"}

    [today] = baselines.rows([2], [0], [1.0])
    assert (today["name"], today["dataset"], today["overrides"]) == (
        "tfidf-logreg-binary-s0", "rotten-tomatoes-binary", {"data.seed": 0, "C_grid": [1.0]})
    key = hashlib.sha256(json.dumps([2, 0, [1.0], rotten_tomatoes.RATINGS.sha256]).encode())
    assert (tmp_path / "runs" / "sentiment-baseline" / f"{key.hexdigest()[:16]}.json").is_file()

    with pytest.raises(UsageError, match="classes must be 2"):
        baselines.rows([5], [0], dataset="imdb")
    with pytest.raises(UsageError, match="valid: tfidf-logreg, nb-logreg"):
        baselines.rows([2], [0], model="svm")
