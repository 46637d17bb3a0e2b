"""Output units: the setting's names and sizes, the BPE tokenizer's exact round trip on any
normalised text (digit words, spelled letters, characters it never saw together), its word
starts, its determinism, and its trip through a checkpoint."""

from __future__ import annotations

import io

import pytest
import torch

from suite.blocks import LayerConfig
from suite.errors import DataError, UsageError
from tasks.asr.module import ASRModule
from tasks.asr.text import BLANK_ID, VOCAB, normalize
from tasks.asr.units import (
    BLANK_TOKEN,
    CHAR_UNITS,
    WORD_START,
    load_units,
    train_units,
    units_size,
)

TRAINING = [normalize(t) for t in (
    "Press 1 for sales, 2 for support.", "Please hold; your call is important to us.",
    "Dial 500 for the operator.", "The FBI and the CIA met at 10:30.",
    "You have 3 new messages.", "Your PIN is 0042.", "Goodbye!", "Don't hang up.")] * 3
UNSEEN = [normalize("Call 555-0123, extension 42."), normalize("The NSA's HQ"),
          "a b c x y z", "j q x z", "quizzical jukebox", "don't", "a", "zero zero zero",
          "the the the", "o'clock"]


TINY = LayerConfig(dim=32, depth=1, num_heads=2, ffn_dim=64)


@pytest.fixture(scope="module")
def units():
    return train_units("bpe-64", TRAINING)


@pytest.mark.parametrize("spec,size", [("char", len(VOCAB)), ("bpe-29", 29), ("bpe-256", 256)])
def test_units_size(spec, size):
    assert units_size(spec) == size


@pytest.mark.parametrize("spec", ["bpe", "bpe-28", "bpe-x", "wordpiece-100", "chars", "BPE-64"])
def test_bad_units_settings_are_usage_errors(spec):
    with pytest.raises(UsageError, match="expected 'char' or 'bpe-N' with N >= 29"):
        units_size(spec)


def test_pieces_hold_the_blank_first_and_every_single_character(units):
    assert len(units) == 64 and units.symbols[BLANK_ID] == BLANK_TOKEN
    assert {WORD_START, "'", *"abcdefghijklmnopqrstuvwxyz"} <= set(units.symbols)
    assert units.texts[BLANK_ID] == "" and units.word_boundary is None
    assert any(len(s) > 2 for s in units.symbols)  # merges happened: pieces, not characters


@pytest.mark.parametrize("text", UNSEEN + TRAINING[:8])
def test_round_trip_is_exact_on_normalised_text(units, text):
    ids = units.encode(text)
    assert ids.dtype == torch.long and (ids != BLANK_ID).all() and (ids < len(units)).all()
    assert units.decode(ids) == text
    assert "".join(units.texts[i] for i in ids) == " " + text  # what the decoders join


def test_each_word_starts_with_the_metaspace_piece_and_only_there(units):
    for text in UNSEEN:
        pieces = [units.symbols[i] for i in units.encode(text)]
        starts = [i for i, p in enumerate(pieces) if p.startswith(WORD_START)]
        assert len(starts) == len(text.split()) and starts[0] == 0
        assert all(WORD_START not in p[1:] for p in pieces)
    assert "".join(units.spell("operator")) == WORD_START + "operator"


def test_training_is_deterministic_and_uses_the_given_texts_only():
    first, again = train_units("bpe-40", TRAINING), train_units("bpe-40", TRAINING)
    assert first.to_str() == again.to_str()
    other = train_units("bpe-40", ["zebra quartz jigsaw"] * 20)
    assert other.symbols != first.symbols


def test_bad_text_and_too_small_a_corpus_are_data_errors(units):
    with pytest.raises(DataError, match="normalize"):
        units.encode("Hello, world")
    with pytest.raises(DataError, match="normalize"):
        train_units("bpe-40", ["Press 1"])
    with pytest.raises(DataError, match=r"yield only \d+ pieces; use bpe-\d+ or fewer"):
        train_units("bpe-500", TRAINING)
    assert train_units("char", TRAINING) is CHAR_UNITS


def test_char_units_are_the_vocabulary():
    assert CHAR_UNITS.symbols == VOCAB and CHAR_UNITS.word_boundary == " "
    assert CHAR_UNITS.decode(CHAR_UNITS.encode("don't go")) == "don't go"
    assert CHAR_UNITS.spell("go") == ["g", "o", " "] and CHAR_UNITS.to_str() is None
    with pytest.raises(DataError, match="normalize"):
        CHAR_UNITS.encode("Go")


def test_load_units_checks_the_tokenizer(units):
    loaded = load_units("bpe-64", units.to_str())
    assert loaded.symbols == units.symbols
    assert loaded.encode(UNSEEN[0]).tolist() == units.encode(UNSEEN[0]).tolist()
    with pytest.raises(DataError, match="expected 65 pieces"):
        load_units("bpe-65", units.to_str())
    with pytest.raises(DataError, match="carries no tokenizer"):
        load_units("bpe-64", None)


def _saved(module: ASRModule) -> dict:
    """What Lightning writes and reads back: the module's hook output, saved weights-only."""
    checkpoint = {"hyper_parameters": {"units": module.hparams.units}}
    module.on_save_checkpoint(checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_tokenizer_travels_in_the_checkpoint(units):
    trained = ASRModule(encoder=TINY, units="bpe-64", subsampling=8)
    with pytest.raises(DataError, match="no word pieces yet"):
        trained.on_save_checkpoint({})
    trained.units = units
    checkpoint = _saved(trained)
    assert checkpoint["vocab"] == units.symbols and checkpoint["asr_tokenizer"]
    fresh = ASRModule(encoder=TINY, units="bpe-64", subsampling=8)
    assert fresh.units is None
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.units.symbols == units.symbols
    assert fresh.units.encode(UNSEEN[1]).tolist() == units.encode(UNSEEN[1]).tolist()
    with pytest.raises(DataError, match="checkpoint has model.units=bpe-64, this model char"):
        ASRModule(encoder=TINY).on_load_checkpoint(checkpoint)


def test_character_checkpoints_load_as_before():
    module = ASRModule(encoder=TINY)
    checkpoint = _saved(module)
    assert checkpoint["vocab"] == VOCAB and "asr_tokenizer" not in checkpoint
    del checkpoint["hyper_parameters"]["units"]  # written before output units were a setting
    module.on_load_checkpoint(checkpoint)
    assert module.units is CHAR_UNITS
    checkpoint["vocab"] = VOCAB[:-1]
    with pytest.raises(DataError, match="checkpoint vocabulary"):
        module.on_load_checkpoint(checkpoint)
