"""How the ``breakdown`` stage groups unseen-voice utterances by what the corpus manifest
records of each (:class:`tasks.asr.corpus.Utterance`): its synthesis engine and voice id, the
SNR band of the noise added to it, whether it went through the G.722 codec, and its kind of
text (``sentence`` or a short prompt kind). A field a corpus predates is :data:`MISSING`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MISSING = "not recorded"
CLEAN = "clean"
SNR_BANDS = ((25.0, ">=25 dB"), (15.0, "15-25 dB"), (float("-inf"), "<15 dB"))
"""(lowest SNR, label) of the noisy bands, highest first; an utterance without added noise
is :data:`CLEAN`."""
SNR_ORDER = (CLEAN, *(label for _, label in SNR_BANDS), MISSING)
"""The SNR groups from least to most noise, as tables list them."""


def snr_band(row: dict[str, Any]) -> str:
    if "snr_db" not in row:
        return MISSING
    if row["snr_db"] is None:
        return CLEAN
    return next(label for floor, label in SNR_BANDS if row["snr_db"] >= floor)


def engine(row: dict[str, Any]) -> str:
    """The synthesiser of a voice id ``engine:name``."""
    voice = row.get("voice")
    return voice.split(":")[0] if voice else MISSING


def codec(row: dict[str, Any]) -> str:
    if row.get("codec") is None:
        return MISSING
    return "G.722" if row["codec"] else "none"


def _field(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: MISSING if row.get(key) is None else str(row[key])


GROUPINGS: dict[str, Callable[[dict[str, Any]], str]] = {
    "all": lambda row: "all", "engine": engine, "voice": _field("voice"), "snr": snr_band,
    "codec": codec, "kind": _field("kind")}
"""Grouping name -> the group a manifest row falls in."""


def ordered(by: str, groups: set[str]) -> list[str]:
    """Groups in table order: SNR bands by noise, others alphabetically; missing last."""
    if by == "snr":
        return [g for g in SNR_ORDER if g in groups]
    return sorted(groups - {MISSING}) + ([MISSING] if MISSING in groups else [])
