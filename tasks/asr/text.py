"""Transcript normalisation and the character vocabulary of the ASR head.

Both the synthetic training text and the real-speech (Asterisk) references go through
:func:`normalize`, so the model is scored against what a speaker says, not how it is written:
lowercase ``a-z``, apostrophe and single spaces only, with numbers, symbols and acronyms written
out as words. Telephone-style numbers (after "dial", "extension", "password", ... or written
with dashes) are read digit by digit, as the Asterisk prompts say them ("dial 500" ->
"dial five zero zero"); other numbers are read as cardinals ("42" -> "forty two").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import torch

BLANK_SYMBOL = "_"
"""How the CTC blank is written; it never appears in a transcript."""

VOCAB: list[str] = [BLANK_SYMBOL, " ", "'", *"abcdefghijklmnopqrstuvwxyz"]
"""Output symbols of the recogniser: CTC blank first, then space, apostrophe and a-z."""

BLANK_ID = 0
"""The CTC blank's index in :data:`VOCAB`, i.e. its output of the model."""

_INDEX = {char: i for i, char in enumerate(VOCAB)}

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_SYMBOLS = {"#": " pound ", "*": " star ", "%": " percent ", "&": " and ", "@": " at ",
            "+": " plus ", "=": " equals ", "$": " dollars ", "/": " slash "}
# Acronyms people say as a word; any other all-caps token of 2-5 letters is spelled out.
_WORD_ACRONYMS = frozenset({"SIP", "DAHDI", "NASA", "NATO", "UNESCO", "UNICEF", "OPEC", "AIDS",
                            "LASER", "RADAR", "SCUBA", "FIFA", "ASCII"})
_PHONE_WORDS = r"dial|dialing|extension|password|passcode|pin|mailbox|number|code|call|press"
_TLDS = r"com|org|net|edu|gov|io|uk|de"


def number_to_words(n: int) -> str:
    """Cardinal reading of a non-negative integer: ``2375`` -> "two thousand three hundred
    seventy five" (no "and", as in US usage)."""
    if n < 0:
        raise ValueError(f"number_to_words needs n >= 0, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            words = f"{number_to_words(head)} {name}"
            return words + (f" {number_to_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    """Ordinal reading: ``21`` -> "twenty first", ``40`` -> "fortieth"."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*words[:-1], last])


def digits_to_words(digits: str) -> str:
    """Digit-by-digit reading used for phone numbers, PINs and extensions: "0800" ->
    "zero eight zero zero"."""
    return " ".join(_ONES[int(d)] for d in digits if d.isdigit())


def _year_words(n: int) -> str:
    """Years read in pairs: 1990 -> "nineteen ninety", 1905 -> "nineteen oh five"."""
    head, tail = divmod(n, 100)
    if tail == 0:
        return f"{number_to_words(head)} hundred"
    tail_words = number_to_words(tail) if tail >= 10 else f"oh {_ONES[tail]}"
    return f"{number_to_words(head)} {tail_words}"


def _integer_words(token: str) -> str:
    """Integers without context: leading zeros or more than nine digits are read digit by
    digit (codes, account numbers), 1100-1999 as years, everything else as a cardinal."""
    if len(token) > 9 or (len(token) > 1 and token.startswith("0")):
        return digits_to_words(token)
    value = int(token)
    if len(token) == 4 and 1100 <= value <= 1999:
        return _year_words(value)
    return number_to_words(value)


def _decimal_words(match: re.Match[str]) -> str:
    whole, frac = match.group(1), match.group(2)
    return f" {_integer_words(whole)} point {digits_to_words(frac)} "


def _money_words(match: re.Match[str]) -> str:
    dollars, cents = int(match.group(1).replace(",", "")), match.group(2)
    words = f"{number_to_words(dollars)} dollar{'' if dollars == 1 else 's'}"
    if cents and int(cents):
        words += f" and {number_to_words(int(cents))} cent{'' if int(cents) == 1 else 's'}"
    return f" {words} "


def _spell_acronym(match: re.Match[str]) -> str:
    token = match.group(0)
    return token if token in _WORD_ACRONYMS else " " + " ".join(token.lower()) + " "


def _ascii(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u2013", "-")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def normalize(text: str) -> str:
    """Write ``text`` as it is spoken, in the characters of :data:`VOCAB` (minus the blank).

    The order of the rules matters: patterns that give digits a special reading (phone
    numbers, money, percentages, ordinals, decimals) run before plain integers do.
    """
    text = _ascii(text)
    # Web addresses and dotted abbreviations: "www.asterisk.org", "A.M.", "U.S.A."
    text = re.sub(rf"\b((?:\w+\.)+(?:{_TLDS}))\b",
                  lambda m: " " + m.group(1).replace(".", " dot ") + " ", text)
    text = re.sub(r"\bwww\b", "w w w", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(?:[A-Za-z]\.){2,}", lambda m: " " + " ".join(m.group(0)[::2]) + " ",
                  text)
    # Telephone numbers: written with separators, or after a word like "dial"/"extension".
    text = re.sub(r"(?<![\d.])\(?\d{3}\)?[ -]\d{3}-\d{4}\b|\b\d{3}-\d{4}\b",
                  lambda m: f" {digits_to_words(m.group(0))} ", text)
    text = re.sub(rf"\b({_PHONE_WORDS})(\s+)(\d{{3,}})\b",
                  lambda m: f"{m.group(1)}{m.group(2)}{digits_to_words(m.group(3))}", text,
                  flags=re.IGNORECASE)
    text = re.sub(r"\$\s?(\d[\d,]*)(?:\.(\d\d))?\b", _money_words, text)
    text = re.sub(r"(\d)\s*%", r"\1 percent ", text)
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: f" {ordinal_words(int(m.group(1)))} ",
                  text)
    text = re.sub(r"\b(\d{1,3}(?:,\d{3})+)\b", lambda m: m.group(1).replace(",", ""), text)
    text = re.sub(r"(\d+)\.(\d+)", _decimal_words, text)
    text = re.sub(r"(\d)([A-Za-z])", r"\1 \2", text)  # "3D" -> "3 D"
    text = re.sub(r"([A-Za-z])(\d)", r"\1 \2", text)
    text = re.sub(r"\d+", lambda m: f" {_integer_words(m.group(0))} ", text)
    text = re.sub(r"\b[A-Z]{2,5}\b", _spell_acronym, text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = text.lower()
    # Keep an apostrophe only inside a word ("don't", "party's"); quotes become spaces.
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


def encode(text: str) -> torch.Tensor:
    """Map a normalised transcript to vocabulary indices (never the blank)."""
    try:
        return torch.tensor([_INDEX[c] for c in text], dtype=torch.long)
    except KeyError as err:
        raise ValueError(f"character {err.args[0]!r} is not in the vocabulary; "
                         f"normalize() the text first: {text!r}") from None


def decode(indices: Sequence[int] | torch.Tensor) -> str:
    """Map indices back to text, skipping blanks (no CTC repeat-collapsing here)."""
    return "".join(VOCAB[int(i)] for i in indices if int(i) != 0)
