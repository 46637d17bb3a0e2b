"""Word LM decoding: the ARPA file is the interpolated Witten-Bell model (normalised, with
back-off read the standard way), and the lexicon search turns misspelt paths into words, with
words spelled in characters or in word pieces."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.asr.decode import emission_from_path
from tasks.asr.text import VOCAB
from tasks.asr.units import CHAR_UNITS, train_units
from tasks.asr.wordlm import BOS, UNK, WordDecoder, witten_bell_arpa

TEXTS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog",
         "the cat ate the rat"]


def read_arpa(text: str) -> tuple[dict[tuple, float], dict[tuple, float]]:
    """``(log10 prob, log10 back-off)`` per listed n-gram."""
    probs, bows = {}, {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and not line.startswith("ngram"):
            gram = tuple(parts[1].split())
            probs[gram] = float(parts[0])
            bows[gram] = float(parts[2]) if len(parts) == 3 else 0.0
    return probs, bows


def arpa_prob(probs: dict, bows: dict, history: tuple, word: str) -> float:
    """P(word | history) by ARPA back-off: listed, else bow(history) * P(word | shorter)."""
    if (*history, word) in probs:
        return 10 ** probs[(*history, word)]
    return 10 ** bows.get(history, 0.0) * arpa_prob(probs, bows, history[1:], word)


@pytest.mark.parametrize("history", [(), (BOS,), ("the",), ("the", "cat"), ("on", "the"),
                                     ("zebra",), ("a", "zebra")])
def test_arpa_distribution_sums_to_one_after_every_history(history):
    probs, bows = read_arpa(witten_bell_arpa([t.split() for t in TEXTS], order=3))
    vocab = {g[0] for g in probs if len(g) == 1} - {BOS}
    assert UNK in vocab and "cat" in vocab
    total = sum(arpa_prob(probs, bows, history[-2:], w) for w in vocab)
    assert total == pytest.approx(1.0, abs=1e-4)


def test_arpa_probabilities_are_witten_bell():
    probs, bows = read_arpa(witten_bell_arpa([t.split() for t in TEXTS], order=2))
    # after "sat": "on" twice, one distinct word -> P(on | sat) = (2 + 1 * P(on)) / (2 + 1)
    unigram_on = 10 ** probs[("on",)]
    assert 10 ** probs[("sat", "on")] == pytest.approx((2 + unigram_on) / 3, rel=1e-4)
    assert 10 ** bows[("sat",)] == pytest.approx(1 / 3, rel=1e-4)
    assert math.isclose(probs[(BOS,)], -99)


def spelled(text: str) -> list[int]:
    """A frame path for ``text``: each character once, a blank after each."""
    index = {c: i for i, c in enumerate(VOCAB)}
    path = []
    for char in text:
        path += [index[char], 0]
    return path


def test_lexicon_search_snaps_a_misspelt_path_to_training_words():
    decoder = WordDecoder.from_texts(TEXTS, CHAR_UNITS, order=3, beam=20, lm_weight=1.0)
    emission = emission_from_path(spelled("the cot sat on the mot"), confidence=0.6)[None]
    assert decoder(emission, torch.tensor([emission.shape[1]])) == ["the cat sat on the mat"]
    assert decoder.words == 11


def test_lexicon_of_word_pieces_snaps_misspelt_and_resegmented_paths():
    """Each word is spelled as its pieces (no silence token): a path whose pieces spell a
    word outside the lexicon ("rot", "dug", cut into other pieces than the tokenizer's) comes
    out as the training words the LM expects."""
    units = train_units("bpe-40", TEXTS * 5)
    decoder = WordDecoder.from_texts(TEXTS, units, order=3, beam=20, lm_weight=1.0)
    assert decoder.words == 11
    for heard, meant in (("the cat ate the rot", "the cat ate the rat"),
                         ("a cat and a dug", "a cat and a dog")):
        path = []
        for piece in units.encode(heard).tolist():
            path += [piece, 0]
        emission = emission_from_path(path, len(units), confidence=0.6)[None]
        # more pieces than the word meant: not one substitution, a different segmentation
        assert len(units.spell(heard.split()[-1])) > len(units.spell(meant.split()[-1]))
        assert decoder(emission, torch.tensor([emission.shape[1]])) == [meant]
