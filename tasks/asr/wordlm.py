"""Lexicon beam search with a word n-gram LM: CTC emissions -> words of a lexicon.

The character decoders in :mod:`tasks.asr.decode` may spell anything; here every hypothesis
is a sequence of words from a lexicon (each word spelled in the model's output units), scored
by ``log P_CTC + lm_weight * log P_LM(words) + word_score * len(words)``. A recogniser whose
characters are a third wrong still often gets the word right when only one lexicon word
fits the spelling and the context - this is what the classic ASR decoders (Kaldi's WFST,
wav2letter/flashlight) do. The search itself is flashlight's (through torchaudio's
``ctc_decoder``). The LM is either written here, as an ARPA file with interpolated
Witten-Bell smoothing, from the training transcripts only, or pocketsphinx's general English
LM (:mod:`tasks.asr.general_lm`): never one built from test transcripts.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from tasks.asr.text import BLANK_ID
from tasks.asr.units import OutputUnits

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_BLANK, _SILENCE = "<blank>", "|"


def _token_name(symbol: str) -> str:
    """A symbol as flashlight's whitespace-separated files need it: the space is ``|``."""
    return _SILENCE if symbol == " " else symbol


def ngram_counts(sentences: Sequence[Sequence[str]], order: int) -> dict[tuple, Counter]:
    """``counts[history][word]`` for every history of 0 .. order-1 words; sentences start
    with ``<s>`` (itself never predicted) and end with ``</s>``."""
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for words in sentences:
        tokens = (BOS, *words, EOS)
        for i in range(1, len(tokens)):
            for n in range(min(order, i + 1)):  # history = the n tokens before i
                counts[tokens[i - n:i]][tokens[i]] += 1
    return counts


def witten_bell_arpa(sentences: Sequence[Sequence[str]], order: int = 3) -> str:
    """An ARPA back-off LM equal to interpolated Witten-Bell smoothing.

    .. math::
        P(w | h) = \\frac{C(h w) + T(h) P(w | h')}{C(h) + T(h)}

    with ``T(h)`` the number of distinct words seen after ``h`` and ``h'`` the history minus
    its oldest word (ending in the uniform distribution over the vocabulary and ``<unk>``).
    For a word never seen after ``h`` this is ``bow(h) * P(w | h')`` with
    ``bow(h) = T(h) / (C(h) + T(h))``, so listing the seen n-grams' interpolated
    probabilities and these back-off weights is the whole model.
    """
    counts = ngram_counts(sentences, order)
    totals = {history: sum(seen.values()) for history, seen in counts.items()}  # C(h)
    vocab = sorted({w for c in counts.values() for w in c} | {UNK})  # <s> is never predicted
    uniform = 1.0 / len(vocab)
    memo: dict[tuple, float] = {}

    def prob(history: tuple, word: str) -> float:
        key = (*history, word)
        if key not in memo:
            lower = prob(history[1:], word) if history else uniform
            seen = counts.get(history)
            memo[key] = ((seen[word] + len(seen) * lower) / (totals[history] + len(seen))
                         if seen else lower)
        return memo[key]

    def backoff(history: tuple) -> float:
        seen = counts.get(history)
        return len(seen) / (totals[history] + len(seen)) if seen else 1.0

    sections: list[list[str]] = [[] for _ in range(order)]
    for word in vocab:
        logp = math.log10(prob((), word))
        sections[0].append(f"{logp:.6f}\t{word}\t{math.log10(backoff((word,))):.6f}")
    sections[0].append(f"-99.000000\t{BOS}\t{math.log10(backoff((BOS,))):.6f}")
    for history, seen in counts.items():
        n = len(history) + 1
        if n == 1:
            continue
        for word in seen:
            line = f"{math.log10(prob(history, word)):.6f}\t{' '.join((*history, word))}"
            if n < order:
                line += f"\t{math.log10(backoff((*history, word))):.6f}"
            sections[n - 1].append(line)
    out = ["", "\\data\\", *(f"ngram {i + 1}={len(s)}" for i, s in enumerate(sections)), ""]
    for i, section in enumerate(sections):
        out += [f"\\{i + 1}-grams:", *section, ""]
    return "\n".join([*out, "\\end\\", ""])


class WordDecoder:
    """Flashlight lexicon beam search over a word list with its n-gram LM (an ARPA file).

    A word is spelled as the model writes it (:meth:`OutputUnits.spell`): its characters then
    the space, which flashlight takes as its silence token ``|``; or its word pieces, whose
    first one marks the word start, so no silence token is needed and the blank stands in
    for it (as in fairseq's word-piece lexicon decoding). Two vocabularies are offered:
    :meth:`from_texts` (the training transcripts' words and their Witten-Bell LM) and
    :meth:`general` (pocketsphinx's general English LM, :mod:`tasks.asr.general_lm`).

    Args:
        words: the lexicon (each word must be in the LM's vocabulary to score).
        arpa: the word n-gram LM, read once here.
        units: the model's output units, blank first.
        beam: hypotheses kept per frame.
        lm_weight: weight of the LM's log-probability in a hypothesis's score.
        word_score: added per emitted word (offsets the LM's preference for few words).
    """

    def __init__(self, words: Iterable[str], arpa: Path, units: OutputUnits, beam: int = 50,
                 lm_weight: float = 1.0, word_score: float = 0.0) -> None:
        from torchaudio.models.decoder import ctc_decoder

        tokens = [_BLANK if i == BLANK_ID else _token_name(s) for i, s in enumerate(units.symbols)]
        silence = _SILENCE if units.word_boundary is not None else _BLANK
        spellings = {w: [_token_name(p) for p in units.spell(w)] for w in words}
        with tempfile.TemporaryDirectory() as tmp:
            lexicon = Path(tmp) / "lexicon.txt"
            lexicon.write_text("".join(f"{w}\t{' '.join(spellings[w])}\n"
                                       for w in sorted(spellings)))
            self._decoder = ctc_decoder(
                lexicon=str(lexicon), tokens=tokens, lm=str(arpa), nbest=1, beam_size=beam,
                lm_weight=lm_weight, word_score=word_score, blank_token=_BLANK,
                sil_token=silence, unk_word=UNK)
        self.words = len(spellings)

    @classmethod
    def from_texts(cls, texts: Iterable[str], units: OutputUnits, order: int = 3,
                   **search: Any) -> WordDecoder:
        """The words of ``texts`` (training transcripts) and their order-``order`` LM;
        ``search``: the beam and weights of :class:`WordDecoder`."""
        with lexicon_lm(order, texts) as (words, arpa):
            return cls(words, arpa, units, **search)

    @classmethod
    def general(cls, units: OutputUnits, order: int = 2, **search: Any) -> WordDecoder:
        """pocketsphinx's general English words and LM (built once into the data cache)."""
        with lexicon_lm(order) as (words, arpa):
            return cls(words, arpa, units, **search)

    @classmethod
    def grid(cls, units: OutputUnits, order: int, texts: Iterable[str] | None,
             weights: Sequence[tuple[float, float]], beam: int = 50) -> list[WordDecoder]:
        """One decoder per ``(lm_weight, word_score)`` of ``weights`` over one vocabulary
        (``texts``' as :meth:`from_texts`, or general English's when None), its words and LM
        read once: flashlight fixes the weights when a decoder is built."""
        with lexicon_lm(order, texts) as (words, arpa):
            return [cls(words, arpa, units, beam=beam, lm_weight=weight, word_score=score)
                    for weight, score in weights]

    def __call__(self, log_probs: Tensor, lengths: Tensor) -> list[str]:
        """Transcripts of ``(B, T, V)`` log-probs with ``(B,)`` valid lengths."""
        results = self._decoder(log_probs.detach().float().cpu().contiguous(),
                                lengths.detach().cpu().int())
        return [" ".join(w for w in hyps[0].words if w != UNK) if hyps else ""
                for hyps in results]


@contextlib.contextmanager
def lexicon_lm(order: int, texts: Iterable[str] | None = None
               ) -> Iterator[tuple[Iterable[str], Path]]:
    """A vocabulary's words and ARPA LM of ``order``: the words of ``texts`` (training
    transcripts) and their Witten-Bell LM in a temporary file, removed on exit; or, without
    ``texts``, pocketsphinx's general English (:mod:`tasks.asr.general_lm`, cached)."""
    if texts is None:
        from tasks.asr.general_lm import general_arpa, general_words

        yield general_words(order), general_arpa(order)
        return
    sentences = [text.split() for text in texts if text.split()]
    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "lm.arpa"
        arpa.write_text(witten_bell_arpa(sentences, order))
        yield {w for s in sentences for w in s}, arpa
