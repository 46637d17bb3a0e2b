"""Stage ``long-documents`` of ``sentiment``: what one review's length costs a training step
under full self-attention and under local + global attention (each token sees a window, [CLS]
sees and is seen by all: Longformer's pattern, the core's banded path).

Each (variant, length) is measured in a fresh subprocess (:func:`suite.measure.in_subprocess`):
the fine-tuning model as ``configs/sentiment/finetune.yaml`` builds it, one review of that
many tokens, forward + backward under bf16 autocast as training runs it; the median of the
timed passes after one warm-up, and the peak resident memory above the level before the first
pass. Which tokens the review holds does not change the cost, so they are drawn from a fixed
generator.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from suite.measure import in_subprocess, peak_rss_since, reset_peak_rss
from suite.spec import build_module

CONFIG = "configs/sentiment/finetune.yaml"
VOCAB_SIZE = 16000  # configs/sentiment/pretrain.yaml's tokenizer
MODULE = "experiments.sentiment.long_documents"
TIMEOUT_S = 600


def variants(window: int) -> dict[str, int | None]:
    """Variant name -> the model's ``attention_window`` (None: full attention)."""
    return {"full attention": None, f"local +-{window} + global [CLS]": window}


def measure(length: int, window: int | None, repeats: int) -> dict[str, float]:
    """In this process: median seconds of one review's forward + backward, and peak MB."""
    torch.manual_seed(0)
    module = build_module("sentiment", CONFIG, vocab_size=VOCAB_SIZE, max_length=length,
                          attention_window=window)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, VOCAB_SIZE, (1, length), generator=generator)  # (1, T)
    tokens[:, 0] = 2  # [CLS]
    lengths = torch.tensor([length])
    before = reset_peak_rss()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = module(tokens, lengths)
        logits.float().sum().backward()
        module.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times[1:]), "peak_memory_mb": peak_rss_since(before)}


def rows(lengths: Sequence[int], window: int = 64, repeats: int = 3) -> list[dict[str, Any]]:
    """One row per (variant, length): ``seconds`` per review step and ``peak_memory_mb``."""
    out = []
    for length in lengths:
        for name, variant_window in variants(window).items():
            metrics = in_subprocess(MODULE, [str(length), str(variant_window or 0),
                                             str(repeats)], timeout=TIMEOUT_S)
            print(f"  {name:32s} T={length:5d}: {metrics}", flush=True)
            out.append({"name": f"{name} T={length}", "group": name, "head": "sentiment",
                        "model": name, "seq_len": length, "precision": "bf16-mixed",
                        "metrics": metrics})
    return out


if __name__ == "__main__":
    seq_len, window_arg, passes = (int(arg) for arg in sys.argv[1:4])
    print(json.dumps(measure(seq_len, window_arg or None, passes)))
