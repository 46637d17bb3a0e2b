"""A lexicon prior: each word's human-rated valence, aligned with the model's subword tokens.

Trained from scratch on ~8k sentences, the classifier sees many polar words only once or twice
in training (or only at test time), so it cannot learn what they mean. The VADER lexicon
(Hutto & Gilbert, ICWSM 2014) supplies that from people instead: ~7.5k English words, slang and
emoticons, each rated by 10 people on -4..+4. It is human-rated data, not pretrained weights,
and ships in the same vaderSentiment 3.3.2 package as the sentence ratings (sdist and wheel
hold the same bytes; both are verified against one sha256).

Valences are scaled to [-1, 1]. Every subword piece of a word gets that word's valence, so a
word the tokenizer cuts into rare pieces still carries its polarity; words not in the lexicon
get 0. Words are those of the tokenizer's pre-tokeniser (whitespace and punctuation), so
lexicon entries that span punctuation or spaces (emoticons, ``can't stand``) never match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tokenizers import Encoding

from suite.data import PyPIMember, RemoteFile, State, URLMember, fetch, text_lines
from suite.errors import DataError

LEXICON_MEMBER = "vaderSentiment/vader_lexicon.txt"
UPSTREAM_URL = f"https://github.com/cjhutto/vaderSentiment/raw/master/{LEXICON_MEMBER}"
MAX_RATING = 4.0  # ratings run from -4 (extremely negative) to +4 (extremely positive)

LEXICON = RemoteFile(
    path="sentiment/vader_lexicon.txt",
    sha256="1ec9c6e9ee19aade328f8beb393a6afa71a5bb3acf7d3cc22d4ef568df374bf5",
    sources=(
        # The sdist is the one the ratings come from, so a prepared cache needs no download.
        PyPIMember("vaderSentiment", "3.3.2", f"vaderSentiment-3.3.2/{LEXICON_MEMBER}",
                   sdist=True),
        PyPIMember("vaderSentiment", "3.3.2", LEXICON_MEMBER),
        URLMember(UPSTREAM_URL),
    ),
)


def read_lexicon(path: Path) -> dict[str, float]:
    """Parse ``token<TAB>mean<TAB>sd<TAB>ratings`` lines into lower-cased token -> mean / 4.

    The file is UTF-8 (two emoticons use ``Þ``) with CRLF line ends. A token listed more than
    once (the file repeats a few, and lower-casing merges ``:D`` with ``:d``) gets the mean of
    its ratings. A line without a numeric mean in -4..4 raises :class:`DataError` naming it.
    """
    ratings: dict[str, list[float]] = {}
    for number, line in text_lines(path):
        fields = line.split("\t")
        try:
            mean = float(fields[1]) if len(fields) == 4 and fields[0] else None
        except ValueError:
            mean = None
        if mean is None or not -MAX_RATING <= mean <= MAX_RATING:
            raise DataError(f"{path}:{number}: expected 'token<TAB>mean<TAB>sd<TAB>ratings' "
                            f"with a mean in -4..4, got {line[:60]!r}")
        ratings.setdefault(fields[0].lower(), []).append(mean)
    if not ratings:
        raise DataError(f"{path}: no lexicon entries")
    return {token: sum(means) / len(means) / MAX_RATING for token, means in ratings.items()}


def fetch_lexicon() -> Path:
    """The VADER lexicon's path in the data cache (fetched again when missing or damaged)."""
    return fetch(LEXICON)


def lexicon_state() -> State:
    """The cached lexicon's state (missing, ready or corrupt); fetches nothing."""
    return LEXICON.state()


def load_lexicon() -> dict[str, float]:
    """Fetch the VADER lexicon into the data cache (verified; once) and read it."""
    return read_lexicon(fetch_lexicon())


def word_valence(encodings: Sequence[Encoding], texts: Sequence[str],
                 lexicon: Mapping[str, float]) -> list[list[float]]:
    """Per-token valence for each text, aligned with its encoding's ``ids``.

    ``encodings[i]`` is the tokenizer's output for ``texts[i]``. A word is recovered from the
    original text: the span from its first piece's start to its last piece's end (``word_ids``
    group the pieces, ``offsets`` are character positions in the text). It is looked up
    lower-cased, as the tokenizer's normaliser lower-cases; every piece gets the word's
    valence, an unknown word and a special token (no word) get 0.
    """
    valences = []
    for encoding, text in zip(encodings, texts, strict=True):
        spans: dict[int, tuple[int, int]] = {}
        for word, (start, end) in zip(encoding.word_ids, encoding.offsets, strict=True):
            if word is not None:
                spans[word] = (spans.get(word, (start, end))[0], end)
        words = {word: text[start:end].lower() for word, (start, end) in spans.items()}
        valences.append([0.0 if word is None else lexicon.get(words[word], 0.0)
                         for word in encoding.word_ids])
    return valences
