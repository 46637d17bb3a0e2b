"""Experiment ``truncated_attention``: a window sweep of trained recognisers, an encoder scaling
benchmark, and pocketsphinx on the same real speech - one table of results.

1. **Sweep** - the ``runs`` of ``configs/experiments/truncated_attention.yaml`` are ordinary
   ``suite train asr`` runs in subprocesses (:func:`suite.experiment.execute`, resumable), the
   default model plus full attention and windows (left, right) in encoder frames.
2. **Scaling** - a freshly initialised default-size encoder (eval, fp32, batch 1, lengths
   given as in evaluation) encodes 10 s .. 10 min of random features, full vs truncated
   attention, each length in its own subprocess: forward seconds and peak memory (the peak
   resident size above the resident size just before the forward, Linux ``VmHWM`` after
   ``clear_refs``); a run that fails or exceeds its time limit is recorded as such.
3. **Peer** - pocketsphinx on the Asterisk prompts (:mod:`tasks.asr.peer`).
"""

from __future__ import annotations

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
SCALING_WINDOWS = {"full": None, "window (16,16)": (16, 16)}
SCALING_TIMEOUT_S = 600


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith(field))
    return int(line.split()[1]) / 1024


def measure_encoder(seconds: float, window: tuple[int, int] | None) -> dict[str, float]:
    """Forward time and peak memory of the default encoder on ``seconds`` of audio."""
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
    with torch.no_grad():
        model(features, torch.tensor([frames]))
    return {"seconds": time.perf_counter() - start,
            "peak_memory_mb": _proc_status_mb("VmHWM") - before,
            "encoder_frames": int(model.subsample.out_length(frames))}


def _scaling_row(seconds: int, name: str, window: tuple[int, int] | None) -> dict[str, Any]:
    args = [str(seconds), "none" if window is None else f"{window[0]},{window[1]}"]
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
        rows += [_scaling_row(seconds, name, w) for name, w in SCALING_WINDOWS.items()]
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
    length, spec = float(sys.argv[1]), sys.argv[2]
    win = None if spec == "none" else tuple(int(v) for v in spec.split(","))
    print(json.dumps(measure_encoder(length, win)))
