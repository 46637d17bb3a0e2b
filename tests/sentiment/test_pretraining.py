"""Masked-LM pretraining: BERT's masking rule, the pretraining corpus (IMDb's training reviews
only), and a pretrained encoder loaded into a classifier - strictly, with its tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite.blocks import LayerConfig
from suite.cli import main
from suite.errors import UsageError
from tasks.sentiment import data as sentiment
from tasks.sentiment import imdb
from tasks.sentiment.module import SentimentModule
from tasks.sentiment.pretraining import IGNORE, load_encoder, mask_tokens, window_starts
from tasks.sentiment.tokenizer import CLS_ID, MASK_ID, PAD_ID, SPECIAL_TOKENS

from . import fake_imdb

WORDS = len(SPECIAL_TOKENS)  # the first word-token id


@pytest.fixture
def reviews(tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_imdb.install(tmp_path, monkeypatch, fake_imdb.csv_bytes(fake_imdb.rows()))


def _batch(batch: int = 64, length: int = 200, vocab: int = 1000) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(WORDS, vocab, (batch, length), generator=generator)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    tokens[:, 0] = CLS_ID
    tokens[torch.arange(length)[None] >= lengths[:, None]] = PAD_ID
    return tokens, lengths


def test_mask_tokens_follows_berts_rule() -> None:
    tokens, lengths = _batch()
    inputs, targets = mask_tokens(tokens, lengths, 1000,
                                  generator=torch.Generator().manual_seed(0))
    chosen = targets != IGNORE
    words = (tokens >= WORDS) & (torch.arange(tokens.shape[1])[None] < lengths[:, None])
    assert not (chosen & ~words).any()  # never [CLS], padding or another special token
    assert torch.equal(targets[chosen], tokens[chosen])
    assert torch.equal(inputs[~chosen], tokens[~chosen])
    assert 0.14 < chosen.sum() / words.sum() < 0.16
    masked = (inputs[chosen] == MASK_ID).float().mean()
    unchanged = (inputs[chosen] == tokens[chosen]).float().mean()
    assert 0.78 < masked < 0.82 and 0.08 < unchanged < 0.12  # ~10% random, ~10% kept
    replaced = inputs[chosen & (inputs != MASK_ID) & (inputs != tokens)]
    assert (replaced >= WORDS).all() and (replaced < 1000).all()  # random words, not specials
    again = mask_tokens(tokens, lengths, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)


def test_pretraining_reads_only_imdbs_training_reviews(reviews: None) -> None:
    dm = sentiment.SentimentDataModule(dataset="imdb", objective="mlm", vocab_size=120,
                                       max_length=16)
    dm.setup("fit")
    held_out = {t for name in ("validation", "test")
                for t in sentiment.load_splits(dataset="imdb")[name].texts}
    training = set(sentiment.load_splits(dataset="imdb")["train"].texts)
    seen = {t for part in dm.splits.values() for t in part.texts}
    assert seen == training and not seen & held_out
    assert not set(dm.splits["train"].texts) & set(dm.splits["validation"].texts)
    assert dm.dataset_name == "imdb-mlm"
    assert len(dm.splits["validation"].texts) == max(
        1, round(imdb.PRETRAINING_VALIDATION * len(training)))


@pytest.mark.parametrize(("length", "room", "starts"), [
    (3, 4, [0]), (4, 4, [0]), (8, 4, [0, 4]), (10, 4, [0, 4, 6]), (9, 4, [0, 4, 5])])
def test_windows_cover_a_text_in_full_length_windows(length: int, room: int,
                                                      starts: list[int]) -> None:
    assert window_starts(length, room) == starts
    covered = {i for start in starts for i in range(start, min(start + room, length))}
    assert covered == set(range(length))


def test_pretraining_reads_each_review_whole_in_windows(reviews: None) -> None:
    dm = sentiment.SentimentDataModule(dataset="imdb", objective="mlm", vocab_size=120,
                                       max_length=16, batch_size=4)
    dm.setup("fit")
    rows = [row[:length].tolist() for batch in dm.val_dataloader()
            for row, length in zip(batch["tokens"], batch["lengths"], strict=True)]
    expected = []
    for text in dm.splits["validation"].texts:
        ids = dm.tokenizer.encode(text, add_special_tokens=False).ids
        expected += [[CLS_ID, *ids[start:start + 15]] for start in window_starts(len(ids), 15)]
    assert rows == expected
    assert len(rows) > len(dm.splits["validation"].texts)  # long reviews span several windows
    assert all(len(row) <= 16 for row in rows)


def test_pretraining_windows_carry_their_tokens_valences(ratings: list) -> None:
    dm = sentiment.SentimentDataModule(dataset="imdb", objective="mlm", vocab_size=120,
                                       max_length=16, batch_size=4, lexicon=True)
    dm.setup("fit")
    encodings, valence = dm._encode(dm.splits["train"].texts)
    expected = sorted(
        (CLS_ID, *encoding.ids[start:start + 15], 0.0, *values[start:start + 15])
        for encoding, values in zip(encodings, valence, strict=True)
        for start in window_starts(len(encoding.ids), 15))
    served = sorted(
        (*tokens[:length].tolist(), *values[:length].tolist())
        for batch in dm.train_dataloader()
        for tokens, values, length in zip(batch["tokens"], batch["valence"], batch["lengths"],
                                          strict=True))
    assert len(served) == len(expected)
    assert all(got == pytest.approx(want) for got, want in zip(served, expected, strict=True))
    assert any(value < 0 for row in served for value in row)  # "dreadful" is in the lexicon


def test_pretraining_on_another_data_set_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="objective=mlm"):
        sentiment.SentimentDataModule(objective="mlm")


def _args(root: Path, name: str, *extra: str) -> list[str]:
    return ["train", "sentiment", "--data.dataset=imdb", "--data.vocab_size=120",
            "--data.max_length=16", "--data.batch_size=8", "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1", "--run.test=false", "--run.wandb=disabled",
            f"--run.root={root}", f"--run.name={name}", "--model.encoder.dim=16",
            "--model.encoder.ffn_dim=32", "--model.encoder.depth=1", *extra]


def _train(root: Path, name: str, *extra: str) -> Path:
    assert main(_args(root, name, *extra)) == 0
    return next((root / "sentiment").rglob(f"{name}/checkpoints/last.ckpt"))


def test_a_pretrained_encoder_and_tokenizer_start_the_classifier(
        reviews: None, tmp_path: Path) -> None:
    pretrained = _train(tmp_path, "mlm", "--data.objective=mlm", "--run.monitor=val/mlm_loss",
                        "--run.monitor_mode=min")
    checkpoint = torch.load(pretrained, weights_only=False)
    assert checkpoint["hyper_parameters"]["objective"] == "mlm"
    dm = sentiment.SentimentDataModule(dataset="imdb", pretrained=str(pretrained))
    assert dm.tokenizer.to_str() == checkpoint["sentiment_tokenizer"] and dm.vocab_size == 120
    classifier = SentimentModule(vocab_size=120, max_length=16, init_from=str(pretrained),
                                 encoder=LayerConfig(**checkpoint["hyper_parameters"]["encoder"]))
    before = classifier.model.classifier[1].weight.clone()
    load_encoder(classifier.model, pretrained)
    weights = checkpoint["state_dict"]
    assert torch.equal(classifier.model.embedding.weight, weights["model.embedding.weight"])
    assert torch.equal(classifier.model.classifier[1].weight, before)  # the head stays new
    # the vocabulary argument (here not the checkpoint's, as the default is not the
    # pretraining config's) yields to the checkpoint's tokenizer
    fine = _train(tmp_path, "fine", f"--data.pretrained={pretrained}", "--data.vocab_size=999")
    tuned = torch.load(fine, weights_only=False)
    assert tuned["hyper_parameters"]["vocab_size"] == 120
    assert tuned["sentiment_tokenizer"] == checkpoint["sentiment_tokenizer"]
    assert tuned["hyper_parameters"]["init_from"] == str(pretrained)


def test_an_encoder_of_another_size_is_one_usage_error(reviews: None, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    pretrained = _train(tmp_path, "mlm", "--data.objective=mlm")
    wider = SentimentModule(vocab_size=120, max_length=16)  # the default encoder, not 16 wide
    with pytest.raises(UsageError, match="does not fit this model.*shape") as error:
        load_encoder(wider.model, pretrained)
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="does not exist"):
        load_encoder(wider.model, tmp_path / "missing.ckpt")
    # fine-tuning loads the encoder when the fit starts: a misfit stops it with that line
    capsys.readouterr()
    assert main(_args(tmp_path, "misfit", f"--data.pretrained={pretrained}",
                      "--model.encoder.dim=32")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "does not fit this model" in error[0]
    assert not list(tmp_path.rglob("misfit/checkpoints/*.ckpt"))
