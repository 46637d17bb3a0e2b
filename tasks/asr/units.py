"""Output units of the recogniser: characters, or subword pieces learned by BPE.

CTC needs at least one encoder frame per output symbol (two between repeats). Characters fit
the encoder's 4x subsampling (25 frames a second); at 8x (12.5 frames a second) speech has
more characters than frames, but fewer word pieces (:func:`tasks.asr.decode.ctc_min_frames`).

The setting is a string: ``"char"`` (the 28 symbols of :data:`tasks.asr.text.VOCAB`) or
``"bpe-N"``: ``N`` outputs, the CTC blank at id 0 then the pieces of a byte-pair encoding
(HF ``tokenizers``) learned from the training transcripts. Every character of the vocabulary
is one of its pieces, so any normalised text encodes; each word's first piece starts with
``"▁"`` (SentencePiece's metaspace), so decoding restores the spaces exactly. The learned
tokenizer travels inside checkpoints as its JSON (:meth:`OutputUnits.to_str`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from suite.errors import DataError, UsageError
from tasks.asr import text as chars
from tasks.asr.text import BLANK_ID, VOCAB

CHAR = "char"
"""The character units: :data:`tasks.asr.text.VOCAB`."""

BLANK_TOKEN = "<blank>"
"""The CTC blank among the pieces of a BPE tokenizer (its special token, id 0)."""

WORD_START = "\u2581"
"""Metaspace "▁": the first piece of every word starts with it, standing for the space before."""

_ALPHABET = [WORD_START, *(c for c in VOCAB[BLANK_ID + 1:] if c != " ")]
"""The single-character pieces every BPE vocabulary holds: "▁", apostrophe and a-z."""

_BPE_SPEC = re.compile(r"bpe-(\d+)")


def units_size(spec: str) -> int:
    """Output symbols of ``spec`` (CTC blank included): 28 for ``"char"``, N for ``"bpe-N"``."""
    if spec == CHAR:
        return len(VOCAB)
    match = _BPE_SPEC.fullmatch(spec)
    smallest = len(_ALPHABET) + 1
    if match is None or int(match.group(1)) < smallest:
        raise UsageError(f"model.units={spec!r}: expected 'char' or 'bpe-N' with N >= "
                         f"{smallest} (the blank and {len(_ALPHABET)} single characters)")
    return int(match.group(1))


class OutputUnits:
    """The CTC output symbols of one model and the map between them and transcripts.

    Attributes:
        spec: ``"char"`` or ``"bpe-N"``.
        symbols: each output id's name, blank first: :data:`~tasks.asr.text.VOCAB`, or the
            pieces (``"▁the"``, ``"at"``); what a checkpoint's ``vocab`` lists.
        texts: what each id writes into a transcript (``"▁the"`` -> ``" the"``, the blank
            ``""``); the decoders join these.
        word_boundary: the symbol written between words (``" "``) for characters; None for
            pieces, whose word starts carry the boundary.
    """

    def __init__(self, spec: str, tokenizer: Tokenizer | None = None) -> None:
        self.spec, self.tokenizer = spec, tokenizer
        if tokenizer is None:
            self.symbols, self.word_boundary = list(VOCAB), " "
            self.texts = ["" if i == BLANK_ID else s for i, s in enumerate(VOCAB)]
            return
        self.symbols = [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]
        self.word_boundary = None
        self.texts = ["" if i == BLANK_ID else s.replace(WORD_START, " ")
                      for i, s in enumerate(self.symbols)]

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> torch.Tensor:
        """A normalised transcript's ids ``(L,)`` (never the blank)."""
        _check_normalized([text])
        if self.tokenizer is None:
            return chars.encode(text)
        return torch.tensor(self.tokenizer.encode(text).ids, dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The transcript of ``ids`` (blanks skipped, no CTC repeat-collapsing)."""
        if self.tokenizer is None:
            return chars.decode(ids)
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def spell(self, word: str) -> list[str]:
        """A word's symbols as the model writes it inside a transcript: its characters and the
        boundary after it, or its pieces (the first one starting with "▁")."""
        if self.tokenizer is None:
            return [*word, " "]
        _check_normalized([word])
        return self.tokenizer.encode(word).tokens

    def to_str(self) -> str | None:
        """The tokenizer as JSON for a checkpoint; None for characters (nothing to store)."""
        return None if self.tokenizer is None else self.tokenizer.to_str()


CHAR_UNITS = OutputUnits(CHAR)
"""The character units (the default, and all checkpoints from before subword units)."""


def _check_normalized(texts: Iterable[str]) -> None:
    allowed = set(VOCAB[BLANK_ID + 1:])
    for text in texts:
        if not set(text) <= allowed:
            raise DataError(f"transcript {text!r} has characters outside the ASR vocabulary "
                            f"{sorted(set(text) - allowed)}; normalize() it first")


def train_units(spec: str, texts: Sequence[str]) -> OutputUnits:
    """The units ``spec`` names, learned from the training split's transcripts ``texts``.

    BPE (deterministic: the same texts give the same pieces in any process) over words split
    at spaces, each word prefixed with "▁"; the blank is its one special token (id 0) and the
    single characters its initial alphabet, so every normalised text encodes without an
    unknown piece.
    """
    size = units_size(spec)
    if spec == CHAR:
        return CHAR_UNITS
    _check_normalized(texts)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=WORD_START,
                                                       prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=WORD_START, prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=[BLANK_TOKEN],
                                  initial_alphabet=_ALPHABET, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.get_vocab_size() != size:
        raise DataError(f"model.units={spec}: the {len(texts)} training transcripts yield only "
                        f"{tokenizer.get_vocab_size()} pieces; use bpe-"
                        f"{tokenizer.get_vocab_size()} or fewer")
    return OutputUnits(spec, tokenizer)


def load_units(spec: str, serialized: str | None) -> OutputUnits:
    """The units of a checkpoint written with ``spec`` and its tokenizer JSON (None for
    characters), checked: a BPE tokenizer must have ``N`` pieces, the blank at id 0 and every
    single character."""
    size = units_size(spec)
    if spec == CHAR:
        return CHAR_UNITS
    if serialized is None:
        raise DataError(f"checkpoint of a model.units={spec} model carries no tokenizer")
    tokenizer = Tokenizer.from_str(serialized)
    missing = [p for p in _ALPHABET if tokenizer.token_to_id(p) is None]
    if (tokenizer.get_vocab_size() != size or tokenizer.token_to_id(BLANK_TOKEN) != BLANK_ID
            or missing):
        raise DataError(f"checkpoint tokenizer has {tokenizer.get_vocab_size()} pieces, blank "
                        f"id {tokenizer.token_to_id(BLANK_TOKEN)}, lacking {missing}; expected "
                        f"{size} pieces for model.units={spec}, blank id {BLANK_ID}, every "
                        "single character")
    return OutputUnits(spec, tokenizer)
