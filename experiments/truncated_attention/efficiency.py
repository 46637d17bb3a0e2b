"""Stage ``efficiency``: how much of the CPU a run's training step uses, and how fast the run
trained.

The run's recogniser is built from its ``config.yaml`` (:func:`suite.spec.build_module`,
fresh weights: only shapes and kernels matter). On one fixed representative batch - ``batch``
utterances of ``seconds`` of audio each, random features and targets a quarter of the encoder
frames long (:func:`tasks.asr.flops.count_step_flops`'s shapes) - it measures

- the step's FLOPs (forward, CTC, backward; :func:`tasks.asr.flops.count_step_flops`);
- the step's seconds as training runs it: the module's ``training_step`` under the run's
  autocast, backward, gradient clipping as configured, an AdamW step over the module's
  parameter groups (data loading aside); the median of ``steps`` after one untimed step;
- the CPU's bf16 matmul peak in the same process (:func:`tasks.asr.flops.matmul_peak`),

so the achieved FLOP/s is read as a share of a peak measured alongside it, not as an absolute
figure. Training throughput comes from the run itself: its ``samples_per_second`` (training
epochs' wall time) times the mean encoder frames (and audio seconds) of its corpus's training
utterances.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import torch

from experiments.truncated_attention.trained import (
    EXPERIMENT,
    autocast,
    corpus_manifest,
    run_config,
    run_dir,
    run_summary,
    section,
)
from suite.spec import build_module
from tasks.asr.features import HOP_LENGTH, N_MELS, SAMPLE_RATE
from tasks.asr.flops import count_step_flops, matmul_peak
from tasks.asr.module import ASRModule

FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH


def step_batch(module: ASRModule, batch: int, frames: int) -> dict[str, Any]:
    """A padded training batch of ``batch`` utterances of ``frames`` frames each, shaped as
    :func:`tasks.asr.flops.count_step_flops` counts one."""
    out_frames = int(module.model.subsample.out_length(frames))
    target_length = max(1, out_frames // 4)
    return {"features": torch.randn(batch, frames, N_MELS),
            "feature_lengths": torch.full((batch,), frames),
            "targets": torch.randint(1, module.model.head.out_features, (batch, target_length)),
            "target_lengths": torch.full((batch,), target_length),
            "texts": [""] * batch}


def time_step(module: ASRModule, inputs: dict[str, Any], steps: int, precision: str | None,
              clip: float | None = None) -> float:
    """Median seconds of ``steps`` training steps on ``inputs``, after one untimed step."""
    optimizer = torch.optim.AdamW(module.param_groups(), lr=module.hparams.lr)
    module.train()
    seconds = []
    with warnings.catch_warnings():
        # the module logs its losses; without a trainer Lightning warns and drops them
        warnings.filterwarnings("ignore", message=".*self.log.*")
        for _ in range(steps + 1):
            start = time.perf_counter()
            with autocast(precision):
                loss = module.training_step(inputs, 0)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:])


def throughput(module: ASRModule, data: dict[str, Any], samples_per_second: float
               ) -> dict[str, float]:
    """Encoder frames and audio seconds per second of training, from the run's samples/s and
    its corpus's training utterances."""
    manifest, frames = corpus_manifest(data)
    train = frames[torch.tensor([row["split"] == "train" for row in manifest])]
    encoder_frames = module.model.subsample.out_length(train).float().mean().item()
    seconds = train.float().mean().item() / FRAMES_PER_SECOND
    return {"samples_per_second": samples_per_second, "mean_encoder_frames": encoder_frames,
            "mean_audio_seconds": seconds,
            "encoder_frames_per_second": samples_per_second * encoder_frames,
            "audio_seconds_per_second": samples_per_second * seconds}


def measure(run: str, batch: int, seconds: float, steps: int, peak_size: int,
            folder: str = EXPERIMENT) -> dict[str, Any]:
    """One run's efficiency row (see the module docstring)."""
    config = run_config(run, folder)
    trainer = section(config, "trainer")
    module = build_module("asr", str(run_dir(run, folder) / "config.yaml"))
    frames = round(seconds * FRAMES_PER_SECOND)
    flops = count_step_flops(module.model, batch, frames)
    step_seconds = time_step(module, step_batch(module, batch, frames), steps,
                             trainer.get("precision"), trainer.get("gradient_clip_val"))
    peak = matmul_peak(peak_size)
    metrics = {"step_flops": flops, "step_seconds": step_seconds,
               "flops_per_second": flops / step_seconds, "bf16_matmul_peak": peak,
               "peak_share": flops / step_seconds / peak,
               **throughput(module, section(config, "data"),
                            run_summary(run, folder)["samples_per_second"])}
    print(f"  efficiency {run}: {metrics['peak_share']:.1%} of the bf16 matmul peak, "
          f"{metrics['encoder_frames_per_second']:,.0f} encoder frames/s", flush=True)
    return {"name": f"efficiency {run}", "group": "efficiency", "head": "asr", "run": run,
            "model": module.hparams.model, "params": module.num_parameters(),
            "precision": trainer.get("precision"),
            "subsampling": module.hparams.subsampling, "window": module.hparams.window,
            "units": module.hparams.units, "batch": batch, "audio_seconds": seconds,
            "threads": torch.get_num_threads(), "metrics": metrics}


def rows(runs: list[str], batch: int = 16, seconds: float = 5.0, steps: int = 5,
         peak_size: int = 2048, folder: str = EXPERIMENT) -> list[dict[str, Any]]:
    """One row per run: the step's FLOPs, seconds, achieved FLOP/s and the bf16 matmul peak
    on ``batch`` x ``seconds`` of audio, and the run's training throughput."""
    return [measure(run, batch, seconds, steps, peak_size, folder) for run in runs]
