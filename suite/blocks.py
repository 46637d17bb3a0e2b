"""Transformer blocks: feed-forward, encoder layer, decoder layer, and their stacks.

Each sub-layer is wrapped in a residual connection and LayerNorm. Pre-norm (the default)
computes ``x + f(LN(x))``: the residual path stays an identity, so deep stacks train without
warmup tricks. Post-norm, the original paper's ``LN(x + f(x))``, is ``norm_first=False``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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


def rename_on_load(module: nn.Module, renames: dict[str, str]) -> None:
    """Let ``module`` load state dicts written under former parameter names.

    Before ``module`` loads, every key below it whose name relative to ``module`` starts with
    a match of a pattern of ``renames`` (a regular expression) has that match replaced.
    """
    patterns = [(re.compile(old), new) for old, new in renames.items()]

    def hook(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            for pattern, new in patterns:
                if match := pattern.match(key, len(prefix)):
                    renamed = prefix + match.expand(new) + key[match.end():]
                    state_dict[renamed] = state_dict.pop(key)
                    break

    module.register_load_state_dict_pre_hook(hook)


@dataclass(frozen=True)
class LayerConfig:
    """The size of a Transformer stack: its layers' hyper-parameters and how many there are.

    One nested argument per head (``--model.encoder.dim``), so the size is declared once.
    """

    dim: int = 256
    depth: int = 6
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "gelu"
    norm_first: bool = True


class EncoderLayer(nn.Module):
    """Self-attention then FFN, each a residual branch with LayerNorm::

        x = x + dropout(attention(norm1(x)))    # pre-norm; post-norm: norm1(x + ...)
        x = x + dropout(ffn(norm2(x)))

    Which attention implementation runs (fused, banded, explicit, edge list) follows from
    the mask it is given (:func:`suite.attention.attend`).

    Args:
        config: the layer's sizes.
        rotary: a :class:`suite.positional.RotaryEmbedding` for the attention, or None.
    """

    def __init__(self, config: LayerConfig, rotary: nn.Module | None = None) -> None:
        super().__init__()
        c = config
        self.attention = MultiHeadAttention(c.dim, c.num_heads, c.attention_dropout,
                                            rotary=rotary)
        self.ffn = FeedForward(c.dim, c.ffn_dim, c.dropout, c.activation)
        self.norm1, self.norm2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.dropout = nn.Dropout(c.dropout)
        self.norm_first = c.norm_first
        # checkpoints written before the norms had these names still load
        rename_on_load(self, {r"attention_block\.norm\.": "norm1.",
                              r"ffn_block\.norm\.": "norm2."})

    def forward(self, x: Tensor, mask: AttentionMask | None = None, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """``x`` ``(B, T, D)`` -> ``(B, T, D)``, and the weights ``(B, H, T, T)`` if asked."""
        if self.norm_first:
            h, weights = self.attention(self.norm1(x), mask=mask, need_weights=need_weights)
            x = x + self.dropout(h)
            x = x + self.dropout(self.ffn(self.norm2(x)))
        else:
            h, weights = self.attention(x, mask=mask, need_weights=need_weights)
            x = self.norm1(x + self.dropout(h))
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Masked (causal) self-attention, cross-attention to the encoder memory, then FFN, each a
    residual branch with LayerNorm (``x = x + dropout(f(norm(x)))``, or post-norm)."""

    def __init__(self, config: LayerConfig, memory_dim: int | None = None,
                 rotary: nn.Module | None = None) -> None:
        super().__init__()
        c = config
        self.self_attention = MultiHeadAttention(c.dim, c.num_heads, c.attention_dropout,
                                                 rotary=rotary)
        self.cross_attention = MultiHeadAttention(c.dim, c.num_heads, c.attention_dropout,
                                                  kv_dim=memory_dim)
        self.ffn = FeedForward(c.dim, c.ffn_dim, c.dropout, c.activation)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(c.dim) for _ in range(3))
        self.dropout = nn.Dropout(c.dropout)
        self.norm_first = c.norm_first
        # checkpoints written before the norms had these names still load
        rename_on_load(self, {r"self_block\.norm\.": "norm1.",
                              r"cross_block\.norm\.": "norm2.", r"ffn_block\.norm\.": "norm3."})

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
        if self.norm_first:
            h, _ = self.self_attention(self.norm1(x), mask=self_mask, cache=self_cache)
            x = x + self.dropout(h)
            h, weights = self.cross_attention(self.norm2(x), memory, mask=memory_mask,
                                              need_weights=need_weights, cache=cross_cache)
            x = x + self.dropout(h)
            x = x + self.dropout(self.ffn(self.norm3(x)))
        else:
            h, _ = self.self_attention(x, mask=self_mask, cache=self_cache)
            x = self.norm1(x + self.dropout(h))
            h, weights = self.cross_attention(x, memory, mask=memory_mask,
                                              need_weights=need_weights, cache=cross_cache)
            x = self.norm2(x + self.dropout(h))
            x = self.norm3(x + self.dropout(self.ffn(x)))
        return x, weights


class TransformerEncoder(nn.Module):
    """A stack of encoder layers, each optionally followed by a per-layer module, then a final
    LayerNorm when pre-norm (the residual stream is otherwise never normalised)::

        for layer, extra in zip(layers, extras):
            x = layer(x, mask)
            x = extra(x, mask)    # e.g. a Conformer convolution module, residual inside

    Args:
        config: the layers' sizes and their number (``depth``).
        rotary: a rotary encoding shared by every layer's attention, or None.
        extra: builds one per-layer module, called as ``extra(x, mask)`` (the mask tells it
            the padding); None for none. They are built and registered after all layers, so
            the layers initialise - and the parameters iterate, which orders gradient
            clipping's sum - as in a stack without them.
    """

    def __init__(self, config: LayerConfig, rotary: nn.Module | None = None,
                 extra: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config, rotary) for _ in range(config.depth))
        self.extras = (nn.ModuleList(extra() for _ in self.layers) if extra is not None
                       else None)
        self.norm = nn.LayerNorm(config.dim) if config.norm_first else nn.Identity()

    def forward(self, x: Tensor, mask: AttentionMask | list[AttentionMask] | None = None,
                need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """``x`` ``(B, T, D)`` under one mask, or one mask per layer (a list; e.g. per-layer
        edge vectors). Returns the output ``(B, T, D)`` and each layer's weights (empty unless
        asked)."""
        x, maps = self.run_layers(x, mask, need_weights=need_weights)
        return self.norm(x), maps

    def run_layers(self, x: Tensor, mask: AttentionMask | list[AttentionMask] | None = None,
                   start: int = 0, stop: int | None = None, need_weights: bool = False
                   ) -> tuple[Tensor, list[Tensor]]:
        """Layers ``start`` up to ``stop`` (all by default) with their extra modules, without
        the final norm: a caller may read a middle layer's output on the way (intermediate
        CTC) and go on from it, in one pass. ``mask`` as in :meth:`forward`."""
        masks = mask if isinstance(mask, list) else [mask] * len(self.layers)
        if len(masks) != len(self.layers):
            raise ValueError(f"one mask per layer: got {len(masks)} masks for "
                             f"{len(self.layers)} layers")
        stop = len(self.layers) if stop is None else stop
        maps = []
        for i in range(start, stop):
            x, weights = self.layers[i](x, masks[i], need_weights)
            if self.extras is not None:
                x = self.extras[i](x, masks[i])
            if weights is not None:
                maps.append(weights)
        return x, maps


class TransformerDecoder(nn.Module):
    """A stack of decoder layers with incremental decoding through per-layer KV caches."""

    def __init__(self, config: LayerConfig, memory_dim: int | None = None,
                 rotary: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config, memory_dim, rotary)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim) if config.norm_first else nn.Identity()

    def new_cache(self) -> list[tuple[KVCache, KVCache]]:
        """Empty (self, cross) caches, one pair per layer, for :meth:`forward`'s ``cache``."""
        return [(KVCache(), KVCache()) for _ in self.layers]

    def forward(self, x: Tensor, memory: Tensor, self_mask: AttentionMask | None = None,
                memory_mask: AttentionMask | list[AttentionMask] | None = None,
                need_weights: bool = False, cache: list[tuple[KVCache, KVCache]] | None = None
                ) -> tuple[Tensor, list[Tensor]]:
        """Full sequence (training) or, with ``cache``, just the new steps (generation).

        ``memory_mask`` is one mask for every layer's cross-attention or a list, one per layer
        (e.g. a monotonic window on some layers' heads only)."""
        memory_masks = (memory_mask if isinstance(memory_mask, list)
                        else [memory_mask] * len(self.layers))
        maps = []
        for i, (layer, layer_mask) in enumerate(zip(self.layers, memory_masks, strict=True)):
            layer_cache = cache[i] if cache is not None else None
            x, weights = layer(x, memory, self_mask, layer_mask, need_weights, layer_cache)
            if weights is not None:
                maps.append(weights)
        return self.norm(x), maps
