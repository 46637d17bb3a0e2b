"""Sentiment data layer on a tiny archive and lexicon built in the test: no network, a private
cache."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from suite.errors import DataError, UsageError
from tasks.sentiment import data as sentiment
from tasks.sentiment import lexicon
from tasks.sentiment import ratings as rotten_tomatoes
from tasks.sentiment.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer

from .tiny import rows


def test_prepare_fetches_verifies_and_reads(ratings: list) -> None:
    assert sentiment.available() == {"rotten-tomatoes": "missing", "imdb": "missing"}
    sentiment.prepare()
    sentiment.prepare("rotten-tomatoes")  # idempotent
    assert sentiment.available() == {"rotten-tomatoes": "ready", "imdb": "ready"}
    assert lexicon.LEXICON.available()
    texts, scores = rotten_tomatoes.read_ratings(rotten_tomatoes.RATINGS.local)
    assert len(texts) == len(ratings)
    assert texts[0] == "a dreadful film , take 0 & more"  # entity unescaped, CRLF stripped
    assert scores == [s for _, s, _ in ratings]
    with pytest.raises(UsageError, match="valid: rotten-tomatoes, imdb"):
        sentiment.prepare("sst")


def test_read_ratings_drops_duplicates_and_rejects_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("1\t1.5\tGood.\n2\t-1.0\tGood.\n3\t-2.0\tCafé bad.\n", encoding="utf-8")
    assert rotten_tomatoes.read_ratings(path) == (["Good.", "Café bad."], [1.5, -2.0])
    path.write_text("1\t1.5\tGood.\n2\tBad.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"r.txt:2: expected"):
        rotten_tomatoes.read_ratings(path)


def test_binary_and_five_class_labels_from_scores() -> None:
    scores = [-3.0, -2.0, -1.9, -0.5, -0.49, 0.0, 0.49, 0.5, 1.99, 2.0, 3.9]
    assert rotten_tomatoes.label_scores(scores, 2) == [0, 0, 0, 0, 0, None, 1, 1, 1, 1, 1]
    assert rotten_tomatoes.label_scores(scores, 5) == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="classes must be one of"):
        rotten_tomatoes.label_scores(scores, 3)


def test_holdout_split_is_seeded_disjoint_and_stratified(ratings: list) -> None:
    splits = sentiment.load_splits(classes=2, seed=0)
    assert splits == sentiment.load_splits(classes=2, seed=0)
    assert splits != sentiment.load_splits(classes=2, seed=1)
    parts = [set(splits[name].texts) for name in sentiment.SPLITS]
    assert sum(map(len, parts)) == len(set.union(*parts))
    neutral = sum(1 for _, s, _ in ratings if s == 0)
    assert len(set.union(*parts)) == len(ratings) - neutral  # binary drops score 0
    counts = {name: Counter(s.labels) for name, s in splits.items()}
    assert counts["validation"] == counts["test"] == Counter({0: 4, 1: 6})


def test_folds_partition_the_data(ratings: list) -> None:
    labels = torch.tensor(rotten_tomatoes.label_scores([s for _, s, _ in ratings], 5))
    folds = sentiment.stratified_folds(labels, 10, seed=0)
    assert sorted(torch.cat(folds).tolist()) == list(range(len(labels)))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    tests = []
    for fold in range(10):
        splits = sentiment.load_splits(classes=5, seed=0, fold=fold)
        assert splits["validation"].texts == sentiment.load_splits(
            classes=5, seed=0, fold=(fold + 1) % 10)["test"].texts
        assert len({t for s in splits.values() for t in s.texts}) == len(ratings)
        tests += splits["test"].texts
    assert sorted(tests) == sorted(rotten_tomatoes.read_ratings(rotten_tomatoes.RATINGS.local)[0])
    with pytest.raises(ValueError, match="fold must be in 0..9"):
        sentiment.load_splits(classes=5, fold=10)


def test_tokenizer_is_reproducible_and_round_trips_through_json() -> None:
    texts = [t for _, _, t in rows()]
    tokenizer = train_tokenizer(texts, vocab_size=80)
    assert tokenizer.to_str() == train_tokenizer(texts, vocab_size=80).to_str()
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    restored = load_tokenizer(tokenizer.to_str())
    probe = ["A WONDERFUL film!", "an unseen word: zebra"]
    assert ([e.ids for e in restored.encode_batch(probe)]
            == [e.ids for e in tokenizer.encode_batch(probe)])
    with pytest.raises(ValueError, match="vocab_size=10 is smaller"):
        train_tokenizer(texts, vocab_size=10)


def test_datamodule_batches_and_checkpoint_state(ratings: list) -> None:
    dm = sentiment.SentimentDataModule(classes=5, vocab_size=80, batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.num_classes, len(dm.class_names), dm.pad_id, dm.cls_id) == (5, 5, 0, 2)
    assert dm.tokenizer.get_vocab_size() <= dm.vocab_size
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"tokens", "lengths", "labels"}
    assert batch["tokens"].dtype == batch["lengths"].dtype == batch["labels"].dtype == torch.long
    assert batch["tokens"].shape == (16, int(batch["lengths"].max()))
    assert (batch["tokens"][:, 0] == dm.cls_id).all()
    padding = torch.arange(batch["tokens"].shape[1]) >= batch["lengths"][:, None]
    assert (batch["tokens"][padding] == dm.pad_id).all()
    assert (batch["tokens"][~padding] != dm.pad_id).all()
    assert sum(len(b["labels"]) for b in dm.test_dataloader()) == len(dm.splits["test"].texts)

    fresh = sentiment.SentimentDataModule(classes=5, vocab_size=80)
    fresh.load_state_dict(dm.state_dict())
    probe = ["a wonderful film", "dull"]
    assert torch.equal(fresh.encode(probe)["tokens"], dm.encode(probe)["tokens"])


def test_encode_rejects_blank_text_and_reports_truncation(ratings: list) -> None:
    dm = sentiment.SentimentDataModule(vocab_size=80, max_length=4)
    with pytest.raises(DataError, match="no tokenizer yet"):
        dm.encode(["a film"])
    dm.setup()
    for blank in ("", "   \t", "\x00"):
        with pytest.raises(DataError, match="text 1 .* empty or blank"):
            dm.encode(["a nice film", blank])
    out = dm.encode(["a nice film , take 3", "nice"])
    assert out["truncated"] == [True, False]
    assert out["tokens"].shape == (2, 4)
    assert out["lengths"].tolist() == [4, 2]


def test_real_file_counts_when_cached() -> None:
    """The sha-pinned file parses to the documented counts (runs only where it is cached)."""
    if not rotten_tomatoes.RATINGS.available():
        pytest.skip("rotten-tomatoes not in the data cache (suite data prepare sentiment)")
    texts, scores = rotten_tomatoes.read_ratings(rotten_tomatoes.RATINGS.local)
    assert len(texts) == 10_603  # 10,605 lines, two sentences rated twice
    assert Counter(rotten_tomatoes.label_scores(scores, 2)) == {1: 5241, 0: 5325, None: 37}


def test_a_cut_ratings_file_is_listed_corrupt_and_verify_fetches_it_again(
        ratings: list, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A ratings file cut short is listed corrupt, repaired by ``data verify``, and with no
    source left is one line naming the file and the command."""
    from suite.cli import main

    assert main(["list"]) == 0
    assert "data: rotten-tomatoes [missing]" in capsys.readouterr().out
    sentiment.prepare()
    path = rotten_tomatoes.RATINGS.local
    whole = path.read_bytes()
    path.write_bytes(b"".join(whole.splitlines(keepends=True)[:5]))
    assert main(["list"]) == 0
    assert "data: rotten-tomatoes [corrupt]" in capsys.readouterr().out
    assert main(["data", "verify", "sentiment"]) == 0
    assert "rotten-tomatoes: corrupt, repaired" in capsys.readouterr().out
    assert main(["data", "verify", "sentiment", "--dataset", "sst"]) == 2
    assert "valid: rotten-tomatoes, imdb" in capsys.readouterr().err
    assert path.read_bytes() == whole
    path.write_bytes(whole[:-1])
    (tmp_path / "hutto_ICWSM_2014.tar.gz").unlink()  # no source left
    assert main(["data", "prepare", "sentiment"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "sha256" in err[0]
    assert err[0].endswith("run `suite data prepare sentiment`")
