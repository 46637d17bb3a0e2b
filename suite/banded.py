"""Banded attention: windows, chunks and global tokens without a ``(T, T)`` matrix.

Queries are cut into blocks and each block attends only to the key span its window or chunk
can reach, so memory and time grow as O(T * (block + reach)), not O(T^2).

Global tokens (Longformer, Beltagy et al. 2020, where [CLS] is global) add g keys that every
query sees and g queries that see every key. Each block attends to the g global keys next to
its span (O(T * g) more), and the g global queries get their own full-attention call over
the sequence (O(g * T)); both stay linear in T for a fixed window and g.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from suite.sdpa import guard_empty_rows, sdpa


class BandedMask(Protocol):
    """What the banded path reads of a :class:`suite.attention.AttentionMask` (named here
    so that this module does not import the one that imports it)."""

    key_lengths: Tensor | None
    causal: bool
    window: tuple[int, int] | None
    chunk: int | None
    chunk_history: int
    global_tokens: int

    def local(self, q_pos: Tensor, k_pos: Tensor) -> Tensor: ...


def block_geometry(mask: BandedMask, seq_len: int) -> tuple[int, int, int]:
    """``(block, reach_left, reach_right)``: queries go in blocks of ``block``; a block
    starting at s needs keys ``[s - reach_left, s + block + reach_right)``."""
    if mask.chunk is not None:
        block = mask.chunk
        reach_left = mask.chunk_history * mask.chunk
        if mask.window is not None:
            reach_left = min(reach_left, mask.window[0])
        return block, reach_left, 0
    left, right = mask.window  # type: ignore[misc]
    right = 0 if mask.causal else right
    block = max(16, min(seq_len, 2 * (left + right), 256))
    return block, left, right


def banded_attention(q: Tensor, k: Tensor, v: Tensor, mask: BandedMask,
                     dropout: float = 0.0) -> Tensor:
    """Self-attention ``(B, H, T, d)`` under a window/chunk mask (optionally with global
    tokens and key padding), never materialising a ``(T, T)`` tensor."""
    seq_len = q.shape[-2]
    n_global = min(mask.global_tokens, seq_len)
    out = _blocks(q, k, v, mask, dropout, n_global)  # (B, H, T, d)
    if not n_global:
        return out
    # The global queries' rows of ``out`` saw only their band; replace them.
    top = _global_rows(q[:, :, :n_global], k, v, mask.key_lengths, dropout)  # (B, H, g, d)
    return torch.cat([top, out[:, :, n_global:]], dim=2)


def _blocks(q: Tensor, k: Tensor, v: Tensor, mask: BandedMask, dropout: float,
            n_global: int) -> Tensor:
    """Every query attends to its block's key span plus the first ``n_global`` keys.

    Queries ``(B, H, T, d)`` are cut into ``n`` blocks of ``b``; keys/values are padded by the
    reach on both sides and unfolded into overlapping spans of ``span = b + reach`` keys, with
    the global keys put in front of every span. Each block runs SDPA against its own keys,
    blocks folded into SDPA's batch and heads kept as its heads, so one ``(b, g + span)`` mask
    per block serves every head. Window, causal and chunk rules are translation-invariant by
    whole blocks, so one pattern serves every block; only the sequence ends, key padding and
    the global keys vary.
    """
    batch, heads, seq_len, head_dim = q.shape
    block, reach_left, reach_right = block_geometry(mask, seq_len)
    n_blocks = math.ceil(seq_len / block)
    span = block + reach_left + reach_right
    q_pad = n_blocks * block - seq_len
    if q_pad:
        q = F.pad(q, (0, 0, 0, q_pad))
    q_blocks = q.view(batch, heads, n_blocks, block, head_dim).transpose(1, 2).reshape(
        batch * n_blocks, heads, block, head_dim)
    # Keys padded so that block i's span starts at padded index i * block.
    kv_pad = (0, 0, reach_left, q_pad + reach_right)

    def keys(x: Tensor) -> Tensor:  # (B, H, T, d) -> (B * n, H, g + span, d)
        local = F.pad(x, kv_pad).unfold(2, span, block)  # (B, H, n, d, span), a view
        local = local.permute(0, 2, 1, 4, 3)  # (B, n, H, span, d)
        if n_global:
            shared = x[:, None, :, :n_global].expand(batch, n_blocks, heads, n_global, head_dim)
            local = torch.cat([shared, local], dim=3)  # (B, n, H, g + span, d)
        return local.reshape(batch * n_blocks, heads, n_global + span, head_dim)

    device = q.device
    # The pattern of an interior block (far enough from 0 that every key index is >= 0).
    first = math.ceil(reach_left / block) * block
    q_pos = first + torch.arange(block, device=device)
    k_pos = first - reach_left + torch.arange(span, device=device)
    pattern = mask.local(q_pos[:, None], k_pos[None, :])  # (b, span)
    k_abs = (torch.arange(n_blocks, device=device)[:, None] * block - reach_left
             + torch.arange(span, device=device))  # (n, span) absolute key positions
    limit = torch.full((batch, 1, 1), seq_len, device=device)
    if mask.key_lengths is not None:
        limit = mask.key_lengths.clamp(max=seq_len).view(batch, 1, 1)
    # A global key inside a span is already in front of it: counting it twice would weigh it
    # twice in the softmax.
    valid = (k_abs >= n_global) & (k_abs < limit)  # (B, n, span)
    allowed = pattern & valid[:, :, None, :]  # (B, n, b, span)
    if n_global:
        shared = torch.arange(n_global, device=device) < limit  # (B, 1, g)
        shared = shared[:, :, None, :].expand(batch, n_blocks, block, n_global)
        allowed = torch.cat([shared, allowed], dim=-1)  # (B, n, b, g + span)
    has_key = allowed.any(dim=-1, keepdim=True)
    some_empty = not bool(has_key.all())
    if some_empty:
        allowed = allowed | ~has_key
    out = sdpa(q_blocks, keys(k), keys(v), dropout_p=dropout,
               attn_mask=allowed.reshape(batch * n_blocks, 1, block, n_global + span))
    if some_empty:  # out: (B * n, H, b, d)
        out = out * has_key.reshape(batch * n_blocks, 1, block, 1)
    out = out.view(batch, n_blocks, heads, block, head_dim).transpose(1, 2)
    return out.reshape(batch, heads, n_blocks * block, head_dim)[:, :, :seq_len]


def _global_rows(q: Tensor, k: Tensor, v: Tensor, key_lengths: Tensor | None,
                 dropout: float) -> Tensor:
    """Global queries ``(B, H, g, d)`` attend to every valid key of ``k``/``v``
    ``(B, H, T, d)``: a ``(g, T)`` problem per head."""
    if key_lengths is None:
        return sdpa(q, k, v, dropout_p=dropout)
    valid = torch.arange(k.shape[-2], device=k.device) < key_lengths[:, None]  # (B, T)
    safe, has_key = guard_empty_rows(valid[:, None, None, :])  # (B, 1, 1, T), (B, 1, 1, 1)
    return sdpa(q, k, v, attn_mask=safe, dropout_p=dropout) * has_key
