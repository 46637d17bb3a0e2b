"""Short texts of the kinds real telephone prompts contain, for the synthetic ASR corpus.

Telephone prompts (like the Asterisk test set) are mostly short: isolated words, digit strings,
spelled letters and short commands, beside some sentences. A recogniser trained only on
sentences has never heard a word said on its own, so the corpus mixes these kinds in
(:data:`KIND_WEIGHTS`). Isolated words are drawn from the corpus's own sentences; commands come
from the small word lists below, written for this purpose - never from a test transcript.

Every text is written as :func:`tasks.asr.text.normalize` writes it (the transcript).
:func:`spoken_form` gives what a synthesiser is handed to say it: the same except for spelled
letters, where "x a y" would be read with the article "a" ("uh") and is handed over as
"X, A, Y", which every engine reads as the letters' names.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence

from suite.errors import UsageError
from tasks.asr.text import digits_to_words, normalize

KIND_WEIGHTS = {"sentence": 0.77, "digits": 0.07, "number": 0.04, "word": 0.05,
                "letters": 0.03, "command": 0.04}
"""Share of each kind of text among drawn texts; all but "sentence" are short prompts."""
SHORT_KINDS = tuple(k for k in KIND_WEIGHTS if k != "sentence")

_KEYS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "star", "pound")
_ACTIONS = ("repeat these options", "return to the main menu", "leave a message",
            "reach an operator", "hear your messages", "change your greeting",
            "confirm your choice", "cancel", "start over", "save this message",
            "skip this message", "go back", "continue", "transfer this call",
            "check your balance", "hear the weather", "record a new name", "pay a bill")
_ITEMS = ("password", "pin", "account number", "extension", "mailbox number", "zip code",
          "date of birth", "phone number", "member number", "passcode", "card number",
          "order number", "room number")
_PHRASES = ("please hold", "please wait", "goodbye", "thank you", "hello", "yes", "no", "stop",
            "help", "operator", "main menu", "one moment", "hold on", "good morning",
            "good evening", "not now", "that's right", "that is not right", "sign in",
            "log out", "call me back", "next message", "previous message", "no new messages",
            "welcome back", "please listen carefully", "wrong number", "the line is busy",
            "speak after the tone", "invalid entry", "access denied", "stay on the line",
            "your call is important to us", "all lines are busy", "try later", "hang up now")
_TEMPLATES = ("press {key}", "press {key} to {action}", "to {action} press {key}",
              "to {action} press {key} now", "enter your {item}", "please enter your {item}",
              "say your {item}", "your {item} please", "{item} accepted", "wrong {item}")


def lemma_like_words(sentences: Iterable[str]) -> list[str]:
    """The distinct words of normalised ``sentences``, sorted, as candidates to say alone:
    letters only (no apostrophe) and two or more of them (single letters are spelled)."""
    return sorted({w for s in sentences for w in s.split() if len(w) > 1 and w.isalpha()})


def digit_string(rng: random.Random) -> str:
    """A phone number, PIN or code read digit by digit: "zero eight zero zero"."""
    return digits_to_words("".join(rng.choice("0123456789") for _ in range(rng.randint(3, 10))))


def number(rng: random.Random) -> str:
    """A cardinal ("forty two", "three thousand ...") or a decimal ("seven point five")."""
    if rng.random() < 0.625:
        return normalize(str(rng.choice([rng.randint(0, 99), rng.randint(100, 9999),
                                         rng.randint(10_000, 10**7)])))
    return normalize(f"{rng.randint(0, 999)}.{rng.randint(0, 99)}")


def spelled_letters(rng: random.Random) -> str:
    """Two to five letters said by name, written as normalize writes a spelled acronym."""
    letters = rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=rng.randint(2, 5))
    return normalize(", ".join(letters))


def command(rng: random.Random) -> str:
    """A short menu instruction or phrase: "press four to leave a message", "please hold"."""
    if rng.random() < 0.5:
        return normalize(rng.choice(_PHRASES))
    template = rng.choice(_TEMPLATES)
    return normalize(template.format(key=rng.choice(_KEYS), action=rng.choice(_ACTIONS),
                                     item=rng.choice(_ITEMS)))


def short_text(kind: str, rng: random.Random, words: Sequence[str]) -> str:
    """A text of the short ``kind`` (one of :data:`SHORT_KINDS`); ``words`` are the isolated
    words to draw from (:func:`lemma_like_words`)."""
    if kind == "digits":
        return digit_string(rng)
    if kind == "number":
        return number(rng)
    if kind == "word":
        return rng.choice(words) if words else ""
    if kind == "letters":
        return spelled_letters(rng)
    if kind == "command":
        return command(rng)
    raise UsageError(f"short text kind {kind!r}: expected one of {', '.join(SHORT_KINDS)}")


def texts(rng: random.Random, sentences: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Endless ``(kind, text)`` pairs drawn in :data:`KIND_WEIGHTS` proportions from ``rng``:
    1-3 consecutive normalised ``sentences`` joined (they are read in order), or a short prompt
    (empty if there is nothing to draw from: the caller skips it)."""
    words = lemma_like_words(sentences)
    kinds, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
    cursor = 0
    while True:
        kind = rng.choices(kinds, weights=weights)[0]
        if kind != "sentence":
            yield kind, short_text(kind, rng, words)
            continue
        parts = rng.choices([1, 2, 3], weights=[0.5, 0.3, 0.2])[0]
        yield kind, " ".join(sentences[(cursor + i) % len(sentences)] for i in range(parts))
        cursor += parts


def spoken_form(kind: str, text: str) -> str:
    """What a synthesiser is given to say the transcript ``text`` of ``kind``; its
    normalisation is ``text`` again."""
    if kind == "letters":
        return ", ".join(text.upper().split())
    return text
