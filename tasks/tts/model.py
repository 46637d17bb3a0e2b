"""Transformer TTS (Li et al. 2019) from the shared core: phones -> log-mel, r frames a step.

    tokens -> embedding -> 1-D convs -> + alpha * positions -> Transformer encoder -> memory
    mel[r-1::r] (shifted right) -> prenet -> + alpha * positions -> causal decoder with
        cross-attention to the memory -> r mel frames and r stop logits per step -> postnet

Predicting r frames per decoder step (the reduction factor, Tacotron's) makes the decoder
sequence r times shorter than the spectrogram, so each step's cross-attention has to move
along the phones r times faster - closer to the phone rate, which makes the alignment easier
to find - and generation takes r times fewer steps. The prenet's dropout stays on at
inference (Tacotron 2): without it the decoder copies its previous frame instead of listening
to the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from suite.attention import AttentionMask
from suite.blocks import LayerConfig, TransformerDecoder, TransformerEncoder
from suite.positional import sinusoidal_table

POSTNET_CHANNELS = 128
"""The postnet's width, narrower than Tacotron 2's 512: its convolutions over every frame
were the largest part of a training step on a CPU."""


@dataclass(frozen=True)
class Generated:
    """What free-running synthesis gives for a batch.

    Attributes:
        mel: ``(B, frames, n_mels)`` normalised log-mel, zero after each item's end.
        lengths: ``(B,)`` frames of each item.
        alignment: ``(B, steps, tokens)`` cross-attention of the monitored heads (their mean).
        capped: ``(B,)`` True where generation hit the length cap instead of stopping.
        steps: ``(B,)`` valid rows of each item's ``alignment`` (the decoder steps it took).
    """

    mel: Tensor
    lengths: Tensor
    alignment: Tensor
    capped: Tensor
    steps: Tensor


class ScaledPositions(nn.Module):
    """``x + alpha * PE``: sinusoidal positions with a trained scale, since the encoder's and
    the prenet's outputs live at different scales and a fixed sum would swamp one of them."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.alpha = nn.Parameter(torch.ones(1))
        self.register_buffer("table", sinusoidal_table(1024, dim), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        needed = offset + x.shape[1]
        if needed > self.table.shape[0]:
            self.table = sinusoidal_table(2 * needed, self.dim).to(self.table.device)
        return x + self.alpha * self.table[offset:needed].to(x.dtype)


class Prenet(nn.Module):
    """Two ReLU layers with dropout that stays on at inference.

    ``generators`` (one per batch row) make the inference masks a function of the utterance,
    so synthesising a sentence twice gives the same audio; in training the global RNG is used.
    """

    def __init__(self, n_mels: int, hidden: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(n_mels, hidden), nn.Linear(hidden, hidden)])
        self.out = nn.Linear(hidden, dim)
        self.dropout = dropout

    def _drop(self, x: Tensor, generators: Sequence[torch.Generator] | None) -> Tensor:
        if not self.dropout:
            return x
        if generators is None:
            return F.dropout(x, self.dropout, training=True)
        keep = torch.stack([torch.rand(x.shape[1:], generator=g) for g in generators])
        return x * (keep.to(x.device) >= self.dropout) / (1 - self.dropout)

    def forward(self, frames: Tensor, generators: Sequence[torch.Generator] | None = None
                ) -> Tensor:
        for layer in self.layers:
            frames = self._drop(F.relu(layer(frames)), generators)
        return self.out(frames)


class Postnet(nn.Module):
    """Residual conv stack refining the decoder's mel (Tacotron 2): it sees the whole
    spectrogram, so it can fix what a left-to-right decoder could not know yet."""

    def __init__(self, n_mels: int, channels: int, layers: int, kernel: int = 5,
                 dropout: float = 0.5) -> None:
        super().__init__()
        sizes = [n_mels] + [channels] * (layers - 1) + [n_mels]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel, padding=kernel // 2)
                                   for a, b in zip(sizes, sizes[1:], strict=False))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:])
        self.dropout = nn.Dropout(dropout)

    def forward(self, mel: Tensor) -> Tensor:  # (B, T, n_mels)
        x = mel.transpose(1, 2)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = norm(conv(x))
            x = self.dropout(torch.tanh(x) if i < len(self.convs) - 1 else x)
        return mel + x.transpose(1, 2)


class TextEncoder(nn.Module):
    """Token embedding -> ``conv_layers`` x (Conv1d, BatchNorm, ReLU) for local context ->
    scaled positions -> Transformer encoder."""

    def __init__(self, vocab_size: int, config: LayerConfig, conv_layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Sequential(
            nn.Conv1d(config.dim, config.dim, 5, padding=2), nn.BatchNorm1d(config.dim),
            nn.ReLU(), nn.Dropout(config.dropout)) for _ in range(conv_layers))
        self.positions = ScaledPositions(config.dim)
        self.transformer = TransformerEncoder(config)

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, AttentionMask]:
        """``tokens`` ``(B, N)`` -> memory ``(B, N, D)`` and its key-padding mask."""
        pad = (tokens == 0).unsqueeze(1)  # (B, 1, N): keep padding at zero through the convs
        x = self.embedding(tokens).transpose(1, 2)
        for conv in self.convs:
            x = conv(x).masked_fill(pad, 0.0)
        mask = AttentionMask(key_lengths=lengths)
        memory, _ = self.transformer(self.positions(x.transpose(1, 2)), mask)
        return memory, mask


class TransformerTTS(nn.Module):
    """Text-to-mel encoder-decoder; see the module docstring.

    Args:
        vocab_size: input units (PAD = 0, EOS = 1, then phones or characters).
        encoder, decoder: the two stacks' sizes.
        n_mels: mel bins per frame.
        reduction: frames predicted per decoder step (r).
        conv_layers: encoder pre-net convolutions.
        postnet_layers: postnet convolutions; 0 for none.
        prenet_dropout: the decoder prenet's always-on dropout.
    """

    def __init__(self, vocab_size: int, encoder: LayerConfig, decoder: LayerConfig,
                 n_mels: int = 80, reduction: int = 4, conv_layers: int = 3,
                 postnet_layers: int = 5, prenet_dropout: float = 0.5) -> None:
        super().__init__()
        self.n_mels, self.reduction = n_mels, reduction
        self.encoder = TextEncoder(vocab_size, encoder, conv_layers)
        self.prenet = Prenet(n_mels, 256, decoder.dim, prenet_dropout)
        self.positions = ScaledPositions(decoder.dim)
        self.decoder = TransformerDecoder(decoder, memory_dim=encoder.dim)
        self.mel_out = nn.Linear(decoder.dim, reduction * n_mels)
        self.stop_out = nn.Linear(decoder.dim, reduction)
        self.postnet = Postnet(n_mels, POSTNET_CHANNELS, postnet_layers) if postnet_layers else None

    def decoder_inputs(self, mel: Tensor) -> Tensor:
        """Teacher forcing: step t is fed frame ``t*r - 1`` (the last frame of the previous
        step), step 0 a silent all-zero frame. ``(B, S*r, n_mels)`` -> ``(B, S, n_mels)``."""
        r = self.reduction
        last = mel[:, r - 1::r]
        return torch.cat([torch.zeros_like(last[:, :1]), last[:, :-1]], dim=1)

    def steps(self, frames: int) -> int:
        return math.ceil(frames / self.reduction)

    def decode(self, inputs: Tensor, memory: Tensor, memory_mask: AttentionMask,
               need_weights: bool = False) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Decoder inputs ``(B, S, n_mels)`` -> mel ``(B, S*r, n_mels)`` (before the postnet),
        stop logits ``(B, S*r)``, cross-attention maps per layer ``(B, H, S, N)``."""
        x = self.positions(self.prenet(inputs))
        out, maps = self.decoder(x, memory, memory_mask=memory_mask, need_weights=need_weights)
        batch, steps = out.shape[:2]
        mel = self.mel_out(out).view(batch, steps * self.reduction, self.n_mels)
        return mel, self.stop_out(out).view(batch, steps * self.reduction), maps

    def refine(self, mel: Tensor) -> Tensor:
        return self.postnet(mel) if self.postnet is not None else mel

    def forward(self, tokens: Tensor, token_lengths: Tensor, mel: Tensor,
                feedback: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """Teacher-forced pass over ``mel`` ``(B, S*r, n_mels)``; ``feedback`` replaces the fed
        frames (scheduled sampling feeds some of the model's own). Returns mel before and after
        the postnet, stop logits and every decoder layer's cross-attention ``(B, H, S, N)``."""
        memory, memory_mask = self.encoder(tokens, token_lengths)
        inputs = self.decoder_inputs(mel if feedback is None else feedback)
        before, stop, maps = self.decode(inputs, memory, memory_mask, need_weights=True)
        return before, self.refine(before), stop, maps
