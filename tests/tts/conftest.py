"""Fixtures of the TTS tests: a tiny flite corpus, rendered once per test module.

The sentences stand in for WordNet's (no package download); they are long enough that
joining 3-5 of them can make a long held-out item (10-20 s).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.tts import corpus, data

_ADJECTIVES = ("red", "small", "quiet", "happy", "old", "bright")
_NOUNS = ("cat", "farmer", "teacher", "river", "engine", "garden")
_VERBS = ("watched", "followed", "painted", "visited")
TINY_SENTENCES = [f"the {a} {n} {v} the house" for a, n, v in
                  itertools.product(_ADJECTIVES, _NOUNS, _VERBS)][:80]
TINY = {"corpus_size": 12, "val_size": 4, "seed": 0}
"""The tiny corpus: 12 training and 4 validation utterances; 3 short and 1 long held out."""
TINY_TEST_SIZES = {"SHORT_ITEMS": 3, "LONG_ITEMS": 1}


def shrink(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make corpus builds tiny: the stand-in sentences and small held-out sets."""
    monkeypatch.setattr(corpus, "sentences", lambda: list(TINY_SENTENCES))
    for name, value in TINY_TEST_SIZES.items():
        monkeypatch.setattr(data, name, value)


@pytest.fixture
def tiny_sentences(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Builds in this test are tiny (see :func:`shrink`); the stand-in sentences."""
    shrink(monkeypatch)
    return list(TINY_SENTENCES)


@dataclass(frozen=True)
class TinyCorpus:
    """The rendered tiny corpus: its cache, its ``features.pt``, the ``TTSDataModule``
    arguments that name it (``settings``) and the sentences it was drawn from."""

    cache: Path
    features: Path
    settings: dict
    sentences: list[str]

    def module(self, **overrides: object) -> data.TTSDataModule:
        """A data module on the tiny corpus (set up); ``overrides`` go to its ``__init__``."""
        module = data.TTSDataModule(**{**TINY, "batch_size": 4, **overrides})
        module.setup("fit")
        return module


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyCorpus]:
    """The tiny corpus rendered by flite into a private data cache, which stays
    ``SUITE_DATA_DIR`` for the test module's life."""
    if shutil.which("flite") is None:
        pytest.skip("flite not installed (Debian package `flite`)")
    cache = tmp_path_factory.mktemp("tts-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUITE_DATA_DIR", str(cache))
        shrink(patch)
        features = data.prepare_corpus(**TINY)
        yield TinyCorpus(cache, features, dict(TINY), list(TINY_SENTENCES))
