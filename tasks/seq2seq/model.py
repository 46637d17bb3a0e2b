"""Encoder-decoder Transformer ("Attention Is All You Need", small) from the shared core."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from suite.attention import AttentionMask
from suite.blocks import LayerConfig, TransformerDecoder, TransformerEncoder
from suite.positional import SinusoidalPositionalEncoding


class Seq2SeqTransformer(nn.Module):
    """Shared token embedding (scaled by sqrt(d) as in the paper) for source, target and the
    output projection; sinusoidal positions; encoder with key padding; causal decoder with
    cross-attention to the memory. ``config`` sizes both stacks, as in the paper."""

    def __init__(self, vocab_size: int, config: LayerConfig) -> None:
        super().__init__()
        self.dim = config.dim
        self.embedding = nn.Embedding(vocab_size, config.dim)
        nn.init.normal_(self.embedding.weight, std=config.dim**-0.5)
        self.positions = SinusoidalPositionalEncoding(config.dim, dropout=config.dropout)
        self.encoder = TransformerEncoder(config)
        self.decoder = TransformerDecoder(config)
        self.head = nn.Linear(config.dim, vocab_size, bias=False)
        self.head.weight = self.embedding.weight

    def embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        return self.positions(self.embedding(tokens) * math.sqrt(self.dim), offset)

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, AttentionMask]:
        memory_mask = AttentionMask(key_lengths=src_lengths)
        memory, _ = self.encoder(self.embed(src), memory_mask)
        return memory, memory_mask

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Teacher-forced logits ``(B, T, vocab)`` and the cross-attention maps if asked."""
        memory, memory_mask = self.encode(src, src_lengths)
        out, maps = self.decoder(self.embed(tgt_in), memory, memory_mask=memory_mask,
                                 need_weights=need_weights)
        return self.head(out), maps

    @torch.no_grad()
    def greedy(self, src: Tensor, src_lengths: Tensor, bos: int, eos: int, max_len: int
               ) -> Tensor:
        """Greedy decoding, one token per step, reusing keys/values through the KV cache:
        each step costs O(T) instead of re-running the whole prefix. ``(B, <= max_len)``."""
        memory, memory_mask = self.encode(src, src_lengths)
        cache = self.decoder.new_cache()
        token = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        outputs = []
        for step in range(max_len):
            out, _ = self.decoder(self.embed(token, offset=step), memory,
                                  memory_mask=memory_mask, cache=cache)
            token = self.head(out[:, -1]).argmax(-1, keepdim=True)
            outputs.append(token)
            done |= token.squeeze(1) == eos
            if done.all():
                break
        return torch.cat(outputs, dim=1)
