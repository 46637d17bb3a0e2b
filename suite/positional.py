"""Positional encodings: self-attention is permutation-equivariant, so order must be added.

- :class:`SinusoidalPositionalEncoding` - "Attention Is All You Need": fixed sin/cos at
  geometric frequencies, so PE(pos + k) is a fixed linear map (a rotation per frequency pair)
  of PE(pos) and relative offsets are easy to read off.
- :class:`LearnedPositionalEmbedding` - one trained vector per position (BERT, ViT).
- :func:`sinusoidal_2d` / :class:`PatchPositionalEncoding2D` - half the channels encode the
  patch row, half the column.
- :class:`RotaryEmbedding` - rotates queries and keys by their position, so q.k depends on
  the offset only (relative, and it extends past the training length).
- :class:`RelativePositionBias` - a learned per-head bias for each clipped offset j - i.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_table(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """``(length, dim)`` table: PE[p, 2i] = sin(p / base^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    if dim % 2:
        raise ValueError(f"sinusoidal encoding needs an even dim, got {dim}")
    position = torch.arange(length, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to ``x`` ``(batch, T, dim)`` (positions from ``offset``).

    The table grows on demand, so there is no hard maximum length.
    """

    def __init__(self, dim: int, max_len: int = 4096, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        needed = offset + x.shape[1]
        if needed > self.table.shape[0]:
            self.table = sinusoidal_table(2 * needed, self.dim).to(self.table.device)
        return self.dropout(x + self.table[offset:needed].to(x.dtype))


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per position to ``x`` ``(batch, T, dim)``; T <= ``max_len``."""

    def __init__(self, dim: int, max_len: int, dropout: float = 0.0, init_std: float = 0.02
                 ) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(max_len, dim) * init_std)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        if offset + x.shape[1] > self.embedding.shape[0]:
            raise ValueError(f"sequence of {offset + x.shape[1]} exceeds the learned "
                             f"positions ({self.embedding.shape[0]})")
        return self.dropout(x + self.embedding[offset:offset + x.shape[1]].to(x.dtype))


def sinusoidal_2d(height: int, width: int, dim: int) -> Tensor:
    """``(height * width, dim)`` for a row-major patch grid: rows in the first half of the
    channels, columns in the second, each a 1-D sinusoidal table."""
    if dim % 4:
        raise ValueError(f"2-D sinusoidal encoding needs dim divisible by 4, got {dim}")
    rows = sinusoidal_table(height, dim // 2)[:, None, :].expand(height, width, dim // 2)
    cols = sinusoidal_table(width, dim // 2)[None, :, :].expand(height, width, dim // 2)
    return torch.cat([rows, cols], dim=-1).reshape(height * width, dim)


class PatchPositionalEncoding2D(nn.Module):
    """2-D position of each patch, fixed (sinusoidal) or learned, added to ``(B, H*W, dim)``."""

    def __init__(self, grid: tuple[int, int], dim: int, learned: bool = False) -> None:
        super().__init__()
        table = sinusoidal_2d(grid[0], grid[1], dim)
        if learned:
            self.table = nn.Parameter(table * 0.02 / table.std())
        else:
            self.register_buffer("table", table, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE: rotate each (even, odd) channel pair of q and k by angle pos * theta_i.

    Rotations compose, so <R(p) q, R(s) k> = <q, R(s - p) k>: attention logits depend on the
    relative offset only. Applied to ``(batch, heads, T, head_dim)`` tensors.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head_dim, got {head_dim}")
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        positions = torch.arange(offset, offset + x.shape[-2], device=x.device,
                                 dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq  # (T, head_dim / 2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
        return rotated.flatten(-2)


class RelativePositionBias(nn.Module):
    """A learned bias per head for each offset j - i, clipped to ``[-max_distance, max_distance]``
    (Shaw et al. 2018 style); returns ``(1, heads, Tq, Tk)`` for :class:`AttentionMask.bias`."""

    def __init__(self, num_heads: int, max_distance: int = 32) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Embedding(2 * max_distance + 1, num_heads)
        nn.init.zeros_(self.bias.weight)

    def forward(self, tq: int, tk: int, query_offset: int = 0) -> Tensor:
        device = self.bias.weight.device
        q_pos = torch.arange(query_offset, query_offset + tq, device=device)
        offsets = torch.arange(tk, device=device)[None, :] - q_pos[:, None]
        offsets = offsets.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.bias(offsets).permute(2, 0, 1).unsqueeze(0)
