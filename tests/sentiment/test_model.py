"""Sentiment model and module: shapes, padding invariance, train -> predict through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from suite.blocks import LayerConfig
from suite.cli import main
from tasks.sentiment.model import SentimentTransformer, pool_sequence
from tasks.sentiment.module import has_known_word

CONFIG = LayerConfig(dim=32, depth=2, num_heads=4, ffn_dim=64, dropout=0.1, attention_dropout=0.1)
TINY = ["--data.vocab_size=80", "--data.batch_size=16",
        "--model.encoder.dim=32", "--model.encoder.ffn_dim=64", "--trainer.max_steps=2",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--run.wandb=disabled"]


LEXICON_CONFIG = Path(__file__).parents[2] / "configs" / "sentiment" / "lexicon.yaml"


def _model(pool: str, positions: str = "sinusoidal", classes: int = 2, lexicon: bool = False
           ) -> SentimentTransformer:
    torch.manual_seed(0)
    return SentimentTransformer(50, classes, CONFIG, pool=pool, positions=positions,
                                max_length=16, word_dropout=0.2, pad_id=0,
                                lexicon=lexicon).eval()


@pytest.mark.parametrize(("pool", "positions", "classes"),
                         [("cls", "sinusoidal", 2), ("mean", "learned", 5),
                          ("meanmax", "sinusoidal", 5)])
def test_forward_shapes_and_maps(pool: str, positions: str, classes: int) -> None:
    model = _model(pool, positions, classes)
    tokens = torch.randint(4, 50, (3, 7))
    tokens[:, 0] = 2
    logits, maps = model(tokens, torch.tensor([7, 5, 2]), need_weights=True)
    assert logits.shape == (3, classes)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 7, 7)
    assert torch.allclose(maps[-1].sum(-1), torch.ones(3, 4, 7), atol=1e-5)
    assert maps[-1][1, :, :, 5:].abs().max() == 0  # padded keys get no attention
    _, none = model(tokens, torch.tensor([7, 5, 2]))
    assert none == []


@pytest.mark.parametrize(("pool", "lexicon"), [("cls", False), ("mean", False),
                                               ("meanmax", False), ("cls", True),
                                               ("meanmax", True)])
def test_logits_do_not_depend_on_padding(pool: str, lexicon: bool) -> None:
    """A sentence alone and batched with longer ones (padded with junk) gives the same logits."""
    model = _model(pool, lexicon=lexicon)
    short = torch.tensor([[2, 10, 11, 12]])
    short_valence = torch.tensor([[0.0, 0.5, 0.0, -0.75]]) if lexicon else None
    alone, _ = model(short, torch.tensor([4]), valence=short_valence)
    batch = torch.randint(4, 50, (3, 9))
    batch[:, 0] = 2
    batch[1, :4] = short[0]
    batch[1, 4:] = 0
    valence = torch.rand(3, 9) * 2 - 1 if lexicon else None
    if valence is not None:
        valence[1, :4] = short_valence[0]
        valence[1, 4:] = 0
    batched, _ = model(batch, torch.tensor([9, 4, 6]), valence=valence)
    assert torch.allclose(alone[0], batched[1], atol=1e-5)
    batch[1, 4:] = 17  # whatever sits in the padding must not matter
    if valence is not None:
        valence[1, 4:] = 0.9
    again, _ = model(batch, torch.tensor([9, 4, 6]), valence=valence)
    assert torch.allclose(batched, again, atol=1e-6)


def test_local_attention_reads_a_window_and_cls_reads_everything() -> None:
    torch.manual_seed(0)
    model = SentimentTransformer(50, 2, CONFIG, pool="cls", positions="sinusoidal",
                                 max_length=64, word_dropout=0.0, pad_id=0, lexicon=False,
                                 window=2).eval()
    tokens = torch.randint(4, 50, (2, 40))
    tokens[:, 0] = 2
    lengths = torch.tensor([40, 25])
    _, maps = model(tokens, lengths, need_weights=True)
    weights = maps[0][0, 0]  # (T, T) of item 0, head 0
    assert weights[0, :40].min() > 0  # [CLS] attends to every token
    assert weights[10, 0] > 0 and weights[10, 13] == 0  # a word: [CLS] and +-2 tokens
    assert weights[10, 8:13].min() > 0
    assert maps[0][1, 0, 0, 25:].abs().max() == 0  # never to padding
    logits, _ = model(tokens, lengths)  # the banded path gives the explicit one's result
    explicit, _ = model(tokens, lengths, need_weights=True)
    assert torch.allclose(logits, explicit, atol=1e-5)
    with pytest.raises(ValueError, match="window must be >= 1"):
        SentimentTransformer(50, 2, CONFIG, pool="cls", positions="sinusoidal", max_length=8,
                             word_dropout=0.0, pad_id=0, lexicon=False, window=0)


def test_pooling_ignores_cls_and_padding() -> None:
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).view(2, 4, 1)  # values 0..7
    lengths = torch.tensor([4, 2])
    assert pool_sequence(hidden, lengths, "cls").flatten().tolist() == [0.0, 4.0]
    assert pool_sequence(hidden, lengths, "mean").flatten().tolist() == [2.0, 5.0]
    assert pool_sequence(hidden, lengths, "meanmax").tolist() == [[2.0, 3.0], [5.0, 5.0]]


def test_word_dropout_only_in_training() -> None:
    model = _model("cls")
    tokens = torch.randint(4, 50, (2, 8))
    assert torch.equal(model.embed(tokens), model.embed(tokens))
    model.train()
    torch.manual_seed(1)
    assert not torch.equal(model.embed(tokens), model.embed(tokens))


def test_lexicon_prior_survives_word_dropout_and_is_required() -> None:
    model = _model("cls", lexicon=True).train()
    model.word_dropout = 1.0  # every word's embedding is dropped
    tokens = torch.randint(4, 50, (2, 6))
    valence = torch.zeros(2, 6)
    valence[:, 2] = 0.75
    torch.manual_seed(1)
    with_prior = model.embed(tokens, valence)
    torch.manual_seed(1)
    without = model.embed(tokens, torch.zeros(2, 6))
    differs = (with_prior - without).abs().amax(dim=-1) > 1e-4  # (B, T)
    assert differs[:, 2].all() and not differs[:, 3:].any()
    with pytest.raises(ValueError, match="valence is needed exactly when"):
        model.embed(tokens)
    with pytest.raises(ValueError, match="valence is needed exactly when"):
        _model("cls").embed(tokens, valence)


@pytest.fixture
def trained(ratings: list, tmp_path: Path) -> Path:
    """Two optimiser steps of the default config (with the MLM loss, long texts cut head + tail)
    on the tiny archive."""
    code = main(["train", "sentiment", *TINY, "--model.mlm_weight=0.5", "--data.head_tokens=4",
                 "--run.root",
                 str(tmp_path), "--run.name", "tiny"])
    assert code == 0
    return tmp_path / "sentiment" / "adhoc" / "tiny"


def test_train_then_predict_from_the_checkpoint(trained: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    import json

    summary = json.loads((trained / "summary.json").read_text())
    assert summary["model"] == "transformer-cls"
    assert summary["dataset"] == "rotten-tomatoes-binary"
    assert {"test/acc", "test/macro_f1", "train/mlm_loss"} <= set(summary["metrics"])
    media = trained / "media"
    assert (media / "test_confusion_matrix.png").is_file()
    assert (media / "test_cls_attention.png").is_file()
    assert (media / "test_misclassified.csv").is_file()

    ckpt = trained / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    long_text = " ".join(["a wonderful film"] * 60)
    assert main(["predict", "sentiment", "--ckpt", str(ckpt), "a fine film", long_text]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2
    label, probability, text = lines[0].split("\t")
    assert label in ("negative", "positive") and 0.5 <= float(probability) <= 1
    assert text == "a fine film"
    assert "input 2 is longer than" in captured.err
    assert "classified on its head and tail" in captured.err  # as data.head_tokens cut in training

    lines_file = tmp_path / "lines.txt"
    lines_file.write_text("dull\n\na nice film\n")
    assert main(["predict", "sentiment", "--ckpt", str(ckpt), "--file", str(lines_file)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2

    assert main(["predict", "sentiment", "--ckpt", str(ckpt), "good", ""]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty or blank" in err[0]


def test_predict_classifies_each_document_whole(trained: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    review = tmp_path / "review.txt"
    review.write_text("A fine film.\n\nThe cast is good,\nthe plot is dull.\n")
    capsys.readouterr()
    assert main(["predict", "sentiment", "--ckpt", str(ckpt), "--documents", str(review)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 1 and rows[0][2] == str(review)  # one row per file, not per line

    for bad, expected in ((tmp_path / "absent.txt", "no such file"),
                          (tmp_path / "latin1.txt", "not a UTF-8 text file")):
        if bad.name == "latin1.txt":
            bad.write_bytes("caf\xe9 film".encode("latin-1"))
        assert main(["predict", "sentiment", "--ckpt", str(ckpt), "--documents", str(bad)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0] and str(bad) in err[0]


def test_predict_escapes_tsv_and_flags_out_of_vocabulary_text(
        trained: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    texts = ["a\tnice film", "a dull\nfilm \\ end\r", "qzxv jjwq", "\u65e5\u672c\u8a9e"]
    assert main(["predict", "sentiment", "--ckpt", str(ckpt), *texts]) == 0
    captured = capsys.readouterr()
    rows = [line.split("\t") for line in captured.out.strip().splitlines()]
    assert [len(row) for row in rows] == [3] * 4  # label, probability, text: one line each
    assert [row[2] for row in rows] == ["a\\tnice film", "a dull\\nfilm \\\\ end\\r", "qzxv jjwq",
                                        "\u65e5\u672c\u8a9e"]
    notices = [line for line in captured.err.splitlines() if "vocabulary" in line]
    assert [n.split("input ")[1].split(" ")[0] for n in notices] == ["3", "4"]
    assert all(n.startswith("notice: no word of input") for n in notices)


def test_has_known_word_needs_a_whole_word_token() -> None:
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "f": 4, "i": 5, "l": 6, "m": 7,
             "fi": 8, "lm": 9, "film": 10}
    merges = [("f", "i"), ("l", "m"), ("fi", "lm")]
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def known(text: str) -> bool:
        return has_known_word(tokenizer.encode(text, add_special_tokens=False))

    assert known("film") and known("flim film") and known("qq film")
    assert not known("flim") and not known("qq") and not known("fifi")


def test_the_data_sizes_the_model(ratings: list, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    """classes, vocab_size, max_length and lexicon are linked from the data module; the model
    takes them from there (and its checkpoint keeps them), never from the user."""
    assert main(["train", "sentiment", *TINY, "--data.classes=5", "--data.max_length=24",
                 "--trainer.max_steps=1", "--run.test=false", "--run.root", str(tmp_path),
                 "--run.name", "five"]) == 0
    ckpt = tmp_path / "sentiment" / "adhoc" / "five" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]
    assert [saved[key] for key in ("classes", "vocab_size", "max_length", "lexicon")] == [
        5, 80, 24, False]
    capsys.readouterr()
    assert main(["train", "sentiment", *TINY, "--model.classes=5", "--run.root",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.classes" in err[0]


def test_lexicon_config_trains_and_predicts(ratings: list, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """configs/sentiment/lexicon.yaml, shrunk, for two steps; then predict from its checkpoint."""
    assert main(["train", "sentiment", "-c", str(LEXICON_CONFIG), *TINY, "--run.root",
                 str(tmp_path), "--run.name", "lex"]) == 0
    ckpt = tmp_path / "sentiment" / "adhoc" / "lex" / "checkpoints" / "last.ckpt"
    weights = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert weights["model.valence_direction"].shape == (32,)
    capsys.readouterr()
    assert main(["predict", "sentiment", "--ckpt", str(ckpt), "a terrific film", "dull"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[2] for line in lines] == ["a terrific film", "dull"]
    assert all(line.split("\t")[0] in ("negative", "positive") for line in lines)


def test_layer_decay_scales_each_level_learning_rate() -> None:
    from tasks.sentiment.module import SentimentModule

    module = SentimentModule(encoder=LayerConfig(dim=32, depth=2, num_heads=4, ffn_dim=64),
                             layer_decay=0.5, lr=1.0)
    lrs = {id(p): group["lr"] for group in module.param_groups() for p in group["params"]}
    named = dict(module.named_parameters())
    assert len(lrs) == len(named)  # every parameter in exactly one group
    assert lrs[id(named["model.embedding.weight"])] == 0.125  # 0.5 ** (depth + 1)
    assert lrs[id(named["model.encoder.layers.0.attention.q_proj.weight"])] == 0.25
    assert lrs[id(named["model.encoder.layers.1.ffn.net.0.weight"])] == 0.5
    assert lrs[id(named["model.classifier.1.weight"])] == 1.0
    plain = SentimentModule(encoder=LayerConfig(dim=32, depth=2, num_heads=4, ffn_dim=64))
    assert all("lr" not in group for group in plain.param_groups())
