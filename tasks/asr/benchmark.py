"""Experiment ``truncated_attention``: a window sweep of trained recognisers, an encoder scaling
benchmark, and pocketsphinx on the same real speech - one table of results.

1. **Sweep** - the ``runs`` of ``configs/experiments/truncated_attention.yaml`` are ordinary
   ``suite train asr`` runs in subprocesses (:func:`suite.experiment.execute`, resumable), the
   default model plus full attention and windows (left, right) in encoder frames.
2. **Scaling** - a freshly initialised default-size encoder (eval, fp32, batch 1, lengths
   given as in evaluation) encodes 10 s .. 10 min of random features, full vs truncated
   attention, each length in its own subprocess: forward seconds and peak memory (the peak
   resident size above the resident size just before the forward, Linux ``VmHWM`` after
   ``clear_refs``); a run that fails or exceeds its time limit is recorded as such. Full
   attention runs twice: through SDPA's fused kernel, which never materialises the
   ``(T, T)`` weights (memory O(T), time still O(T^2)), and through SDPA's math backend,
   the textbook softmax(QK^T / sqrt(d_k)) V whose O(T^2) memory motivates truncation.
3. **Peer** - pocketsphinx on the Asterisk prompts (:mod:`tasks.asr.peer`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from suite.experiment import ROOT, execute, load_spec, plan_runs
from tasks.asr.report import render

SCALING_SECONDS = [10, 30, 60, 120, 300, 600]
SCALING_VARIANTS: dict[str, tuple[tuple[int, int] | None, str]] = {
    "full": (None, "fused"),
    "full (materialised)": (None, "math"),
    "window (16,16)": ((16, 16), "fused"),
}
"""name -> (window, kernel); ``math`` forces SDPA's math backend (materialised weights)."""
SCALING_TIMEOUT_S = 600


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith(field))
    return int(line.split()[1]) / 1024


def measure_encoder(seconds: float, window: tuple[int, int] | None, kernel: str = "fused"
                    ) -> dict[str, float]:
    """Forward time and peak memory of the default encoder on ``seconds`` of audio;
    ``kernel="math"`` materialises the attention weights (see the module docstring)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from tasks.asr.model import ASREncoder
    from tasks.asr.text import VOCAB

    torch.manual_seed(0)
    model = ASREncoder(len(VOCAB), dim=144, depth=6, num_heads=4, ffn_dim=576,
                       conv_channels=32, window=window).eval()
    frames = int(seconds * 100)
    features = torch.randn(1, frames, 80)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark: count only what the forward allocates
    before = _proc_status_mb("VmRSS")
    start = time.perf_counter()
    backends = sdpa_kernel([SDPBackend.MATH]) if kernel == "math" else contextlib.nullcontext()
    with torch.no_grad(), backends:
        model(features, torch.tensor([frames]))
    return {"seconds": time.perf_counter() - start,
            "peak_memory_mb": _proc_status_mb("VmHWM") - before,
            "encoder_frames": int(model.subsample.out_length(frames))}


def _scaling_row(seconds: int, name: str, window: tuple[int, int] | None, kernel: str
                 ) -> dict[str, Any]:
    args = [str(seconds), "none" if window is None else f"{window[0]},{window[1]}", kernel]
    try:
        proc = subprocess.run([sys.executable, "-m", "tasks.asr.benchmark", *args],
                              capture_output=True, text=True, timeout=SCALING_TIMEOUT_S)
        if proc.returncode == 0:
            metrics = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            metrics = {"error": f"exit {proc.returncode}: {last[:160]}"}
    except subprocess.TimeoutExpired:
        metrics = {"error": f"over {SCALING_TIMEOUT_S} s"}
    print(f"  scaling {name:16s} {seconds:4d} s: {metrics}", flush=True)
    return {"name": f"scaling {name} {seconds}s", "group": f"scaling {name}", "head": "asr",
            "model": name, "audio_seconds": seconds, "precision": "32-true",
            "metrics": metrics}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Sweep runs, then the scaling benchmark, then the peer (``quick``: the reduced grid,
    two lengths, 40 Asterisk prompts)."""
    from tasks.asr.peer import asterisk_results

    spec = load_spec("truncated_attention")
    experiment = "truncated_attention-quick" if quick else "truncated_attention"
    rows = [execute(r, experiment, ROOT / "runs", force=False) for r in plan_runs(spec, quick)]
    for seconds in SCALING_SECONDS[:2] if quick else SCALING_SECONDS:
        rows += [_scaling_row(seconds, name, window, kernel)
                 for name, (window, kernel) in SCALING_VARIANTS.items()]
    peer = asterisk_results(limit=40 if quick else None)
    print(f"  pocketsphinx: cer {peer['cer']:.4f} wer {peer['wer']:.4f} "
          f"({peer['utterances']} prompts, {peer['seconds']} s)", flush=True)
    rows.append({"name": "pocketsphinx", "group": "peer", "head": "asr",
                 "model": f"pocketsphinx-{peer['version']}", "dataset": "asterisk",
                 "precision": None, "train_seconds": None,
                 "metrics": {"test/cer_real": peer["cer"], "test/wer_real": peer["wer"],
                             "utterances": peer["utterances"],
                             "decode_seconds": peer["seconds"],
                             "audio_seconds": peer["audio_seconds"]}})
    return rows


def report(results: dict[str, Any], out_dir: Path) -> str:
    """The report's tables, plots and target check (see :mod:`tasks.asr.report`)."""
    return render(results, out_dir)


if __name__ == "__main__":
    length, spec, kernel_name = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    win = None if spec == "none" else tuple(int(v) for v in spec.split(","))
    print(json.dumps(measure_encoder(length, win, kernel_name)))
