"""The general English LM: pocketsphinx's binary trie read exactly (checked against
pocketsphinx's own scores), exported as valid ARPA in the recogniser's words, cached once,
and usable by the flashlight lexicon decoder."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.errors import DataError, UsageError
from tasks.asr import general_lm
from tasks.asr.decode import emission_from_path
from tasks.asr.general_lm import (
    BOS,
    EOS,
    LOG10_PER_UNIT,
    UNK,
    NGrams,
    SphinxLM,
    general_arpa,
    general_words,
    kept_words,
    read_sphinx_lm,
    sphinx_lm_path,
    write_arpa,
)
from tasks.asr.text import BLANK_ID, VOCAB

TINY_ARPA = """\\data\\
ngram 1=6
ngram 2=5
ngram 3=2

\\1-grams:
-0.8\t</s>
-99\t<s>\t-0.3
-0.7\tpress\t-0.2
-0.9\tone\t-0.25
-1.0\tdon't\t-0.1
-1.2\t'bout\t-0.1

\\2-grams:
-0.2\t<s> press\t-0.1
-0.3\tpress one\t-0.05
-0.4\tone </s>
-0.5\tdon't press
-0.6\t<s> 'bout

\\3-grams:
-0.1\t<s> press one
-0.15\tpress one </s>

\\end\\
"""


def parse_arpa(text: str) -> dict[int, dict[tuple[str, ...], tuple[float, float | None]]]:
    """``{n: {n-gram: (log10 prob, log10 back-off or None)}}``, asserting the ARPA layout:
    header counts equal section sizes, every line parses, no back-off at the top order."""
    lines = text.splitlines()
    assert lines[0] == "\\data\\" and lines[-1] == "\\end\\"
    declared = {}
    for line in lines[1:]:
        if not line.startswith("ngram "):
            break
        n, count = line[len("ngram "):].split("=")
        declared[int(n)] = int(count)
    top = max(declared)
    sections: dict[int, dict] = {}
    current = None
    for line in lines:
        if line.endswith("-grams:"):
            current = sections.setdefault(int(line[1:line.index("-")]), {})
        elif current is not None and line and line != "\\end\\":
            fields = line.split("\t")
            n = len(sections)
            gram = tuple(fields[1].split())
            assert len(gram) == n and len(fields) in ((2,) if n == top else (2, 3)), line
            prob = float(fields[0])
            assert prob <= 0, line
            current[gram] = (prob, float(fields[2]) if len(fields) == 3 else None)
    assert {n: len(s) for n, s in sections.items()} == declared
    return sections


def read_arpa(path: Path) -> dict[int, dict[tuple[str, ...], tuple[float, float | None]]]:
    return parse_arpa(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tiny_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-word trigram LM written in sphinx's binary format by pocketsphinx itself."""
    from pocketsphinx import Config, LogMath, NGramModel

    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.arpa").write_text(TINY_ARPA)
    model = NGramModel(Config(), LogMath(), str(folder / "tiny.arpa"))
    model.write(str(folder / "tiny.lm.bin"), NGramModel.str_to_type("bin"))
    return folder / "tiny.lm.bin"


def listed(grams: NGrams, vocabulary: list[str]) -> dict[tuple[str, ...], tuple]:
    """``{n-gram: (log10 prob, log10 back-off or None)}`` of one order the reader found."""
    backoffs = [None] * len(grams.words) if grams.log10_backoff is None else grams.log10_backoff
    return {tuple(vocabulary[i] for i in row): (prob, backoff)
            for row, prob, backoff in zip(grams.words, grams.log10_prob, backoffs, strict=True)}


def test_reader_recovers_every_ngram_of_a_pocketsphinx_binary(tiny_bin):
    lm = read_sphinx_lm(tiny_bin)
    source = parse_arpa(TINY_ARPA)
    for n, grams in enumerate(lm.orders, start=1):
        found = listed(grams, lm.vocabulary)
        assert set(found) == set(source[n])
        for gram, (prob, backoff) in source[n].items():
            assert found[gram][0] == pytest.approx(prob, abs=1e-4)
            if n < 3:  # an omitted back-off is 0
                assert found[gram][1] == pytest.approx(backoff or 0.0, abs=1e-4)


@pytest.fixture(scope="module")
def shipped() -> tuple[SphinxLM, object]:
    """The shipped en-us LM as this reader sees it, and as pocketsphinx loads it."""
    from pocketsphinx import NGramModel

    return read_sphinx_lm(sphinx_lm_path()), NGramModel.readfile(str(sphinx_lm_path()))


def sphinx_log10(model: object, words: list[str]) -> float:
    """pocketsphinx's score of the last word after the others (it takes the newest word
    first, in log base 1.0001 units)."""
    return model.prob(words[::-1]) * LOG10_PER_UNIT


def test_reader_matches_pocketsphinx_on_listed_ngrams_of_the_shipped_lm(shipped):
    lm, model = shipped
    assert len(lm.orders) == 3 and len(lm.orders[0].words) == len(lm.vocabulary)
    generator = np.random.default_rng(0)
    for grams in lm.orders:
        for row in generator.integers(len(grams.words), size=200):
            words = [lm.vocabulary[i] for i in grams.words[row]]
            assert grams.log10_prob[row] == pytest.approx(sphinx_log10(model, words),
                                                          abs=2 * LOG10_PER_UNIT)


def test_reader_backoffs_score_unlisted_trigrams_as_pocketsphinx(shipped):
    """``P(c | a b) = bow(a b) * P(c | b)`` for a trigram not listed, ``P(c | b)`` itself
    listed or ``bow(b) * P(c)``: the back-offs read are the ones pocketsphinx uses."""
    lm, model = shipped
    unigrams, bigrams, trigrams = lm.orders
    size = len(lm.vocabulary)
    bigram_prob = dict(zip((bigrams.words[:, 0] * size + bigrams.words[:, 1]).tolist(),
                           bigrams.log10_prob.tolist(), strict=True))
    trigram_ids = set(((trigrams.words[:, 0] * size + trigrams.words[:, 1]) * size
                       + trigrams.words[:, 2]).tolist())
    generator = np.random.default_rng(1)
    checked = 0
    for row, c in zip(generator.integers(len(bigrams.words), size=300),
                      generator.integers(size, size=300), strict=True):
        a, b = bigrams.words[row].tolist()
        if (a * size + b) * size + c in trigram_ids:
            continue
        lower = bigram_prob.get(b * size + c,
                                unigrams.log10_backoff[b] + unigrams.log10_prob[c])
        words = [lm.vocabulary[i] for i in (a, b, c)]
        assert bigrams.log10_backoff[row] + lower == pytest.approx(
            sphinx_log10(model, words), abs=3 * LOG10_PER_UNIT)
        checked += 1
    assert checked > 250


def test_export_maps_words_to_the_recogniser_vocabulary(tiny_bin, tmp_path):
    write_arpa(read_sphinx_lm(tiny_bin), 3, tmp_path / "lm.arpa")
    sections = read_arpa(tmp_path / "lm.arpa")
    assert set(sections[1]) == {(BOS,), (EOS,), ("press",), ("one",), ("don't",), (UNK,)}
    assert ("<s>", "'bout") not in sections[2]  # n-grams of a dropped word go with it
    assert sections[2][("press", "one")] == pytest.approx((-0.3, -0.05), abs=1e-4)
    assert all(backoff is not None for n in (1, 2) for _, backoff in sections[n].values())
    assert sections[3][("<s>", "press", "one")][0] == pytest.approx(-0.1, abs=1e-4)


def test_export_cut_to_a_lower_order_drops_the_top_backoffs(tiny_bin, tmp_path):
    write_arpa(read_sphinx_lm(tiny_bin), 2, tmp_path / "lm.arpa")
    sections = read_arpa(tmp_path / "lm.arpa")
    assert set(sections) == {1, 2}
    assert sections[2][("press", "one")] == (pytest.approx(-0.3, abs=1e-4), None)


def test_cached_export_is_built_once(tiny_bin, data_cache, monkeypatch):
    monkeypatch.setattr(general_lm, "sphinx_lm_path", lambda: tiny_bin)
    first = general_arpa(3)
    stamp = first.stat().st_mtime_ns
    assert general_arpa(3) == first and first.stat().st_mtime_ns == stamp
    assert first.is_relative_to(data_cache)
    assert sorted(general_words(3)) == ["don't", "one", "press"]
    first.write_text("damaged")
    assert general_arpa(3) == first and read_arpa(first)[1]  # rebuilt, valid again


def test_missing_pocketsphinx_or_model_is_one_data_error(monkeypatch):
    monkeypatch.setattr(general_lm, "PACKAGE", "no_such_package_here")
    with pytest.raises(DataError, match="no_such_package_here is not installed"):
        sphinx_lm_path()
    monkeypatch.undo()
    monkeypatch.setattr(general_lm, "MODEL_MEMBER", "model/en-us/absent.lm.bin")
    with pytest.raises(DataError, match="missing from the installed pocketsphinx"):
        sphinx_lm_path()


def test_a_file_that_is_not_a_sphinx_trie_is_a_data_error(tmp_path):
    (tmp_path / "x.lm.bin").write_bytes(b"Darpa Trigram LM\0")
    with pytest.raises(DataError, match="not a sphinx trie LM"):
        read_sphinx_lm(tmp_path / "x.lm.bin")


def test_a_truncated_sphinx_trie_is_a_data_error(tiny_bin, tmp_path):
    (tmp_path / "cut.lm.bin").write_bytes(tiny_bin.read_bytes()[:-40])
    with pytest.raises(DataError, match="truncated sphinx trie LM"):
        read_sphinx_lm(tmp_path / "cut.lm.bin")


def test_order_outside_the_model_is_a_usage_error():
    for order in (1, 4):
        with pytest.raises(UsageError, match=f"order must be 2..3, got {order}"):
            general_arpa(order)


def spelled(text: str) -> list[int]:
    """A frame path for ``text``: each character once, a blank after each."""
    return [i for char in text for i in (VOCAB.index(char), BLANK_ID)]


def decode_words(arpa: Path, words: list[str], text: str) -> list[str]:
    """Flashlight's lexicon search (as :class:`tasks.asr.wordlm.WordDecoder` sets it up) over
    ``words`` with the LM ``arpa``, on a clean emission of ``text``."""
    from torchaudio.models.decoder import ctc_decoder

    tokens = ["<blank>" if i == BLANK_ID else "|" if s == " " else s
              for i, s in enumerate(VOCAB)]
    with tempfile.TemporaryDirectory() as folder:
        lexicon = Path(folder) / "lexicon.txt"
        lexicon.write_text("".join(f"{w}\t{' '.join(w)} |\n" for w in words))
        decoder = ctc_decoder(lexicon=str(lexicon), tokens=tokens, lm=str(arpa), nbest=1,
                              beam_size=20, lm_weight=1.0, word_score=0.0,
                              blank_token="<blank>", sil_token="|", unk_word=UNK)
    emission = emission_from_path(spelled(text))[None]
    return decoder(emission, torch.tensor([emission.shape[1]], dtype=torch.int32))[0][0].words


def test_shipped_words_kept_are_common_english_in_the_recogniser_vocabulary(shipped):
    vocabulary = shipped[0].vocabulary
    words = {w for w, kept in zip(vocabulary, kept_words(vocabulary), strict=True) if kept}
    assert {BOS, EOS, "the", "press", "one", "don't"} <= words
    assert not {"'bout", "parents'", "a.", "brother-in-law"} & words
    assert all(set(w) <= set(VOCAB[2:]) for w in words - {BOS, EOS})
    assert len(words) > 70_000


def test_flashlight_decodes_with_the_exported_lm(tiny_bin, data_cache, monkeypatch):
    monkeypatch.setattr(general_lm, "sphinx_lm_path", lambda: tiny_bin)
    assert decode_words(general_arpa(3), general_words(3), "press one") == ["press", "one"]


@pytest.mark.slow
def test_default_bigram_export_is_valid_arpa_and_decodes(data_cache):
    arpa = general_arpa()
    sections = read_arpa(arpa)
    assert set(sections) == {1, 2} and len(sections[2]) > 2_000_000
    words = general_words()
    assert {"the", "press", "one"} <= set(words) and len(sections[1]) == len(words) + 3
    assert all(set(w) <= set(VOCAB[2:]) for w in words)
    assert sections[2][("press", "one")][0] > sections[1][("one",)][0]  # context helps
    assert {w for gram in sections[2] for w in gram} <= {w for (w,) in sections[1]}
    stamp = arpa.stat().st_mtime_ns
    assert general_arpa() == arpa and arpa.stat().st_mtime_ns == stamp
    assert decode_words(arpa, general_words(), "press one") == ["press", "one"]
    assert math.isclose(sections[1][(BOS,)][0], -99)
