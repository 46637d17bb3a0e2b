"""Rotten Tomatoes sentences rated by people: the short-text sentiment data set.

The sentences are those of Pang & Lee's movie-review (MR) set, each rated by ~20 people on
-4..+4 (Hutto & Gilbert, ICWSM 2014). Their mean rating gives both the usual binary polarity task
and a five-class one (:func:`label_scores`). The file ships inside the vaderSentiment 3.3.2 sdist
(the wheel lacks it), the only carrier reachable from machines without web access; GitHub is the
fallback source for users who have it. Both are verified against one sha256 of the member's bytes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from suite.data import PyPIMember, RemoteFile, URLMember, text_lines
from suite.errors import DataError

DATASET = "rotten-tomatoes"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
UPSTREAM_URL = ("https://github.com/cjhutto/vaderSentiment/raw/master/additional_resources/"
                "hutto_ICWSM_2014.tar.gz")

RATINGS = RemoteFile(
    path="sentiment/movieReviewSnippets_GroundTruth.txt",
    sha256="c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
    sources=(
        PyPIMember("vaderSentiment", "3.3.2", MEMBER, sdist=True, inner=INNER_ARCHIVE),
        URLMember(UPSTREAM_URL, member=MEMBER),
    ),
)

CLASS_NAMES: dict[int, tuple[str, ...]] = {
    2: ("negative", "positive"),
    5: ("very negative", "negative", "neutral", "positive", "very positive"),
}


def read_ratings(path: Path) -> tuple[list[str], list[float]]:
    """Parse ``id<TAB>mean_score<TAB>text`` lines into texts and mean ratings.

    The bytes are UTF-8 (a handful of accented names), not latin-1 as one might guess; the
    sha256 pins them, so a strict decode is safe. HTML entities (``&amp;``) left over from the
    web pages are unescaped. A sentence that occurs twice is kept once (first rating), so the
    same text can never sit in both train and test.
    """
    texts: list[str] = []
    scores: list[float] = []
    seen: set[str] = set()
    for number, line in text_lines(path):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(f"{path}:{number}: expected 'id<TAB>score<TAB>text', "
                            f"got {len(fields)} field(s)")
        try:
            score = float(fields[1])
        except ValueError as err:
            raise DataError(f"{path}:{number}: score {fields[1]!r} is not a number") from err
        text = html.unescape(fields[2]).strip()
        if text and text not in seen:
            seen.add(text)
            texts.append(text)
            scores.append(score)
    if not texts:
        raise DataError(f"{path}: no rated sentences")
    return texts, scores


def label_scores(scores: Sequence[float], classes: int) -> list[int | None]:
    """Map mean ratings to labels; ``None`` marks a sentence the task leaves out.

    Binary: positive iff the mean is > 0; a mean of exactly 0 has no polarity and is dropped.
    Five classes, symmetric about 0 with bins at -2, -0.5, 0.5, 2: very negative (<= -2),
    negative (<= -0.5), neutral (strictly between -0.5 and 0.5), positive (>= 0.5) and very
    positive (>= 2).
    """
    if classes == 2:
        return [None if s == 0 else int(s > 0) for s in scores]
    if classes == 5:
        return [0 if s <= -2 else 1 if s <= -0.5 else 2 if s < 0.5 else 3 if s < 2 else 4
                for s in scores]
    raise ValueError(f"classes must be one of {sorted(CLASS_NAMES)}, got {classes}")
