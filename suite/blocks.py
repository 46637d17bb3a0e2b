"""Transformer blocks: feed-forward, encoder layer, decoder layer, and their stacks.

Each sub-layer is wrapped in a residual connection and LayerNorm. Pre-norm (the default)
computes ``x + f(LN(x))``: the residual path stays an identity, so deep stacks train without
warmup tricks. Post-norm, the original paper's ``LN(x + f(x))``, is ``norm_first=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from suite.attention import AttentionMask, KVCache, MultiHeadAttention


class FeedForward(nn.Module):
    """Position-wise FFN: Linear(d, ffn) -> activation -> dropout -> Linear(ffn, d)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0, activation: str = "gelu"
                 ) -> None:
        super().__init__()
        activations = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
        if activation not in activations:
            raise ValueError(f"unknown activation {activation!r}; expected {list(activations)}")
        self.net = nn.Sequential(nn.Linear(dim, ffn_dim), activations[activation](),
                                 nn.Dropout(dropout), nn.Linear(ffn_dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _Residual(nn.Module):
    """``x + dropout(f(LN(x)))`` (pre-norm) or ``LN(x + dropout(f(x)))`` (post-norm)."""

    def __init__(self, dim: int, dropout: float, norm_first: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, sublayer) -> tuple[Tensor, Tensor | None]:
        out, extra = sublayer(self.norm(x) if self.norm_first else x)
        x = x + self.dropout(out)
        return (x if self.norm_first else self.norm(x)), extra


@dataclass
class LayerConfig:
    """Hyper-parameters shared by encoder and decoder layers."""

    dim: int = 256
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "gelu"
    norm_first: bool = True


class EncoderLayer(nn.Module):
    """Self-attention then FFN, each inside a residual + LayerNorm."""

    def __init__(self, config: LayerConfig, rotary: nn.Module | None = None) -> None:
        super().__init__()
        c = config
        self.attention = MultiHeadAttention(c.dim, c.num_heads, c.attention_dropout,
                                            rotary=rotary)
        self.ffn = FeedForward(c.dim, c.ffn_dim, c.dropout, c.activation)
        self.attention_block = _Residual(c.dim, c.dropout, c.norm_first)
        self.ffn_block = _Residual(c.dim, c.dropout, c.norm_first)

    def forward(self, x: Tensor, mask: AttentionMask | None = None, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """``x`` ``(B, T, D)`` -> ``(B, T, D)``, and the weights ``(B, H, T, T)`` if asked."""
        x, weights = self.attention_block(
            x, lambda h: self.attention(h, mask=mask, need_weights=need_weights))
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x, weights


class DecoderLayer(nn.Module):
    """Masked (causal) self-attention, cross-attention to the encoder memory, then FFN."""

    def __init__(self, config: LayerConfig, memory_dim: int | None = None,
                 rotary: nn.Module | None = None) -> None:
        super().__init__()
        c = config
        self.self_attention = MultiHeadAttention(c.dim, c.num_heads, c.attention_dropout,
                                                 rotary=rotary)
        self.cross_attention = MultiHeadAttention(c.dim, c.num_heads, c.attention_dropout,
                                                  kv_dim=memory_dim)
        self.ffn = FeedForward(c.dim, c.ffn_dim, c.dropout, c.activation)
        self.self_block = _Residual(c.dim, c.dropout, c.norm_first)
        self.cross_block = _Residual(c.dim, c.dropout, c.norm_first)
        self.ffn_block = _Residual(c.dim, c.dropout, c.norm_first)

    def forward(self, x: Tensor, memory: Tensor, self_mask: AttentionMask | None = None,
                memory_mask: AttentionMask | None = None, need_weights: bool = False,
                cache: tuple[KVCache, KVCache] | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """``x`` ``(B, Tq, D)``, ``memory`` ``(B, Tm, memory_dim)``; returns the output and the
        cross-attention weights ``(B, H, Tq, Tm)`` if asked (alignment maps, guided loss).

        ``self_mask`` defaults to causal. With ``cache`` = (self, cross) caches, ``x`` holds
        only the new positions.
        """
        self_mask = self_mask or AttentionMask(causal=True)
        self_cache, cross_cache = cache if cache is not None else (None, None)
        x, _ = self.self_block(
            x, lambda h: self.self_attention(h, mask=self_mask, cache=self_cache))
        x, weights = self.cross_block(
            x, lambda h: self.cross_attention(h, memory, mask=memory_mask,
                                              need_weights=need_weights, cache=cross_cache))
        x, _ = self.ffn_block(x, lambda h: (self.ffn(h), None))
        return x, weights


class TransformerEncoder(nn.Module):
    """A stack of encoder layers (+ final LayerNorm when pre-norm, as the residual stream
    is otherwise never normalised)."""

    def __init__(self, config: LayerConfig, depth: int, rotary: nn.Module | None = None
                 ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config, rotary) for _ in range(depth))
        self.norm = nn.LayerNorm(config.dim) if config.norm_first else nn.Identity()

    def forward(self, x: Tensor, mask: AttentionMask | None = None, need_weights: bool = False
                ) -> tuple[Tensor, list[Tensor]]:
        """Returns the output ``(B, T, D)`` and each layer's weights (empty unless asked)."""
        maps = []
        for layer in self.layers:
            x, weights = layer(x, mask, need_weights)
            if weights is not None:
                maps.append(weights)
        return self.norm(x), maps


class TransformerDecoder(nn.Module):
    """A stack of decoder layers with incremental decoding through per-layer KV caches."""

    def __init__(self, config: LayerConfig, depth: int, memory_dim: int | None = None,
                 rotary: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config, memory_dim, rotary)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(config.dim) if config.norm_first else nn.Identity()

    def new_cache(self) -> list[tuple[KVCache, KVCache]]:
        """Empty (self, cross) caches, one pair per layer, for :meth:`forward`'s ``cache``."""
        return [(KVCache(), KVCache()) for _ in self.layers]

    def forward(self, x: Tensor, memory: Tensor, self_mask: AttentionMask | None = None,
                memory_mask: AttentionMask | None = None, need_weights: bool = False,
                cache: list[tuple[KVCache, KVCache]] | None = None
                ) -> tuple[Tensor, list[Tensor]]:
        """Full sequence (training) or, with ``cache``, just the new steps (generation)."""
        maps = []
        for i, layer in enumerate(self.layers):
            layer_cache = cache[i] if cache is not None else None
            x, weights = layer(x, memory, self_mask, memory_mask, need_weights, layer_cache)
            if weights is not None:
                maps.append(weights)
        return self.norm(x), maps
