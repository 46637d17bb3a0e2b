"""Stage ``scaling``: the speech encoder's forward time and peak memory on 10 s .. 10 min of
audio, full vs truncated attention.

A freshly initialised encoder of ``suite train asr`` with the variant's window (eval, fp32,
batch 1, lengths given as in evaluation) encodes random features, each (length, variant) in
its own subprocess; peak memory is the peak resident size above the resident size just
before the forward (:mod:`suite.measure`). A cell that fails or exceeds its time limit is
recorded as such. Full attention runs twice: through SDPA's fused kernel, which never
materialises the ``(T, T)`` weights (memory O(T), time still O(T^2)), and through SDPA's math
backend, the textbook softmax(QK^T / sqrt(d_k)) V whose O(T^2) memory motivates truncation.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import yaml

from suite import paths
from suite.measure import in_subprocess, peak_rss_since, reset_peak_rss
from suite.spec import build_module

DEFAULT_WINDOW: tuple[int, int] = tuple(
    yaml.safe_load((paths.ROOT / "configs/asr/default.yaml").read_text())["model"]["window"])
"""The default recogniser's window (``configs/asr/default.yaml``, which the stage depends on)."""
TRUNCATED = f"window ({DEFAULT_WINDOW[0]},{DEFAULT_WINDOW[1]})"
"""The truncated variant's name."""
VARIANTS: dict[str, tuple[tuple[int, int] | None, str]] = {
    "full": (None, "fused"),
    "full (materialised)": (None, "math"),
    TRUNCATED: (DEFAULT_WINDOW, "fused"),
}
"""name -> (window, kernel); ``math`` forces SDPA's math backend (materialised weights)."""
TIMEOUT_S = 600
MODULE = "experiments.truncated_attention.scaling"  # each cell runs as `python -m MODULE`


def measure_encoder(seconds: float, window: tuple[int, int] | None, kernel: str = "fused"
                    ) -> dict[str, float]:
    """Forward time and peak memory of the default encoder on ``seconds`` of audio;
    ``kernel="math"`` materialises the attention weights (see the module docstring)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from tasks.asr.features import N_MELS

    torch.manual_seed(0)
    window_arg = None if window is None else list(window)
    model = build_module("asr", window=window_arg).model.eval()  # `suite train asr`'s encoder
    frames = int(seconds * 100)  # 10 ms hop
    features = torch.randn(1, frames, N_MELS)
    before = reset_peak_rss()
    start = time.perf_counter()
    backends = sdpa_kernel([SDPBackend.MATH]) if kernel == "math" else contextlib.nullcontext()
    with torch.no_grad(), backends:
        model(features, torch.tensor([frames]))
    return {"seconds": time.perf_counter() - start, "peak_memory_mb": peak_rss_since(before),
            "encoder_frames": int(model.subsample.out_length(frames))}


def _row(seconds: int, name: str, window: tuple[int, int] | None, kernel: str
         ) -> dict[str, Any]:
    args = [str(seconds), "none" if window is None else f"{window[0]},{window[1]}", kernel]
    metrics = in_subprocess(MODULE, args, timeout=TIMEOUT_S)
    print(f"  scaling {name:16s} {seconds:4d} s: {metrics}", flush=True)
    return {"name": f"scaling {name} {seconds}s", "group": f"scaling {name}", "head": "asr",
            "model": name, "audio_seconds": seconds, "precision": "32-true",
            "metrics": metrics}


def rows(seconds: Sequence[int]) -> list[dict[str, Any]]:
    """One row per (audio length, variant)."""
    return [_row(length, name, window, kernel) for length in seconds
            for name, (window, kernel) in VARIANTS.items()]


if __name__ == "__main__":
    length, spec, kernel_name = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    win = None if spec == "none" else tuple(int(v) for v in spec.split(","))
    print(json.dumps(measure_encoder(length, win, kernel_name)))
