"""Multi-head scaled dot-product attention and the mask vocabulary.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + bias) V

Each head projects the input to its own queries, keys and values (d_k = embed_dim / heads);
the heads' outputs are concatenated and mixed by W^O. Scaling by 1/sqrt(d_k) keeps the
logits' variance ~1 whatever the head width, so the softmax does not saturate.

Callers *describe* which keys a query may see with an :class:`AttentionMask` (key padding,
causal, a truncated window, chunks, global tokens on top of a window, an arbitrary boolean
``allowed`` matrix, an additive bias) and the module picks the implementation:

- **fused**: ``torch.nn.functional.scaled_dot_product_attention`` - no mask or causal only
  runs without materialising anything; other masks are materialised once as booleans;
- **banded** (:mod:`suite.banded`): for windows/chunks on long sequences the queries are cut
  into blocks and each block attends only to the key span it can reach (and the global
  tokens), so memory grows as O(T * (w + g)), not O(T^2);
- **explicit**: softmax written out, used only when the attention weights are asked for
  (maps, guided-attention losses);
- **edge list**: when the mask is a graph's edge list (``AttentionMask(edges=...)``), each
  query attends over its incoming edges in O(E) memory (:mod:`suite.edge_list`).

All agree with each other, and a query row that may see no key returns zeros (never
NaN, in forward or backward) - e.g. padded frames whose whole window is padding. Every path
calls the kernel through :func:`suite.sdpa.sdpa` (fp32 for short bf16 spans on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from suite.banded import banded_attention, block_geometry
from suite.edge_list import EdgeList, edge_list_attention
from suite.sdpa import guard_empty_rows, sdpa


@dataclass(frozen=True, eq=False)
class AttentionMask:
    """Which keys each query may attend to; every field that is set must allow a pair.

    Positions are absolute: query ``i`` of a call sits at ``query_offset + i`` (non-zero when
    decoding incrementally with a key/value cache), key ``j`` at ``j``.

    Attributes:
        key_lengths: ``(batch,)`` number of valid keys per sequence (key padding).
        causal: query at position p sees keys at positions <= p.
        window: ``(left, right)`` - query at p sees keys in ``[p - left, p + right]``.
        chunk: chunk size c - query sees only keys of its own chunk (``pos // c``) ...
        chunk_history: ... and of this many chunks before it (streaming with left context).
        allowed: bool ``(Tq, Tk)``, ``(batch, Tq, Tk)`` or ``(batch, heads, Tq, Tk)``;
            True = may attend (graph adjacency, image neighbourhoods).
        bias: float, broadcastable to ``(batch, heads, Tq, Tk)``, added to the logits
            (relative positions, graph distances, bond types).
        query_offset: absolute position of the first query.
        edges: a graph's :class:`~suite.edge_list.EdgeList` (with its own per-edge bias and
            key/value vectors); it describes the whole mask, so no other field is set.
        global_tokens: the first g positions are global (Longformer's [CLS]): each attends to
            every key and every query attends to them, on top of ``window``; key padding,
            ``allowed`` and ``bias`` still apply. Without a window every pair is already
            allowed, so it changes nothing. Not with causal, chunk, edges or a cache.
    """

    key_lengths: Tensor | None = None
    causal: bool = False
    window: tuple[int, int] | None = None
    chunk: int | None = None
    chunk_history: int = 0
    allowed: Tensor | None = None
    bias: Tensor | None = None
    query_offset: int = 0
    edges: EdgeList | None = None
    global_tokens: int = 0

    def __post_init__(self) -> None:
        g = self.global_tokens
        if isinstance(g, bool) or not isinstance(g, int) or g < 0:
            raise ValueError(f"AttentionMask.global_tokens must be an int >= 0, got {g!r}")
        # A global query sees every key, later ones too: that breaks causal and chunked
        # (streaming) masks, and a cached decoding step has no global rows of its own.
        clashes = [name for name, on in (("causal", self.causal),
                                         ("chunk", self.chunk is not None),
                                         ("edges", self.edges is not None),
                                         ("a key/value cache (query_offset)",
                                          self.query_offset != 0)) if on]
        if g and clashes:
            raise ValueError(f"AttentionMask.global_tokens={g} combines with window, "
                             f"key_lengths, allowed and bias only, not {', '.join(clashes)}")

    @property
    def is_banded(self) -> bool:
        """True when each query reaches a bounded span of keys (window and/or chunks)."""
        return self.window is not None or self.chunk is not None

    @property
    def is_plain_causal(self) -> bool:
        """Causal and nothing else: the fused kernel's ``is_causal`` covers it."""
        return (self.causal and not self.is_banded and self.key_lengths is None
                and self.allowed is None and self.bias is None and self.query_offset == 0)

    @property
    def is_empty(self) -> bool:
        return not (self.is_banded or self.causal or self.key_lengths is not None
                    or self.allowed is not None or self.bias is not None
                    or self.edges is not None)

    def positional(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Allowed-ness from positions alone: the :meth:`local` rules, widened by the global
        tokens (a pair is allowed if either end is global).

        ``q_pos`` ``(..., Tq, 1)`` and ``k_pos`` ``(..., 1, Tk)`` broadcast to the result.
        """
        ok = self.local(q_pos, k_pos)
        if self.global_tokens:
            ok = ok | (q_pos < self.global_tokens) | (k_pos < self.global_tokens)
        return ok

    def local(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Allowed-ness from the local rules alone (causal, window, chunk), shaped as
        :meth:`positional`'s."""
        ok = torch.ones(torch.broadcast_shapes(q_pos.shape, k_pos.shape), dtype=torch.bool,
                        device=q_pos.device)
        if self.causal:
            ok &= k_pos <= q_pos
        if self.window is not None:
            left, right = self.window
            ok &= (k_pos >= q_pos - left) & (k_pos <= q_pos + right)
        if self.chunk is not None:
            q_chunk, k_chunk = q_pos // self.chunk, k_pos // self.chunk
            ok &= (k_chunk <= q_chunk) & (k_chunk >= q_chunk - self.chunk_history)
        return ok

    def dense(self, batch: int, tq: int, tk: int, device: torch.device) -> Tensor | None:
        """Materialise the boolean mask ``(batch|1, heads|1, Tq, Tk)``; None if all allowed."""
        mask = None
        if self.causal or self.is_banded:
            q_pos = torch.arange(tq, device=device)[:, None] + self.query_offset
            mask = self.positional(q_pos, torch.arange(tk, device=device)[None, :])[None, None]
        if self.key_lengths is not None:
            valid = torch.arange(tk, device=device)[None, :] < self.key_lengths[:, None]
            valid = valid[:, None, None, :]
            mask = valid if mask is None else mask & valid
        if self.allowed is not None:
            allowed = self.allowed
            while allowed.dim() < 4:
                allowed = allowed.unsqueeze(1 if allowed.dim() == 3 else 0)
            mask = allowed if mask is None else mask & allowed
        return mask


def reference_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                        bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """softmax(QK^T / sqrt(d_k) + bias) V written out; returns ``(output, weights)``.

    ``q`` ``(batch, heads, Tq, d)``, ``k``/``v`` ``(batch, heads, Tk, d)``; ``mask`` bool,
    broadcastable to ``(batch, heads, Tq, Tk)``. Rows with no allowed key get zero weights.
    The weights are computed and returned in fp32 even under autocast: whoever asks for them
    feeds them to a loss (guided attention) or a metric, where bf16's 8-bit mantissa is too coarse.
    """
    with torch.autocast(q.device.type, enabled=False):
        scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(q.shape[-1])
        if bias is not None:
            scores = scores + bias.float()  # (batch, heads, Tq, Tk)
        if mask is not None:
            safe, has_key = guard_empty_rows(mask)
            scores = scores.masked_fill(~safe, float("-inf"))
            weights = torch.softmax(scores, dim=-1) * has_key
        else:
            weights = torch.softmax(scores, dim=-1)
    return weights.to(v.dtype) @ v, weights


def _fused(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, dropout: float) -> Tensor:
    """SDPA; no mask or plain causal never builds a (Tq, Tk) matrix."""
    if mask.is_empty:
        return sdpa(q, k, v, dropout_p=dropout)
    if mask.is_plain_causal and q.shape[-2] == k.shape[-2]:
        return sdpa(q, k, v, dropout_p=dropout, is_causal=True)
    dense = mask.dense(q.shape[0], q.shape[-2], k.shape[-2], q.device)
    has_key = None
    if dense is not None:
        dense, has_key = guard_empty_rows(dense)
    attn_mask = dense
    if mask.bias is not None:  # sdpa casts it to the dtype it attends in
        attn_mask = (mask.bias if dense is None
                     else mask.bias.masked_fill(~dense, float("-inf")))
    out = sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
    return out if has_key is None else out * has_key


def attend(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask | None = None,
           dropout: float = 0.0, need_weights: bool = False, impl: str = "auto"
           ) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention over heads, choosing the implementation from the mask.

    ``q`` ``(batch, heads, Tq, d)``, ``k``/``v`` ``(batch, heads, Tk, d)``. ``impl`` forces
    "fused", "banded" or "explicit" (tests, benchmarks); "auto" picks as described above.
    Returns ``(output (batch, heads, Tq, d), weights (batch, heads, Tq, Tk) or None)``; an
    edge-list mask's weights are ``(E, heads)``, one per edge.
    """
    mask = mask or AttentionMask()
    if mask.edges is not None:
        if not replace(mask, edges=None).is_empty or mask.query_offset or impl != "auto":
            raise ValueError("an edge-list mask describes the whole mask and has one "
                             "implementation; set no other mask field and no impl")
        out, weights = edge_list_attention(q, k, v, mask.edges, dropout)
        return out, weights if need_weights else None
    if mask.key_lengths is not None and bool((mask.key_lengths >= k.shape[-2]).all()):
        mask = replace(mask, key_lengths=None)  # no padding: let the fused kernel skip the mask
    if impl == "auto":
        impl = _choose(mask, q.shape[-2], k.shape[-2], need_weights)
    if impl == "explicit":
        dense = mask.dense(q.shape[0], q.shape[-2], k.shape[-2], q.device)
        bias = None if mask.bias is None else mask.bias.to(q.dtype)
        out, weights = reference_attention(q, k, v, dense, bias)
        if dropout > 0:
            out = F.dropout(weights, dropout) @ v
        return out, weights
    if impl == "banded":
        if not mask.is_banded or mask.allowed is not None or mask.bias is not None:
            raise ValueError("the banded path needs a window or chunk and no allowed/bias")
        if q.shape[-2] != k.shape[-2] or mask.query_offset:
            raise ValueError("the banded path is for self-attention without a cache")
        return banded_attention(q, k, v, mask, dropout), None
    if impl == "fused":
        return _fused(q, k, v, mask, dropout), None
    raise ValueError(f"unknown attention impl {impl!r}; expected auto|fused|banded|explicit")


def _choose(mask: AttentionMask, tq: int, tk: int, need_weights: bool) -> str:
    if need_weights:
        return "explicit"
    banded_ok = (mask.is_banded and mask.allowed is None and mask.bias is None
                 and tq == tk and mask.query_offset == 0)
    if banded_ok:
        block, left, right = block_geometry(mask, tq)
        # only worth it when each block's keys (span + global) are much fewer than tq
        if tq > 2 * (block + left + right + mask.global_tokens):
            return "banded"
    return "fused"


class MultiHeadAttention(nn.Module):
    """Multi-head attention for self- and cross-attention.

    Q = x W^Q, K = m W^K, V = m W^V (m = x for self-attention), split into ``num_heads``
    heads of ``head_dim = embed_dim // num_heads``; each head attends independently and the
    heads are concatenated and mixed by W^O. An optional rotary encoding rotates Q and K by
    their absolute positions so the logits depend on relative position only.

    Args:
        embed_dim: model width d_model.
        num_heads: number of heads h.
        dropout: dropout on attention weights (training only).
        bias: learn biases in the four projections.
        kv_dim: width of the memory for cross-attention (default ``embed_dim``).
        rotary: a :class:`suite.positional.RotaryEmbedding` applied to Q and K, or None.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kv_dim: int | None = None, rotary: nn.Module | None = None) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        kv_dim = kv_dim or embed_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^O
        self.rotary = rotary

    def _split(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, head_dim)
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: AttentionMask | None = None,
                need_weights: bool = False, cache: KVCache | None = None, impl: str = "auto"
                ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` ``(B, Tq, D)`` to ``memory`` ``(B, Tk, kv_dim)`` (default ``x``).

        With a ``cache``, self-attention appends this step's keys/values to it (incremental
        decoding; positions continue from the cache length) and cross-attention projects the
        memory once and reuses it. With an edge-list mask ``x`` is ``(1, N, D)``, the nodes
        of a batch of graphs. Returns ``(output (B, Tq, D), weights or None)``.
        """
        mask = mask or AttentionMask()
        q = self._split(self.q_proj(x))
        offset = cache.length if cache is not None and memory is None else 0
        if cache is not None and memory is not None and cache.length:
            k, v = cache.k, cache.v  # cross-attention: memory already projected
        else:
            source = x if memory is None else memory
            k, v = self._split(self.k_proj(source)), self._split(self.v_proj(source))
            if self.rotary is not None and memory is None:
                k = self.rotary(k, offset)
            if cache is not None:
                k, v = cache.append(k, v) if memory is None else cache.set(k, v)
        if self.rotary is not None and memory is None:
            q = self.rotary(q, offset)
        if offset:
            mask = replace(mask, query_offset=offset)
        dropout = self.dropout if self.training else 0.0
        out, weights = attend(q, k, v, mask, dropout, need_weights, impl)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.embed_dim)
        return self.out_proj(out), weights


class KVCache:
    """Keys and values of one attention layer kept across decoding steps.

    ``k``/``v`` are ``(batch, heads, T_so_far, head_dim)``; self-attention appends each step,
    cross-attention stores the projected memory once.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k, self.v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def set(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k, self.v = k, v
        return k, v
