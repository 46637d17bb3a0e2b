"""Stages of ``attention_core``: windowed vs full attention as T grows, and our encoder layer
against ``torch.nn.TransformerEncoderLayer``.

Every measurement runs in a fresh subprocess; its peak memory is the peak resident size above
the resident size just before the first attention call (:mod:`suite.measure`), so inputs and
start-up are excluded and only what attention itself allocates counts. Times are the median of
repeated forward + backward passes after one warm-up pass.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch

from suite.measure import in_subprocess, interleaved_rates, peak_rss_since, reset_peak_rss

WINDOW = (32, 32)
HEADS, HEAD_DIM = 4, 64
# name -> (impl, windowed); "full (explicit T x T)" is the textbook softmax.
VARIANTS = {
    "full (fused SDPA)": ("fused", False),
    "full (explicit T x T)": ("explicit", False),
    "window +-32 (dense mask)": ("fused", True),
    "window +-32 (banded)": ("banded", True),
}
EXPLICIT_MAX_T = 8192  # T x T memory quadruples per doubling; see reports/attention_core
LONG_T = 8192  # from here on, the O(T^2) variants are timed once
MODULE = "experiments.attention_core.benchmark"  # each measurement runs as `python -m MODULE`


def measure_attention(seq_len: int, impl: str, windowed: bool, repeats: int) -> dict[str, float]:
    """One configuration, in this process: median seconds of fwd+bwd and peak memory (MB)."""
    from suite.attention import AttentionMask, attend

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, seq_len, HEAD_DIM, generator=generator).requires_grad_()
               for _ in range(3))
    mask = AttentionMask(window=WINDOW) if windowed else AttentionMask()
    before = reset_peak_rss()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        out, _ = attend(q, k, v, mask, impl=impl)
        out.sum().backward()
        times.append(time.perf_counter() - start)
        q.grad = k.grad = v.grad = None
    return {"seconds": statistics.median(times[1:]),
            "peak_memory_mb": peak_rss_since(before)}


def _layer_pair(dim: int, heads: int, ffn: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    from suite.blocks import EncoderLayer, LayerConfig

    torch.manual_seed(0)
    ours = EncoderLayer(LayerConfig(dim=dim, num_heads=heads, ffn_dim=ffn, dropout=0.1))
    theirs = torch.nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.1, activation="gelu",
                                              batch_first=True, norm_first=True)
    return ours, theirs


def measure_layers(dtype: str, rounds: int, steps: int, batch: int = 32, seq_len: int = 128,
                   dim: int = 256, heads: int = 4, ffn: int = 1024) -> dict[str, float]:
    """Train-step throughput (sequences/s) of both layers, interleaved round by round so
    machine noise hits both alike (one warm-up round); returns the median of each."""
    from suite.attention import AttentionMask

    ours, theirs = _layer_pair(dim, heads, ffn)
    x = torch.randn(batch, seq_len, dim)
    mask = AttentionMask(key_lengths=torch.full((batch,), seq_len))
    padding = torch.zeros(batch, seq_len, dtype=torch.bool)
    calls = {"ours": (ours, lambda: ours(x, mask)[0]),
             "torch": (theirs, lambda: theirs(x, src_key_padding_mask=padding))}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")

    def train_step(call: Any, optimizer: torch.optim.Optimizer) -> None:
        with autocast:
            loss = call().float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    steps_by_name = {name: partial(train_step, call, torch.optim.AdamW(layer.parameters(),
                                                                       lr=1e-4))
                     for name, (layer, call) in calls.items()}
    return interleaved_rates(steps_by_name, rounds, steps, batch, warmup_rounds=1)


def attention_rows(lengths: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    """Stage ``attention``: one row per (variant, T); ``repeats`` timed passes each (one at
    ``LONG_T`` and beyond, except for the banded path)."""
    rows = []
    for seq_len in lengths:
        for name, (impl, windowed) in VARIANTS.items():
            if impl == "explicit" and seq_len > EXPLICIT_MAX_T:
                continue
            passes = repeats if seq_len < LONG_T or impl == "banded" else 1
            result = in_subprocess(MODULE, ["attention", str(seq_len), impl, str(int(windowed)),
                                  str(passes)])
            print(f"  T={seq_len:6d} {name:28s} {result}", flush=True)
            rows.append({"name": f"{name} T={seq_len}", "group": name, "model": name,
                         "seq_len": seq_len, "precision": "32-true", "params": 0,
                         "metrics": result})
    return rows


def layer_rows(rounds: int, steps: int) -> list[dict[str, Any]]:
    """Stage ``encoder-layer``: ours vs PyTorch's layer in fp32 and bf16-mixed, ``rounds``
    interleaved rounds of ``steps`` train steps."""
    rows = []
    for dtype in ("fp32", "bf16"):
        result = in_subprocess(MODULE, ["layers", dtype, str(rounds), str(steps)])
        print(f"  encoder layer {dtype}: {result}", flush=True)
        rows.append({"name": f"encoder-layer-{dtype}", "group": "encoder layer",
                     "model": "EncoderLayer vs nn.TransformerEncoderLayer",
                     "precision": "bf16-mixed" if dtype == "bf16" else "32-true",
                     "metrics": {"ours_samples_per_second": result.get("ours"),
                                 "torch_samples_per_second": result.get("torch"),
                                 "ratio": (result["ours"] / result["torch"])
                                 if "ours" in result else None}})
    return rows


def _main(argv: list[str]) -> None:
    if argv[0] == "attention":
        seq_len, impl, windowed, repeats = int(argv[1]), argv[2], argv[3] == "1", int(argv[4])
        print(json.dumps(measure_attention(seq_len, impl, windowed, repeats)))
    else:
        print(json.dumps(measure_layers(argv[1], int(argv[2]), int(argv[3]))))


if __name__ == "__main__":
    _main(sys.argv[1:])
