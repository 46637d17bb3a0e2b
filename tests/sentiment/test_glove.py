"""GloVe word vectors for the sentiment head: the vocabulary -> vector mapping, the frozen
buffer in the model, train -> predict through the CLI, and the option's errors. The GloVe files
are tiny copies planted in the test's data cache; nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from suite.blocks import LayerConfig
from suite.cli import main
from suite.errors import DataError, UsageError
from tasks.sentiment import glove
from tasks.sentiment.model import SentimentTransformer
from tasks.sentiment.module import SentimentModule
from tasks.sentiment.tokenizer import SPECIAL_TOKENS, load_tokenizer

from . import fake_imdb

CONFIG = LayerConfig(dim=32, depth=1, num_heads=4, ffn_dim=64)
GLOVE_CONFIG = Path(__file__).parents[2] / "configs" / "sentiment" / "glove.yaml"
# Words of the tiny ratings and reviews, plus "ful" (a piece of other words) and "[mask]" (the
# special token's spelling, which must not match it).
GLOVE_WORDS = ["the", "a", "film", "wonderful", "dull", "ful", "superb", "dreadful", "[mask]"]
TINY = ["--data.vocab_size=80", "--data.batch_size=16", "--model.encoder.dim=32",
        "--model.encoder.ffn_dim=64", "--model.encoder.depth=1", "--trainer.max_steps=2",
        "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--run.test=false", "--run.wandb=disabled"]


@pytest.fixture
def vectors(planted: set[Path]) -> np.ndarray:
    """Plant the two GloVe files (words :data:`GLOVE_WORDS`, random rows) in the data cache."""
    table = np.random.default_rng(0).normal(size=(len(GLOVE_WORDS), glove.DIM))
    table = table.astype(np.float32)
    glove.WORDS.local.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({glove.WORD_COLUMN: GLOVE_WORDS}), glove.WORDS.local)
    np.save(glove.VECTORS.local, table)
    planted.update({glove.WORDS.local, glove.VECTORS.local})
    return table


def _row(vectors: np.ndarray, word: str) -> torch.Tensor:
    return torch.from_numpy(vectors[GLOVE_WORDS.index(word)])


def test_whole_words_get_their_vector_pieces_and_specials_none(vectors: np.ndarray) -> None:
    tokens = [*SPECIAL_TOKENS, "Film", "dull", "##ful", "ful", "qqq"]
    table, found = glove.token_vectors(tokens, continuation_prefix="##")
    assert table.shape == (len(tokens), glove.DIM) and found.dtype == torch.bool
    assert found.tolist() == [False] * len(SPECIAL_TOKENS) + [True, True, False, True, False]
    assert torch.equal(table[len(SPECIAL_TOKENS)], _row(vectors, "film"))  # case folded
    assert torch.equal(table[-2], _row(vectors, "ful"))
    assert not table[~found].any()
    # a tokenizer that marks no pieces: every entry is looked up as spelled
    _, unmarked = glove.token_vectors(["##ful", "ful"])
    assert unmarked.tolist() == [False, True]


def test_glove_files_of_the_wrong_shape_are_one_data_error(vectors: np.ndarray) -> None:
    np.save(glove.VECTORS.local, vectors[:, :3])
    with pytest.raises(DataError, match=r"float32 \(9, 50\) matrix.*\(9, 3\)") as error:
        glove.token_vectors(["film"])
    assert str(glove.VECTORS.local) in str(error.value)
    glove.WORDS.local.write_text("not parquet")
    with pytest.raises(DataError, match="expected a parquet file"):
        glove.token_vectors(["film"])


def _model(word_vectors: int | None) -> SentimentTransformer:
    torch.manual_seed(0)
    extra = {} if word_vectors is None else {"word_vectors": word_vectors}
    return SentimentTransformer(20, 2, CONFIG, pool="cls", positions="sinusoidal",
                                max_length=8, word_dropout=0.5, pad_id=0, lexicon=False,
                                **extra).eval()


def test_without_word_vectors_the_model_is_unchanged() -> None:
    tokens, lengths = torch.tensor([[2, 7, 9, 11]]), torch.tensor([4])
    today, off = _model(None), _model(0)
    assert today.state_dict().keys() == off.state_dict().keys()
    assert all(torch.equal(value, off.state_dict()[key])
               for key, value in today.state_dict().items())
    assert torch.equal(today(tokens, lengths)[0], off(tokens, lengths)[0])
    assert off.glove_projection is None and not hasattr(off, "glove")


def test_word_vectors_are_a_saved_frozen_buffer_under_word_dropout() -> None:
    model = _model(glove.DIM)
    assert "glove" in model.state_dict() and "glove" not in dict(model.named_parameters())
    assert model.state_dict()["glove"].shape == (20, glove.DIM)
    assert "glove_projection.weight" in dict(model.named_parameters())
    tokens = torch.tensor([[2, 7, 9]])
    before = model.embed(tokens)
    model.glove[9] = torch.randn(glove.DIM)
    after = model.embed(tokens)
    changed = (after - before).abs().amax(dim=-1)[0] > 1e-4  # (T,)
    assert changed.tolist() == [False, False, True]  # only the token whose vector moved
    model.train()
    model.word_dropout = 1.0  # every word is dropped, its word vector with it
    torch.manual_seed(1)
    dropped = model.embed(tokens)
    model.glove.zero_()
    torch.manual_seed(1)
    assert torch.allclose(dropped, model.embed(tokens))


def test_an_unknown_word_vectors_option_is_one_usage_error(
        ratings: list, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(UsageError, match="model.word_vectors must be glove-6b-50d or null"):
        SentimentModule(word_vectors="word2vec")
    capsys.readouterr()
    assert main(["train", "sentiment", *TINY, "--model.word_vectors=glove-6b-300d",
                 f"--run.root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.word_vectors must be glove-6b-50d" in err[0]


def test_glove_config_trains_then_predicts_without_the_glove_files(
        ratings: list, vectors: np.ndarray, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "sentiment", "-c", str(GLOVE_CONFIG), *TINY,
                 f"--run.root={tmp_path}", "--run.name=glove"]) == 0
    run = tmp_path / "sentiment" / "adhoc" / "glove"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    tokenizer = load_tokenizer(checkpoint["sentiment_tokenizer"])
    table = checkpoint["state_dict"]["model.glove"]  # (vocab_size, DIM)
    assert table.shape == (80, glove.DIM)
    assert torch.equal(table[tokenizer.token_to_id("wonderful")], _row(vectors, "wonderful"))
    found = int(table.any(dim=1).sum())
    assert found >= 4  # a, film, wonderful, dull at least
    metrics = json.loads((run / "summary.json").read_text())["metrics"]
    assert metrics["word_vectors/found"] == found
    assert metrics["word_vectors/found_share"] == pytest.approx(
        found / tokenizer.get_vocab_size())
    for path in (glove.WORDS.local, glove.VECTORS.local):
        path.unlink()
    capsys.readouterr()
    assert main(["predict", "sentiment", "--ckpt", str(run / "checkpoints" / "last.ckpt"),
                 "a wonderful film", "dull"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[2] for line in lines] == ["a wonderful film", "dull"]


def _imdb_run(root: Path, name: str, *extra: str) -> list[str]:
    return ["train", "sentiment", *TINY, "--data.dataset=imdb", "--data.vocab_size=120",
            "--data.max_length=16", f"--run.root={root}", f"--run.name={name}", *extra]


def test_fine_tuning_keeps_the_pretrained_encoders_word_vectors(
        vectors: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """A pretrained encoder with GloVe fine-tunes with GloVe, its vectors carried over; one
    without them cannot take them on (the strict encoder load), nor the other way round."""
    fake_imdb.install(tmp_path, monkeypatch, fake_imdb.csv_bytes(fake_imdb.rows()))
    mlm = ["--data.objective=mlm", "--run.monitor=val/mlm_loss", "--run.monitor_mode=min"]
    option = f"--model.word_vectors={glove.NAME}"
    assert main(_imdb_run(tmp_path, "mlm-glove", *mlm, option)) == 0
    assert main(_imdb_run(tmp_path, "mlm", *mlm)) == 0
    with_glove, without = (next(tmp_path.rglob(f"{name}/checkpoints/last.ckpt"))
                           for name in ("mlm-glove", "mlm"))
    assert main(_imdb_run(tmp_path, "fine", f"--data.pretrained={with_glove}", option)) == 0
    pretrained = torch.load(with_glove, weights_only=False)["state_dict"]["model.glove"]
    tuned = torch.load(next(tmp_path.rglob("fine/checkpoints/last.ckpt")), weights_only=False)
    assert pretrained.any() and torch.equal(tuned["state_dict"]["model.glove"], pretrained)
    for checkpoint, args in ((without, [option]), (with_glove, [])):
        capsys.readouterr()
        assert main(_imdb_run(tmp_path, "misfit", f"--data.pretrained={checkpoint}",
                              *args)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "was pretrained with model.word_vectors=" in err[0]
