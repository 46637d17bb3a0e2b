"""Sentence classifier: a Transformer encoder over subword tokens, pooled to one vector.

The sequence is ``[CLS] w_1 ... w_n`` (the data module puts ``[CLS]`` first). Self-attention
mixes every token with every other; the sentence vector is either the [CLS] position's output
(BERT: the token has no word of its own, so the encoder learns to gather into it) or the mean of
the valid positions, optionally concatenated with their max ("mean+max" pooling, which keeps a
single strongly-polar word from being averaged away). Padding never takes part: keys beyond each
sentence's length are masked (``AttentionMask(key_lengths=...)``) and pooling ignores padded
positions, so a sentence gets the same logits alone or batched with longer ones.

Trained from scratch on ~8k sentences the model over-fits quickly, so regularisation is built
in: word dropout (a token's embedding is zeroed with probability ``word_dropout`` while
training, so no single word can carry a sentence), dropout on embeddings, attention weights,
residual branches and before the classifier. An optional masked-language-model head (tied to
the input embedding) lets the module add a self-supervised loss on the same training text.

An optional lexicon prior (``lexicon=True``) adds to each token's embedding its word's human-rated
valence (VADER, in [-1, 1]; see :mod:`tasks.sentiment.lexicon`) times one learned direction. A
polar word seen once in training, or only at test time, then still enters self-attention with
its polarity, which the encoder can learn from the many rated words it does see. The prior is
added after word dropout: when a word's embedding is dropped, its valence survives.

Optional word vectors (``word_vectors`` > 0 dims; GloVe, :mod:`tasks.sentiment.glove`) add to
each token's embedding a learned linear map of its word's frozen vector (the ``glove`` buffer,
one row per token id, zeros where a token has none). The buffer is no parameter but is saved
with the weights, so a checkpoint needs no GloVe files. Word dropout drops the sum: a dropped
word loses its general meaning as well. The MLM head stays tied to the trainable embedding.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from suite.attention import AttentionMask
from suite.blocks import LayerConfig, TransformerEncoder
from suite.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

Pool = Literal["cls", "mean", "meanmax"]
Positions = Literal["sinusoidal", "learned"]


def valid_positions(lengths: Tensor, seq_len: int) -> Tensor:
    """``(B,)`` lengths -> bool ``(B, T)``, True on real tokens (``[CLS]`` included)."""
    return torch.arange(seq_len, device=lengths.device)[None, :] < lengths[:, None]


def pool_sequence(hidden: Tensor, lengths: Tensor, pool: Pool) -> Tensor:
    """``(B, T, D)`` encoder output -> sentence vectors ``(B, D)`` (``(B, 2D)`` for meanmax).

    Mean and max run over the word positions 1..length-1 ([CLS] is excluded, as it carries no
    word); padded positions never contribute.
    """
    if pool == "cls":
        return hidden[:, 0]
    words = valid_positions(lengths, hidden.shape[1])
    words[:, 0] = False  # (B, T)
    count = words.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
    mean = (hidden * words[..., None]).sum(dim=1) / count  # (B, D)
    if pool == "mean":
        return mean
    lowest = torch.finfo(hidden.dtype).min
    maximum = hidden.masked_fill(~words[..., None], lowest).amax(dim=1)  # (B, D)
    return torch.cat([mean, maximum], dim=-1)


class SentimentTransformer(nn.Module):
    """Token embedding + positions -> Transformer encoder (pre-norm) -> pooling -> classes.

    Args:
        vocab_size: embedding rows (every token id is below it).
        num_classes: output classes.
        config: the encoder's size and dropouts (its ``dropout`` also applies to the
            embeddings and before the classifier).
        pool: ``cls``, ``mean`` or ``meanmax`` (see :func:`pool_sequence`).
        positions: ``sinusoidal`` (fixed) or ``learned`` (one vector per position).
        max_length: longest sequence the learned positions cover.
        word_dropout: probability of zeroing a token's embedding while training.
        pad_id: id of ``[PAD]`` (its embedding row is kept at zero).
        lexicon: add the lexicon prior; ``forward``/``encode`` then need ``valence``.
        window: None for full attention; else each token attends to ``window`` tokens on
            either side, and [CLS] to and from every token (Longformer's local + global
            pattern): memory and time grow linearly with the text's length.
        word_vectors: dims of the frozen word vectors in the ``glove`` buffer ``(vocab_size,
            word_vectors)``, filled by the caller; 0 for none.

    The keyword arguments have no defaults here: the head's module declares them.
    """

    def __init__(self, vocab_size: int, num_classes: int, config: LayerConfig, *, pool: Pool,
                 positions: Positions, max_length: int, word_dropout: float, pad_id: int,
                 lexicon: bool, window: int | None = None, word_vectors: int = 0) -> None:
        super().__init__()
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 token (or None for full attention), "
                             f"got {window}")
        self.window = window
        if pool not in ("cls", "mean", "meanmax"):
            raise ValueError(f"unknown pool {pool!r}; expected cls, mean or meanmax")
        if positions not in ("sinusoidal", "learned"):
            raise ValueError(f"unknown positions {positions!r}; expected sinusoidal or learned")
        self.pool = pool
        self.word_dropout = word_dropout
        self.embedding = nn.Embedding(vocab_size, config.dim, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        # The lexicon prior's direction in embedding space, (D,), on a word embedding's scale.
        self.valence_direction = (nn.Parameter(torch.randn(config.dim) * 0.02) if lexicon
                                  else None)
        self.embed_norm = nn.LayerNorm(config.dim)
        if positions == "learned":
            self.positions: nn.Module = LearnedPositionalEmbedding(config.dim, max_length,
                                                                   config.dropout)
        else:
            self.positions = SinusoidalPositionalEncoding(config.dim, max_length,
                                                          config.dropout)
        self.encoder = TransformerEncoder(config)
        pooled = 2 * config.dim if pool == "meanmax" else config.dim
        self.classifier = nn.Sequential(nn.Dropout(config.dropout),
                                        nn.Linear(pooled, num_classes))
        # Masked-LM head: a transform, then logits against the (tied) input embedding.
        self.mlm_transform = nn.Sequential(nn.Linear(config.dim, config.dim), nn.GELU(),
                                           nn.LayerNorm(config.dim))
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))
        # Created last and only when asked, so a model without them initialises as before.
        self.glove_projection: nn.Linear | None = None
        if word_vectors > 0:
            self.glove_projection = nn.Linear(word_vectors, config.dim, bias=False)
            self.register_buffer("glove", torch.zeros(vocab_size, word_vectors))

    @property
    def lexicon(self) -> bool:
        """Whether the model adds the lexicon prior (and so needs ``valence``)."""
        return self.valence_direction is not None

    def embed(self, tokens: Tensor, valence: Tensor | None = None) -> Tensor:
        """``(B, T)`` ids -> ``(B, T, D)``: embedding plus projected word vectors (together
        under word dropout), plus the lexicon
        prior ``valence[..., None] * valence_direction`` (``valence`` ``(B, T)`` in [-1, 1];
        not dropped), LayerNorm, positions.

        The LayerNorm puts embeddings on the scale of the sinusoidal table (unit-variance
        entries), so neither the words nor their positions drown the other.
        """
        if (valence is None) == self.lexicon:
            raise ValueError("valence is needed exactly when the model has the lexicon prior "
                             f"(lexicon={self.lexicon}, valence given: {valence is not None})")
        x = self.embedding(tokens)  # (B, T, D)
        if self.glove_projection is not None:
            x = x + self.glove_projection(self.glove[tokens])  # (B, T, word_vectors) -> (B, T, D)
        if self.training and self.word_dropout > 0:
            keep = torch.rand(tokens.shape, device=tokens.device) >= self.word_dropout
            keep[:, 0] = True  # never drop [CLS]
            x = x * keep[..., None]
        if valence is not None:
            x = x + valence[..., None].to(x.dtype) * self.valence_direction  # (B, T, D)
        return self.positions(self.embed_norm(x))

    def encode(self, tokens: Tensor, lengths: Tensor, need_weights: bool = False,
               valence: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Encoder output ``(B, T, D)`` and, if asked, each layer's weights ``(B, H, T, T)``.

        ``valence`` ``(B, T)``: the lexicon prior, given exactly when the model has one.
        """
        mask = (AttentionMask(key_lengths=lengths) if self.window is None else
                AttentionMask(key_lengths=lengths, window=(self.window, self.window),
                              global_tokens=1))  # [CLS] is global
        return self.encoder(self.embed(tokens, valence), mask, need_weights)

    def forward(self, tokens: Tensor, lengths: Tensor, need_weights: bool = False,
                valence: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """``tokens`` ``(B, T)``, ``lengths`` ``(B,)`` and, with the lexicon prior, ``valence``
        ``(B, T)`` -> logits ``(B, classes)`` and maps."""
        hidden, maps = self.encode(tokens, lengths, need_weights, valence)
        return self.classifier(pool_sequence(hidden, lengths, self.pool)), maps

    def mlm_logits(self, hidden: Tensor) -> Tensor:
        """``(N, D)`` encoder outputs at masked positions -> ``(N, vocab)`` token logits."""
        return self.mlm_transform(hidden) @ self.embedding.weight.T + self.mlm_bias
