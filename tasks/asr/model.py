"""CTC speech recogniser: convolutional subsampling + Transformer encoder with truncated
self-attention + a linear layer over the output units (characters or word pieces).

Speech is ~100 frames a second, so a minute is 6,000 frames and full self-attention costs
O(T^2). Two measures keep it affordable:

- **subsampling** (ESPnet/NeMo style): stacked ``Conv2d(kernel 3, stride 2)`` over
  (time, mel) halve the frame rate per layer, so 4x subsampling gives one encoder frame per
  40 ms and 8x one per 80 ms (fewer frames than characters are spoken: 8x needs word-piece
  outputs, :mod:`tasks.asr.units`); a conv without padding makes output frame j depend on
  input frames ``[factor * j, factor * j + receptive)`` only, which is what exact streaming
  needs;
- **truncated attention**: every layer lets frame p see frames ``[p - left, p + right]``
  only (``AttentionMask(window=...)``, the core's banded path: memory O(T * w)). Stacking L
  layers widens the receptive field to ``L * left`` / ``L * right`` frames, so chunks of a
  long input can be encoded separately with that much context recomputed
  (:meth:`ASREncoder.stream`) and still equal the offline output exactly.

Positions come from rotary embeddings (relative, so a chunk encoded on its own sees the same
offsets as in the whole utterance).

Optionally each layer is followed by a **convolution module** (Conformer, Gulati et al. 2020):
attention mixes frames by content, a depthwise convolution by fixed local offsets - the
formant transitions and co-articulation a character's frames share. It adds ``(k - 1) / 2``
frames of context a side per layer (``k - 1`` left, none right, when the window looks no
frame ahead), which :meth:`ASREncoder.context` counts for streaming.

For training, **intermediate CTC** (InterCTC, Lee & Watanabe 2021) can read a middle layer
too (:meth:`ASREncoder.forward_inter`): the same final LayerNorm and output projection applied
to that layer's output give a second set of CTC log-probabilities, so the lower layers learn to
predict the units themselves. The projection is shared, as in the paper: the middle layer must
then speak the final layer's output space (the regularisation sought), and no parameter is
added, so checkpoints keep their layout. Inference reads the final layer only.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from suite.attention import AttentionMask
from suite.blocks import LayerConfig, TransformerEncoder, rename_on_load
from suite.errors import UsageError
from suite.positional import RotaryEmbedding


def valid_frames(lengths: Tensor, total: int) -> Tensor:
    """``(B, total, 1)`` boolean: true on each utterance's first ``lengths[b]`` frames."""
    return (torch.arange(total, device=lengths.device) < lengths[:, None])[..., None]


class ConvSubsampling(nn.Module):
    """``factor`` in {1, 2, 4, 8}: 0 to 3 ``Conv2d(3x3, stride 2) + ReLU`` over (time, mel),
    then a linear projection of (channels x reduced mel) to ``dim``.

    Input ``(B, T, n_mels)`` -> ``(B, T', dim)`` with ``T' = out_length(T)``; factor 1 is a
    plain linear projection of each frame.
    """

    def __init__(self, n_mels: int, dim: int, factor: int = 4, channels: int = 64) -> None:
        super().__init__()
        if factor not in (1, 2, 4, 8):
            raise ValueError(f"subsampling factor must be 1, 2, 4 or 8, got {factor}")
        self.factor = factor
        self.layers = factor.bit_length() - 1  # 1 -> 0, 2 -> 1, 4 -> 2, 8 -> 3
        convs: list[nn.Module] = []
        freq = n_mels
        for i in range(self.layers):
            convs += [nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2), nn.ReLU()]
            freq = (freq - 1) // 2
        self.conv = nn.Sequential(*convs)
        self.proj = nn.Linear(channels * freq if self.layers else n_mels, dim)

    @property
    def receptive(self) -> int:
        """Input frames one output frame sees: 1, 3, 7 or 15 (each conv: ``2 r + 1``)."""
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


class ConvModule(nn.Module):
    """Conformer convolution block, ``x + dropout(conv(LN(x)))``:
    pointwise ``D -> 2D`` + GLU, depthwise ``Conv1d(kernel)`` over time, LayerNorm, SiLU,
    pointwise ``D -> D``.

    Padded frames are zeroed before the depthwise convolution so they cannot leak into the
    last real frames; ``padding=(left, right)`` frames of zeros pad the sequence ends, as
    the frames outside a streamed chunk's context would. LayerNorm stands in for the paper's
    BatchNorm, whose batch statistics would mix padded frames and differ between streaming
    and offline.
    """

    def __init__(self, dim: int, kernel: int, dropout: float, padding: tuple[int, int]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.conv_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.padding = padding

    def forward(self, x: Tensor, mask: AttentionMask | None = None) -> Tensor:
        """``x`` ``(B, T, D)`` -> ``(B, T, D)``; frames past ``mask.key_lengths`` are padding."""
        h = nn.functional.glu(self.pointwise_in(self.norm(x)), dim=-1)  # (B, T, D)
        if mask is not None and mask.key_lengths is not None:
            h = h.masked_fill(~valid_frames(mask.key_lengths, h.shape[1]), 0.0)
        h = nn.functional.pad(h.transpose(1, 2), self.padding)  # (B, D, left + T + right)
        # fp32: the CPU's bf16 depthwise kernel is slower than its fp32 one
        with torch.autocast(h.device.type, enabled=False):
            h = self.depthwise(h.float()).transpose(1, 2)  # (B, T, D)
        h = self.pointwise_out(nn.functional.silu(self.conv_norm(h)))
        return x + self.dropout(h)


class ASREncoder(nn.Module):
    """Log-mel frames ``(B, T, n_mels)`` -> CTC log-probabilities ``(B, T', vocab)``.

    Args:
        vocab_size: output symbols, CTC blank at index 0.
        encoder: the Transformer encoder's size (pre-norm, rotary positions).
        window: ``(left, right)`` attention span in post-subsampling frames; None = full.
        conv_kernel: depthwise kernel of a :class:`ConvModule` after every layer (odd); 0 for
            a plain Transformer encoder.
        utterance_norm: subtract each utterance's own per-bin mean from its (globally
            normalised) features first - cepstral mean normalisation: a fixed channel (a
            microphone, a telephone line) adds a constant to every log-mel frame, which this
            removes.
        inter_layer: the encoder layer (1 .. depth - 1) whose output :meth:`forward_inter`
            also projects to CTC log-probabilities; None for none.
    """

    def __init__(self, vocab_size: int, encoder: LayerConfig, *, n_mels: int = 80,
                 subsampling: int = 4, conv_channels: int = 64,
                 window: tuple[int, int] | None = (16, 16), conv_kernel: int = 0,
                 utterance_norm: bool = False, inter_layer: int | None = None) -> None:
        super().__init__()
        if conv_kernel and conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd (or 0 for none), got {conv_kernel}")
        if inter_layer is not None and not 1 <= inter_layer < encoder.depth:
            raise UsageError(f"model.inter_ctc_layer must be a middle layer, 1 to "
                             f"{encoder.depth - 1} of the encoder's {encoder.depth}, or null; "
                             f"got {inter_layer}")
        self.inter_layer = inter_layer
        dim = encoder.dim
        self.subsample = ConvSubsampling(n_mels, dim, subsampling, conv_channels)
        self.dropout = nn.Dropout(encoder.dropout)
        self.window = tuple(window) if window is not None else None
        self.utterance_norm = utterance_norm
        # A window that sees no frame ahead gets a causal convolution, so it stays lookahead-free.
        causal = self.window is not None and self.window[1] == 0
        self.conv_padding = ((0, 0) if not conv_kernel else (conv_kernel - 1, 0) if causal
                             else (conv_kernel // 2, conv_kernel // 2))
        conv = (partial(ConvModule, dim, conv_kernel, encoder.dropout, self.conv_padding)
                if conv_kernel else None)
        self.encoder = TransformerEncoder(encoder, RotaryEmbedding(dim // encoder.num_heads),
                                          extra=conv)
        self.head = nn.Linear(dim, vocab_size)
        # checkpoints written before the shared encoder stack held the layers still load
        rename_on_load(self, {r"layers\.": "encoder.layers.",
                              r"convs\.": "encoder.extras.",
                              r"norm\.": "encoder.norm."})

    def _embed(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, AttentionMask]:
        """Features ``(B, T, n_mels)`` -> encoder input ``(B, T', D)``, its lengths ``(B,)``
        and the attention mask over them."""
        if self.utterance_norm:
            frames = valid_frames(lengths.to(features.device), features.shape[1])  # (B, T, 1)
            mean = (features * frames).sum(1, keepdim=True) / frames.sum(1, keepdim=True)
            features = (features - mean) * frames
        x = self.dropout(self.subsample(features))  # (B, T', D)
        out_lengths = self.subsample.out_length(lengths).clamp(min=1)
        return x, out_lengths, AttentionMask(key_lengths=out_lengths, window=self.window)

    def _log_probs(self, x: Tensor) -> Tensor:
        """Encoder output ``(..., D)`` -> float32 CTC log-probabilities ``(..., V)``."""
        return self.head(x).float().log_softmax(-1)

    def forward(self, features: Tensor, lengths: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Returns log-probs ``(B, T', V)`` (float32), their lengths ``(B,)`` and, if asked,
        each layer's attention weights ``(B, H, T', T')``."""
        x, out_lengths, mask = self._embed(features, lengths)
        x, maps = self.encoder(x, mask, need_weights)
        return self._log_probs(x), out_lengths, maps

    def forward_inter(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One pass for intermediate CTC: the final log-probs ``(B, T', V)``, those of layer
        :attr:`inter_layer`'s output through the same final norm and head ``(B, T', V)``, and
        their lengths ``(B,)``."""
        if self.inter_layer is None:
            raise UsageError("forward_inter needs model.inter_ctc_layer (a middle layer)")
        x, out_lengths, mask = self._embed(features, lengths)
        middle, _ = self.encoder.run_layers(x, mask, stop=self.inter_layer)
        x, _ = self.encoder.run_layers(middle, mask, start=self.inter_layer)
        norm = self.encoder.norm
        return self._log_probs(norm(x)), self._log_probs(norm(middle)), out_lengths

    def context(self) -> tuple[int, int]:
        """Encoder frames of left/right context that fix one output frame: each of the L
        layers adds its window and its convolution's padding, ``L * (left + pad_left)`` etc."""
        if self.window is None:
            raise ValueError("streaming needs a truncated window; full attention sees the "
                             "whole input")
        (left, right), (pad_left, pad_right) = self.window, self.conv_padding
        depth = len(self.encoder.layers)
        return depth * (left + pad_left), depth * (right + pad_right)

    def stream(self, features: Tensor, chunk: int = 64) -> Tensor:
        """Encode one long utterance ``(T, n_mels)`` chunk by chunk; returns log-probs
        ``(T', V)`` equal to ``forward`` on the whole input.

        Each chunk of ``chunk`` encoder frames is encoded together with ``L * left`` frames
        before and ``L * right`` after it (recomputed, not cached), which covers its whole
        receptive field; the context frames' outputs are discarded. Memory is bounded by the
        span ``chunk`` plus the :meth:`context` whatever the input length.
        """
        left, right = self.context()
        if self.utterance_norm:  # the one statistic that needs the whole input
            features = features - features.mean(0)
        sub = self.subsample
        total = int(sub.out_length(features.shape[0]))
        outputs = []
        for start in range(0, total, chunk):
            end = min(start + chunk, total)
            lo, hi = max(0, start - left), min(total, end + right)
            # Encoder frames [lo, hi) need input frames [f * lo, f * (hi - 1) + receptive).
            piece = features[sub.factor * lo: sub.factor * (hi - 1) + sub.receptive]
            x = sub(piece[None])  # (1, hi - lo, D)
            x, _ = self.encoder(x, AttentionMask(window=self.window))
            outputs.append(self._log_probs(x[0, start - lo: end - lo]))
        return torch.cat(outputs)
