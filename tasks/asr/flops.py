"""How much of the CPU's matmul throughput one ASR training step achieves.

:func:`step_flops` counts the FLOPs of one training step (forward, CTC loss, backward) of the
real model with ``torch.utils.flop_counter.FlopCounterMode``: matrix products, convolutions
and attention, at ``2 * m * n * k`` per product, whatever the dtype. :func:`matmul_peak`
measures what the CPU's bf16 matmul reaches. The achieved rate of a step is
``step_flops(...) / seconds_per_step``, to be read beside the peak.

PyTorch's counter has no formula for the CPU's fused attention kernel
(``_scaled_dot_product_flash_attention_for_cpu`` and its backward), which every attention
path of this model ends in; without one, attention would count as zero. :data:`CPU_ATTENTION`
adds them with PyTorch's own formulas for the GPU's fused kernels (the dense products the
kernel computes, masked entries included, as for those).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from suite.blocks import LayerConfig
from tasks.asr.features import N_MELS
from tasks.asr.model import ASREncoder
from tasks.asr.text import BLANK_ID
from tasks.asr.units import CHAR, units_size


def _cpu_attention(query: Sequence[int], key: Sequence[int], value: Sequence[int],
                   *args: object, **kwargs: object) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out: Sequence[int], query: Sequence[int],
                            key: Sequence[int], value: Sequence[int], *args: object,
                            **kwargs: object) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


_aten = torch.ops.aten
CPU_ATTENTION = {_aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
                 _aten._scaled_dot_product_flash_attention_for_cpu_backward:
                     _cpu_attention_backward}
"""FlopCounterMode formulas (tensor arguments passed as shapes) for the CPU attention kernel."""


def count_step_flops(model: ASREncoder, batch: int, frames: int) -> int:
    """FLOPs of one training step of ``model`` on ``batch`` utterances of ``frames`` 10 ms
    frames each: forward, CTC loss and backward, counted on random features (the count
    depends on shapes only). Targets are a quarter of the encoder frames long."""
    features = torch.randn(batch, frames, N_MELS)
    lengths = torch.full((batch,), frames)
    out_frames = int(model.subsample.out_length(frames))
    target_length = max(1, out_frames // 4)
    targets = torch.randint(1, model.head.out_features, (batch, target_length))
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        log_probs, out_lengths, _ = model(features, lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths,
                          torch.full((batch,), target_length), blank=BLANK_ID,
                          zero_infinity=True)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def step_flops(encoder: LayerConfig, batch: int, frames: int, units: str = CHAR,
               **options: object) -> int:
    """FLOPs of one training step of the recogniser of this ``encoder`` size, output
    ``units`` (``char`` or ``bpe-N``) and :class:`ASREncoder` ``options`` (``subsampling``,
    ``conv_channels``, ``window``, ``conv_kernel``, ...) on ``batch`` x ``frames`` frames."""
    model = ASREncoder(units_size(units), encoder, n_mels=N_MELS, **options)
    return count_step_flops(model, batch, frames)


def matmul_peak(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.bfloat16
                ) -> float:
    """The CPU's matmul rate in FLOP/s: the best of ``repeats`` timed ``size`` x ``size``
    products under ``dtype`` autocast (the kernel training's mixed precision runs; float32
    runs without), after one untimed warm-up; operands are cast beforehand so only the
    product is timed."""
    a, b = (torch.randn(size, size).to(dtype) for _ in range(2))
    best = float("inf")
    with torch.autocast("cpu", dtype=dtype, enabled=dtype in (torch.bfloat16, torch.float16)):
        torch.matmul(a, b)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best
