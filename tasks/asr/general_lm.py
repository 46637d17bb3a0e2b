"""A general English word LM for the ASR word decoder: pocketsphinx's en-us n-gram LM as ARPA.

The word decoder (:mod:`tasks.asr.wordlm`) knows only the training text's words. The
pocketsphinx wheel ships a general US-English trigram LM, ``model/en-us/en-us.lm.bin``, in
sphinx's binary trie format. Its own exporters, ``NGramModel.write`` in Python and the
``pocketsphinx_lm_convert`` tool, both go through the C ``ngram_model_trie_write_arpa``,
which sizes each section from the header's n-gram counts; this file's header declares more
bigrams than its trie holds (its builder over-counted the back-off "blank" entries it would
insert), so the export reads past the filled entries and crashes. Here the trie is read
directly with numpy instead, which exports every order, trigrams included.

The binary (pocketsphinx ``src/lm``: ``ngram_model_trie.c``, ``lm_trie.c``,
``lm_trie_quant.c``; little-endian):

- ``"Trie Language Model"``, the order (``uint8``), the header's n-gram counts (``uint32``);
- a retired ``int32``, then the quantiser's code books (``float32``, 2^16 each): for every
  middle order a probability and a back-off table, then one for the highest order;
- the unigrams, ``(log prob, log back-off, first child)`` (``float32, float32, uint32``),
  plus an end sentinel;
- the bit-packed n-grams of each higher order, grouped under their *newest* word (a reverse
  trie: the bigram "h w" lives under unigram ``w`` with key ``h``): per entry the key word,
  then a 16-bit back-off code and a 16-bit probability code (middle orders; the highest order
  has the probability code only), then the middle entry's first child;
- the words, NUL-terminated, in id order.

Log-probabilities are in sphinx's ``logmath`` units (log base 1.0001, its default).

Mapping to the recogniser's vocabulary: a word is kept only when :func:`tasks.asr.text.normalize`
leaves it unchanged, since every transcript goes through ``normalize`` and so never holds a
word in any other form. Kept: "don't", "the". Dropped: "'bout", "parents'" (quotes, not
apostrophes, to ``normalize``), "a." (a spelled letter), "brother-in-law", and every n-gram
that holds a dropped word. ``<s>`` and ``</s>`` are kept as the sentence marks; ``<unk>`` is
listed at log10 -100, the value KenLM would substitute for a missing one.

The probabilities are left as pocketsphinx stores them, not renormalised: each listed
n-gram's probability and each history's back-off weight are the original model's, so an
n-gram scores exactly as it did there, and the dropped words' share of the mass is simply
never predicted (the lexicon cannot spell them). The exported file stays consistent ARPA,
as flashlight's (KenLM's) reader needs: an n-gram is kept only with all its words, so its
shorter n-grams (all listed in this LM) are kept with it.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suite import cache
from suite.errors import DataError, UsageError
from tasks.asr.text import normalize

PACKAGE = "pocketsphinx"
"""The installed package the LM is read from (no download)."""
MODEL_MEMBER = "model/en-us/en-us.lm.bin"
"""The LM's path inside :data:`PACKAGE`."""
MIN_ORDER, MAX_ORDER = 2, 3
"""Orders ``general_arpa`` exports: flashlight's KenLM reads no unigram-only LM, and the
shipped LM is a trigram."""

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
UNK_LOG10 = -100.0
FORMAT_VERSION = 1
"""Bumped when the export changes (mapping, layout), so a cached ARPA is built again."""

TRIE_MAGIC = b"Trie Language Model"
LOG10_PER_UNIT = math.log10(1.0001)
"""One sphinx ``logmath`` unit in log10 (base 1.0001)."""
QUANT_BITS = 16
"""Bits of a quantised probability or back-off code (``lm_trie_quant``)."""
_CODEBOOK = 1 << QUANT_BITS
_UNIGRAM = np.dtype([("prob", "<f4"), ("backoff", "<f4"), ("next", "<u4")])


@dataclass(frozen=True)
class NGrams:
    """The n-grams of one order, oldest word first.

    ``words`` ``(N, n)`` word ids; ``log10_prob`` ``(N,)``; ``log10_backoff`` ``(N,)``, or
    None at the model's highest order (no n-gram extends it).
    """

    words: np.ndarray
    log10_prob: np.ndarray
    log10_backoff: np.ndarray | None


@dataclass(frozen=True)
class SphinxLM:
    """A sphinx trie LM as plain arrays: ``orders[k]`` holds the (k+1)-grams."""

    vocabulary: list[str]
    orders: list[NGrams]


# ----------------------------------------------------------------------------- the binary


def _read_fields(mem: np.ndarray, bit_offsets: np.ndarray, width: int) -> np.ndarray:
    """The unsigned ``width``-bit fields (``width <= 32``) that start at ``bit_offsets`` of
    the little-endian bit array ``mem`` (``bitarr_read_int25`` over many entries)."""
    first_byte = bit_offsets >> 3
    window = np.zeros(len(bit_offsets), dtype=np.uint64)
    for k in range(5):  # a 32-bit field shifted by up to 7 bits spans 5 bytes
        window |= mem[first_byte + k].astype(np.uint64) << np.uint64(8 * k)
    shift = (bit_offsets & 7).astype(np.uint64)
    return ((window >> shift) & np.uint64((1 << width) - 1)).astype(np.int64)


def _packed_size(entries: int, entry_bits: int) -> int:
    """Bytes of one order's bit array: an extra entry holds the last child range's end, and
    8 bytes of padding let readers load whole words (``lm_trie.c`` ``base_size``)."""
    return ((1 + entries) * entry_bits + 7) // 8 + 8


@dataclass
class _Cursor:
    """Reads the binary's sections in order."""

    path: Path
    data: bytes
    at: int

    def take(self, dtype: str | np.dtype, count: int) -> np.ndarray:
        try:
            values = np.frombuffer(self.data, dtype, count, self.at)
        except ValueError as err:
            raise DataError(f"{self.path}: truncated sphinx trie LM (ends at byte "
                            f"{len(self.data)}, reading byte {self.at})") from err
        self.at += values.nbytes
        return values


def _entry_bits(counts: list[int], n: int) -> tuple[int, int]:
    """``(bits per entry, bits of its child pointer)`` of the ``n``-grams' bit array: key
    word, then codes, then (middle orders) the pointer into the next order."""
    word_bits = counts[0].bit_length()
    if n == len(counts):
        return word_bits + QUANT_BITS, 0
    next_bits = counts[n].bit_length()
    return word_bits + 2 * QUANT_BITS + next_bits, next_bits


def read_sphinx_lm(path: Path) -> SphinxLM:
    """Every n-gram of a sphinx binary trie LM (``*.lm.bin``), probabilities in log10."""
    data = Path(path).read_bytes()
    if not data.startswith(TRIE_MAGIC):
        raise DataError(f"{path}: not a sphinx trie LM (starts {data[:len(TRIE_MAGIC)]!r}, "
                        f"expected {TRIE_MAGIC!r})")
    cursor = _Cursor(Path(path), data, len(TRIE_MAGIC))
    order = int(cursor.take("u1", 1)[0])
    if order < MIN_ORDER:
        raise DataError(f"{path}: a {order}-gram LM; expected bigrams at least")
    counts = [int(c) for c in cursor.take("<u4", order)]
    cursor.take("<i4", 1)  # a retired quantiser-type field
    codebooks = [(cursor.take("<f4", _CODEBOOK), cursor.take("<f4", _CODEBOOK))
                 for _ in range(order - 2)]  # (probability, back-off) per middle order
    codebooks.append((cursor.take("<f4", _CODEBOOK), None))  # the highest order's
    unigrams = cursor.take(_UNIGRAM, counts[0] + 1)  # + the end sentinel
    packed = [cursor.take("u1", _packed_size(counts[n - 1], _entry_bits(counts, n)[0]))
              for n in range(2, order + 1)]
    vocabulary = [w.decode("utf-8") for w in cursor.take(
        "u1", int(cursor.take("<i4", 1)[0])).tobytes().split(b"\0")[:-1]]
    if len(vocabulary) != counts[0]:
        raise DataError(f"{path}: {len(vocabulary)} words for {counts[0]} unigrams")

    orders = [NGrams(np.arange(counts[0])[:, None], unigrams["prob"][:-1] * LOG10_PER_UNIT,
                     unigrams["backoff"][:-1] * LOG10_PER_UNIT)]
    children = unigrams["next"].astype(np.int64)  # (parents + 1,) child range starts
    word_bits = counts[0].bit_length()
    for n, (mem, (prob_book, backoff_book)) in enumerate(zip(packed, codebooks, strict=True),
                                                         start=2):
        entry_bits, next_bits = _entry_bits(counts, n)
        words, start = _extend(mem, orders[-1].words, children, word_bits, entry_bits)
        codes = start[:-1] + word_bits
        if backoff_book is None:  # the highest order: a probability code only
            orders.append(NGrams(words, _decode(mem, codes, prob_book), None))
        else:
            orders.append(NGrams(words, _decode(mem, codes + QUANT_BITS, prob_book),
                                 _decode(mem, codes, backoff_book)))  # back-off code first
            children = _read_fields(mem, start + word_bits + 2 * QUANT_BITS, next_bits)
    return SphinxLM(vocabulary, orders)


def _decode(mem: np.ndarray, bit_offsets: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """log10 values of the quantised codes at ``bit_offsets``."""
    return codebook[_read_fields(mem, bit_offsets, QUANT_BITS)] * LOG10_PER_UNIT


def _extend(mem: np.ndarray, parents: np.ndarray, children: np.ndarray, word_bits: int,
            entry_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-grams of one higher order and their entries' bit offsets ``(N + 1,)`` (one past
    the end too): each entry extends its parent (the n-gram without its oldest word, a row
    of ``parents`` ``(P, n-1)``) by the entry's key word at the front."""
    count = int(children[-1])
    owner = np.repeat(np.arange(len(parents)), np.diff(children))  # (N,) parent row
    start = np.arange(count + 1, dtype=np.int64) * entry_bits
    return np.column_stack([_read_fields(mem, start[:-1], word_bits), parents[owner]]), start


# ----------------------------------------------------------------------------- the export


def sphinx_lm_path() -> Path:
    """The en-us LM inside the installed pocketsphinx wheel."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{PACKAGE} is not installed: the general English LM is read from its "
                        f"wheel ({MODEL_MEMBER}); install it with `pip install {PACKAGE}`")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_MEMBER
    if not path.is_file():
        raise DataError(f"{path}: the general English LM is missing from the installed "
                        f"{PACKAGE}; reinstall it (`pip install --force-reinstall {PACKAGE}`)")
    return path


def kept_words(vocabulary: list[str]) -> np.ndarray:
    """``(V,)`` bool: which LM words the recogniser can output as they are (see module doc)."""
    return np.array([w in (BOS, EOS) or (w != "" and normalize(w) == w) for w in vocabulary])


def _arpa_lines(lm: SphinxLM, n: int, order: int, keep: np.ndarray) -> list[str]:
    """The ``\\n-grams:`` lines of the kept n-grams; back-offs except at the exported top."""
    grams = lm.orders[n - 1]
    rows = np.flatnonzero(keep[grams.words].all(axis=1))
    vocabulary = np.array(lm.vocabulary, dtype=object)
    columns = [vocabulary[grams.words[rows, k]] for k in range(n)]
    texts = [" ".join(gram) for gram in zip(*columns, strict=True)]
    probs = np.maximum(grams.log10_prob[rows], -99.0).tolist()  # <s>: never predicted
    if n == order:
        return [f"{p:.4f}\t{t}\n" for p, t in zip(probs, texts, strict=True)]
    backoffs = grams.log10_backoff[rows].tolist()
    return [f"{p:.4f}\t{t}\t{b:.4f}\n" for p, t, b in zip(probs, texts, backoffs, strict=True)]


def write_arpa(lm: SphinxLM, order: int, target: Path) -> None:
    """Write ``lm`` cut to ``order`` (2 or more) and mapped to the recogniser's words as ARPA."""
    keep = kept_words(lm.vocabulary)
    sections = [_arpa_lines(lm, n, order, keep) for n in range(1, order + 1)]
    sections[0].append(f"{UNK_LOG10:.4f}\t{UNK}\t0.0000\n")
    with Path(target).open("w", encoding="utf-8") as out:
        out.write("\\data\\\n")
        out.writelines(f"ngram {n}={len(s)}\n" for n, s in enumerate(sections, start=1))
        for n, lines in enumerate(sections, start=1):
            out.write(f"\n\\{n}-grams:\n")
            out.writelines(lines)
        out.write("\n\\end\\\n")


def general_arpa(order: int = 2) -> Path:
    """pocketsphinx's en-us LM as an ARPA file of ``order`` in the data cache, built once
    (atomically, recorded in the cache's manifest) and built again only when missing,
    damaged, or made from another LM file or format version."""
    if not MIN_ORDER <= order <= MAX_ORDER:
        raise UsageError(f"general LM order must be {MIN_ORDER}..{MAX_ORDER}, got {order}")
    source = sphinx_lm_path()
    target = cache.cache_dir() / "asr" / f"general-en-us-{order}gram.arpa"
    inputs = {"lm_sha256": cache.sha256_file(source), "order": order,
              "version": FORMAT_VERSION}
    return cache.built(target, inputs,
                       lambda tmp: write_arpa(read_sphinx_lm(source), order, tmp))


def general_words(order: int = 2) -> list[str]:
    """The words of :func:`general_arpa` (its unigrams but the sentence marks and ``<unk>``):
    the lexicon a decoder searches with it."""
    words = []
    with general_arpa(order).open(encoding="utf-8") as arpa:
        for line in arpa:
            if line.startswith("\\1-grams:"):
                break
        for line in arpa:
            if not line.strip():
                break
            words.append(line.split("\t")[1].strip())
    return [w for w in words if w not in (BOS, EOS, UNK)]
