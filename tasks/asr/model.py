"""CTC speech recogniser: convolutional subsampling + Transformer encoder with truncated
self-attention + a linear layer over characters.

Speech is ~100 frames a second, so a minute is 6,000 frames and full self-attention costs
O(T^2). Two measures keep it affordable:

- **subsampling** (ESPnet/NeMo style): stacked ``Conv2d(kernel 3, stride 2)`` over
  (time, mel) halve the frame rate per layer, so 4x subsampling gives one encoder frame per
  40 ms; a conv without padding makes output frame j depend on input frames
  ``[factor * j, factor * j + receptive)`` only, which is what exact streaming needs;
- **truncated attention**: every layer lets frame p see frames ``[p - left, p + right]``
  only (``AttentionMask(window=...)``, the core's banded path: memory O(T * w)). Stacking L
  layers widens the receptive field to ``L * left`` / ``L * right`` frames, so chunks of a
  long input can be encoded separately with that much context recomputed
  (:meth:`ASREncoder.stream`) and still equal the offline output exactly.

Positions come from rotary embeddings (relative, so a chunk encoded on its own sees the same
offsets as in the whole utterance).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from suite.attention import AttentionMask
from suite.blocks import LayerConfig, TransformerEncoder
from suite.positional import RotaryEmbedding


class ConvSubsampling(nn.Module):
    """``factor`` in {1, 2, 4}: 0, 1 or 2 ``Conv2d(3x3, stride 2) + ReLU`` over (time, mel),
    then a linear projection of (channels x reduced mel) to ``dim``.

    Input ``(B, T, n_mels)`` -> ``(B, T', dim)`` with ``T' = out_length(T)``; factor 1 is a
    plain linear projection of each frame.
    """

    def __init__(self, n_mels: int, dim: int, factor: int = 4, channels: int = 64) -> None:
        super().__init__()
        if factor not in (1, 2, 4):
            raise ValueError(f"subsampling factor must be 1, 2 or 4, got {factor}")
        self.factor = factor
        self.layers = factor.bit_length() - 1  # 1 -> 0, 2 -> 1, 4 -> 2
        convs: list[nn.Module] = []
        freq = n_mels
        for i in range(self.layers):
            convs += [nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2), nn.ReLU()]
            freq = (freq - 1) // 2
        self.conv = nn.Sequential(*convs)
        self.proj = nn.Linear(channels * freq if self.layers else n_mels, dim)

    @property
    def receptive(self) -> int:
        """Input frames one output frame sees: 1, 3 or 7."""
        return 2 ** (self.layers + 1) - 1 if self.layers else 1

    def out_length(self, length: Tensor | int) -> Tensor | int:
        """Output frames for ``length`` input frames (each conv: ``(L - 1) // 2``)."""
        for _ in range(self.layers):
            length = (length - 1) // 2
        return length

    def forward(self, x: Tensor) -> Tensor:
        if not self.layers:
            return self.proj(x)
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        return self.proj(x.transpose(1, 2).flatten(2))  # (B, T', C * F') -> (B, T', dim)


class ASREncoder(nn.Module):
    """Log-mel frames ``(B, T, n_mels)`` -> CTC log-probabilities ``(B, T', vocab)``.

    Args:
        vocab_size: output symbols, CTC blank at index 0.
        window: ``(left, right)`` attention span in post-subsampling frames; None = full.
    """

    def __init__(self, vocab_size: int, n_mels: int = 80, dim: int = 192, depth: int = 6,
                 num_heads: int = 4, ffn_dim: int = 768, dropout: float = 0.1,
                 subsampling: int = 4, conv_channels: int = 64,
                 window: tuple[int, int] | None = (16, 16)) -> None:
        super().__init__()
        self.subsample = ConvSubsampling(n_mels, dim, subsampling, conv_channels)
        self.dropout = nn.Dropout(dropout)
        config = LayerConfig(dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout)
        self.encoder = TransformerEncoder(config, depth, rotary=RotaryEmbedding(dim // num_heads))
        self.head = nn.Linear(dim, vocab_size)
        self.window = tuple(window) if window is not None else None
        self.depth = depth

    def forward(self, features: Tensor, lengths: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Returns log-probs ``(B, T', V)`` (float32), their lengths ``(B,)`` and, if asked,
        each layer's attention weights ``(B, H, T', T')``."""
        x = self.dropout(self.subsample(features))  # (B, T', D)
        out_lengths = self.subsample.out_length(lengths).clamp(min=1)
        mask = AttentionMask(key_lengths=out_lengths, window=self.window)
        x, maps = self.encoder(x, mask, need_weights)
        return self.head(x).float().log_softmax(-1), out_lengths, maps

    def context(self) -> tuple[int, int]:
        """Encoder frames of left/right context that fix one output frame: L*left, L*right."""
        if self.window is None:
            raise ValueError("streaming needs a truncated window; full attention sees the "
                             "whole input")
        return self.depth * self.window[0], self.depth * self.window[1]

    def stream(self, features: Tensor, chunk: int = 64) -> Tensor:
        """Encode one long utterance ``(T, n_mels)`` chunk by chunk; returns log-probs
        ``(T', V)`` equal to ``forward`` on the whole input.

        Each chunk of ``chunk`` encoder frames is encoded together with ``L * left`` frames
        before and ``L * right`` after it (recomputed, not cached), which covers its whole
        receptive field; the context frames' outputs are discarded. Memory is bounded by the
        span ``chunk + L * (left + right)`` whatever the input length.
        """
        left, right = self.context()
        sub = self.subsample
        total = int(sub.out_length(features.shape[0]))
        outputs = []
        for start in range(0, total, chunk):
            end = min(start + chunk, total)
            lo, hi = max(0, start - left), min(total, end + right)
            # Encoder frames [lo, hi) need input frames [f * lo, f * (hi - 1) + receptive).
            piece = features[sub.factor * lo: sub.factor * (hi - 1) + sub.receptive]
            x = sub(piece[None])  # (1, hi - lo, D)
            mask = AttentionMask(window=self.window)
            x, _ = self.encoder(x, mask)
            outputs.append(self.head(x[0, start - lo: end - lo]).float().log_softmax(-1))
        return torch.cat(outputs)
