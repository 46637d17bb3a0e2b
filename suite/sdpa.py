"""The kernel call every attention path shares: SDPA, with empty rows guarded.

On CPU, bf16/fp16 queries with short key spans (<= :data:`CPU_FP32_MAX_KEYS`) are attended in
fp32: PyTorch's reduced-precision CPU flash kernel works in 512-key blocks, so on a few
hundred keys it does mostly padding and its backward runs several times slower than the fp32
kernel. The projections around it keep running in bf16, where the matmuls are fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CPU_FP32_MAX_KEYS = 256


def guard_empty_rows(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(safe_mask, has_key)``: rows with no allowed key are opened up (so kernels see
    no all -inf row and produce no NaN) and ``has_key`` zeros their output afterwards."""
    has_key = mask.any(dim=-1, keepdim=True)
    return mask | ~has_key, has_key


def sdpa(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
         dropout_p: float = 0.0, is_causal: bool = False) -> Tensor:
    """``F.scaled_dot_product_attention``, in fp32 for reduced precision on CPU with short key
    spans (see the module docstring); the output keeps ``q``'s dtype."""
    short_cpu = (q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16)
                 and k.shape[-2] <= CPU_FP32_MAX_KEYS)
    if attn_mask is not None and attn_mask.dtype != torch.bool:  # an additive bias
        attn_mask = attn_mask.to(torch.float32 if short_cpu else q.dtype)
    if not short_cpu:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                              dropout_p=dropout_p, is_causal=is_causal)
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                             attn_mask=attn_mask, dropout_p=dropout_p,
                                             is_causal=is_causal)
    return out.to(q.dtype)
