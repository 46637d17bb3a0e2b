"""CTC decoding: greedy, and prefix beam search with an optional character n-gram LM.

CTC emits one symbol (or the blank, index 0) per encoder frame; a transcript is read off a
frame path by merging repeated symbols and then dropping blanks ("aa_a_" -> "aa"). A symbol
is a character or a word piece (:mod:`tasks.asr.units`); the decoders take the text each one
writes (``vocab``), so they serve either. Greedy decoding takes the best symbol per frame.
Prefix beam search instead keeps the ``beam`` most probable *label sequences* (prefixes),
summing over all frame paths that collapse to each, with separate probabilities for paths
ending in a blank and in a symbol so that "a_a" and "aa" are told apart. Shallow fusion adds
``alpha * log P_LM(prefix)`` from a character n-gram trained on the training transcripts,
plus ``beta`` per character to offset the LM's preference for short outputs; a word piece is
scored character by character.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from tasks.asr.text import BLANK_ID, VOCAB

_BOS, _EOS = "^", "$"


def collapse(path: Sequence[int]) -> list[int]:
    """Merge repeats, then drop blanks: the CTC many-to-one map from frame paths to labels."""
    out, previous = [], None
    for symbol in path:
        if symbol != previous and symbol != BLANK_ID:
            out.append(int(symbol))
        previous = symbol
    return out


def to_text(labels: Iterable[int], vocab: Sequence[str] = VOCAB) -> str:
    return " ".join("".join(vocab[i] for i in labels).split())


def greedy_decode(log_probs: Tensor, lengths: Tensor, vocab: Sequence[str] = VOCAB
                  ) -> list[str]:
    """Best symbol per frame, collapsed; ``log_probs`` ``(B, T, V)``, ``lengths`` ``(B,)``."""
    best = log_probs.argmax(-1).tolist()  # (B, T)
    return [to_text(collapse(row[:n]), vocab) for row, n in zip(best, lengths.tolist(),
                                                                strict=True)]


class CharNGram:
    """Character n-gram LM with interpolated Witten-Bell smoothing.

    ``P(c | h) = (C(h c) + N1+(h .) * P(c | h')) / (C(h) + N1+(h .))`` where ``h'`` drops the
    oldest character of ``h`` and the recursion ends in the uniform distribution; histories
    start with ``^`` padding and every sentence ends with ``$``.
    """

    def __init__(self, texts: Iterable[str], order: int = 6) -> None:
        self.order = order
        self.counts: dict[str, Counter] = defaultdict(Counter)
        symbols = set(_EOS)
        for text in texts:
            padded = _BOS * (order - 1) + text + _EOS
            symbols.update(text)
            for i in range(order - 1, len(padded)):
                for n in range(order):  # histories of length 0 .. order-1
                    self.counts[padded[i - n:i]][padded[i]] += 1
        self.vocab_size = len(symbols)
        self._cache: dict[tuple[str, str], float] = {}

    def _prob(self, history: str, symbol: str) -> float:
        lower = (self._prob(history[1:], symbol) if history else 1.0 / self.vocab_size)
        seen = self.counts.get(history)
        if not seen:
            return lower
        total, types = sum(seen.values()), len(seen)
        return (seen[symbol] + types * lower) / (total + types)

    def log_prob(self, prefix: str, symbol: str) -> float:
        """``log P(symbol | last order-1 characters of prefix)``; ``symbol`` may be ``$``."""
        history = (_BOS * (self.order - 1) + prefix)[-(self.order - 1):] if self.order > 1 else ""
        key = (history, symbol)
        if key not in self._cache:
            self._cache[key] = math.log(self._prob(history, symbol))
        return self._cache[key]


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def _fused_score(lm: CharNGram, written: str, added: str, alpha: float, beta: float) -> float:
    """Shallow-fusion score of writing ``added`` after the transcript ``written``: the LM
    scores each character in turn (so one character LM serves any output units), ``beta``
    rewards each one."""
    score = 0.0
    for char in added:
        score += alpha * lm.log_prob(written, char) + beta
        written += char
    return score


def prefix_beam_search(log_probs: Tensor, beam: int = 8, lm: CharNGram | None = None,
                       alpha: float = 0.5, beta: float = 1.0, prune: float = -8.0,
                       vocab: Sequence[str] = VOCAB) -> str:
    """CTC prefix beam search over one utterance's ``log_probs`` ``(T, V)``.

    ``vocab[s]`` is the text output symbol ``s`` writes: a character, or a word piece
    (``" the"`` for a piece that starts a word). A prefix is a sequence of symbols; symbols
    below ``prune`` (log-prob) at a frame are not expanded. With ``lm``, a prefix scores
    ``log P_CTC + alpha * log P_LM(text) + beta * len(text)`` over the characters of its
    transcript (a leading space is not part of it); the end-of-sentence probability is added
    before the final choice.
    """
    frames = log_probs.float().cpu().tolist()
    # prefix (symbol ids) -> (log P(paths ending in blank), log P(paths ending in a symbol))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    written: dict[tuple[int, ...], str] = {(): ""}
    lm_score: dict[tuple[int, ...], float] = {(): 0.0}

    def extend(prefix: tuple[int, ...], symbol: int) -> tuple[int, ...]:
        new = (*prefix, symbol)
        if new not in written:
            text = written[prefix]
            added = vocab[symbol] if text else vocab[symbol].lstrip(" ")
            written[new] = text + added
            lm_score[new] = lm_score[prefix] + (_fused_score(lm, text, added, alpha, beta)
                                                if lm is not None else 0.0)
        return new

    for row in frames:
        candidates = [s for s in range(1, len(row)) if row[s] > prune]
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (p_blank, p_symbol) in beams.items():
            total = _logsumexp(p_blank, p_symbol)
            entry = nxt[prefix]
            entry[0] = _logsumexp(entry[0], total + row[BLANK_ID])
            last = prefix[-1] if prefix else None
            for s in candidates:
                new = extend(prefix, s)
                if s == last:  # "a" + "a" stays "a"; only "a_" + "a" makes "aa"
                    entry[1] = _logsumexp(entry[1], p_symbol + row[s])
                    nxt[new][1] = _logsumexp(nxt[new][1], p_blank + row[s])
                else:
                    nxt[new][1] = _logsumexp(nxt[new][1], total + row[s])
        ranked = sorted(nxt.items(), key=lambda kv: _logsumexp(*kv[1]) + lm_score[kv[0]],
                        reverse=True)
        beams = {p: (v[0], v[1]) for p, v in ranked[:beam]}

    def final(prefix: tuple[int, ...]) -> float:
        end = alpha * lm.log_prob(written[prefix], _EOS) if lm is not None else 0.0
        return _logsumexp(*beams[prefix]) + lm_score[prefix] + end

    return " ".join(written[max(beams, key=final)].split())


def beam_decode(log_probs: Tensor, lengths: Tensor, beam: int = 8, lm: CharNGram | None = None,
                alpha: float = 0.5, beta: float = 1.0, vocab: Sequence[str] = VOCAB
                ) -> list[str]:
    """:func:`prefix_beam_search` on each utterance of ``(B, T, V)`` log-probs."""
    return [prefix_beam_search(lp[:n], beam, lm, alpha, beta, vocab=vocab)
            for lp, n in zip(log_probs, lengths.tolist(), strict=True)]


def ctc_min_frames(targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Fewest frames a CTC path for each target needs ``(B,)``: one per label, plus one blank
    between each pair of equal neighbours (``"aa"`` needs ``a _ a``). ``targets`` ``(B, L)``
    is padded past ``target_lengths``."""
    valid = torch.arange(targets.shape[1], device=targets.device) < target_lengths[:, None]
    repeats = (targets[:, 1:] == targets[:, :-1]) & valid[:, 1:]  # (B, L - 1)
    return target_lengths + repeats.sum(1)


def emission_from_path(path: Sequence[int], vocab_size: int = len(VOCAB),
                       confidence: float = 0.9) -> Tensor:
    """A hand-made emission ``(T, V)`` whose best path is ``path`` (tests, examples)."""
    probs = torch.full((len(path), vocab_size), (1 - confidence) / (vocab_size - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = confidence
    return probs.log()
