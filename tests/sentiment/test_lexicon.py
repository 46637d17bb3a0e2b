"""The VADER lexicon prior: reading the file, aligning word valences with subword tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite.errors import DataError
from tasks.sentiment import data as sentiment
from tasks.sentiment.lexicon import read_lexicon, word_valence
from tasks.sentiment.tokenizer import train_tokenizer

from .tiny import TINY_LEXICON, lexicon_bytes, rows


def test_read_lexicon_scales_merges_and_rejects_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "lex.txt"
    path.write_bytes(lexicon_bytes(TINY_LEXICON) + b"\r\n")
    table = read_lexicon(path)
    assert table["wonderful"] == pytest.approx(0.7)
    assert table["dreadful"] == pytest.approx(-0.8)
    assert table[":d"] == pytest.approx((2.0 + 1.0) / 2 / 4)  # ":D" and ":d" merged
    assert ":D" not in table and len(table) == len(TINY_LEXICON) - 1
    for bad in (b"good\t1.5\r\n", b"good\tgreat\t0.5\t[1]\r\n", b"good\t7.0\t0.5\t[1]\r\n"):
        path.write_bytes(lexicon_bytes({"nice": 1.8}) + bad)
        with pytest.raises(DataError, match=r"lex.txt:2: expected 'token<TAB>mean"):
            read_lexicon(path)


def test_every_piece_of_a_word_gets_its_valence() -> None:
    tokenizer = train_tokenizer([t for _, _, t in rows()], vocab_size=80)
    table = {"terrific": 0.8, "dull": -0.4}
    texts = ["A TERRIFIC film", "dull , zebra"]
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    valence = word_valence(encodings, texts, table)
    pieces = encodings[0].tokens
    assert len(pieces) > 3  # "terrific" is cut into several subword pieces
    assert valence[0] == [0.0] + [0.8] * (len(pieces) - 2) + [0.0]
    assert len(valence[1]) == len(encodings[1].ids) > 3  # "zebra" is pieces and [UNK]s
    assert valence[1] == [-0.4] + [0.0] * (len(valence[1]) - 1)


def test_batches_and_encode_carry_aligned_valence(ratings: list) -> None:
    dm = sentiment.SentimentDataModule(vocab_size=80, batch_size=16, max_length=6, lexicon=True)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"tokens", "lengths", "labels", "valence"}
    assert batch["valence"].dtype == torch.float32
    assert batch["valence"].shape == batch["tokens"].shape
    assert (batch["valence"][:, 0] == 0).all()  # [CLS]
    padding = torch.arange(batch["tokens"].shape[1]) >= batch["lengths"][:, None]
    assert (batch["valence"][padding] == 0).all()
    assert batch["valence"].abs().sum() > 0

    out = dm.encode(["a wonderful film", "dull , dull , dull !"])
    assert out["valence"].shape == out["tokens"].shape == (2, 6)
    assert out["truncated"] == [False, True]
    assert torch.allclose(out["valence"], torch.tensor([[0.0, 0.0, 0.7, 0.0, 0.0, 0.0],
                                                        [0.0, -0.4, 0.0, -0.4, 0.0, -0.4]]))
    plain = sentiment.SentimentDataModule(vocab_size=80, max_length=6)
    plain.load_state_dict(dm.state_dict())
    assert "valence" not in plain.encode(["a wonderful film"])
