"""Stages of ``guided_attention`` that re-use the trained runs' best checkpoints.

- ``free-running``: the free-running test of each run with the current synthesis code, with the
  monotonic inference window on and off, and phrase by phrase, so the report can say what the
  window and the phrasing, rather than the training, do for attention errors (and a change to
  synthesis or to an error's definition re-measures every run without training it again).
- ``intelligibility``: pocketsphinx (its own en-us acoustic model and LM, the same for every
  condition) transcribes the held-out short sentences three ways: flite's own audio, Griffin-Lim
  of the true mel (what the vocoder alone loses), and Griffin-Lim of our free-running mel.
  Per-utterance CER differences get a bootstrap interval; the real-time factor of synthesis
  (one utterance at a time, one thread, vocoder included) is measured on the same items.
- ``skip-rule``: how often the skip rule fires where nothing can be skipped - on teacher-forced
  attention (the model reading flite's own frames) and on flite's true alignment itself (a
  phone shorter than a decoder step owns no step) - the floor under the free-running skip rate.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import soundfile as sf
import torch
import torch.nn.functional as F
import yaml
from torchmetrics.functional.text import char_error_rate

from experiments.truncated_attention.peer import score, transcribe
from suite import paths
from suite.errors import DataError
from tasks.asr.features import SAMPLE_RATE
from tasks.tts import alignment as align
from tasks.tts.corpus import silent_ids
from tasks.tts.data import TEST_SETS, TTSDataModule
from tasks.tts.module import TTSModule
from tasks.tts.synthesis import Synthesis

EXPERIMENT = "guided_attention"


def run_dir(run: str, folder: str = EXPERIMENT) -> Path:
    return paths.ROOT / "runs" / "tts" / folder / run


def load_run(run: str, folder: str = EXPERIMENT) -> tuple[TTSModule, TTSDataModule]:
    """A run's best checkpoint and a data module built as the run's was."""
    directory = run_dir(run, folder)
    module = TTSModule.from_checkpoint(directory / "checkpoints" / "best.ckpt").eval()
    config = yaml.safe_load((directory / "config.yaml").read_text())
    data = config["data"].get("init_args", config["data"])
    datamodule = TTSDataModule(**data)
    datamodule.setup("test")
    return module, datamodule


def _row(name: str, stage: str, model: str, metrics: dict[str, float], **extra: Any
         ) -> dict[str, Any]:
    return {"name": name, "group": stage, "head": "tts", "model": model,
            "dataset": "flite-slt", "precision": "32-true", "train_seconds": None,
            "metrics": metrics, **extra}


SYNTHESES = {"windowed": {"windowed": True}, "windowless": {"windowed": False},
             "by-phrase": {"windowed": True, "by_phrase": True}}
"""The free-running conditions: the monotonic window on, off, and on with the text cut into
phrases at its pauses (:func:`tasks.tts.synthesis.generate_by_phrase`)."""


def synthesis_for(base: Synthesis, condition: str) -> Synthesis:
    """``base`` (a run's synthesis settings) under one of :data:`SYNTHESES`."""
    return replace(base, **{"by_phrase": False, **SYNTHESES[condition]})


def free_running(runs: list[str], folder: str = EXPERIMENT) -> list[dict[str, Any]]:
    """Each run's free-running test under each of :data:`SYNTHESES` (the windowed one's media
    replace the run's own test media): rows ``free-running-<run>[-<condition>]``."""
    rows = []
    for run in runs:
        module, datamodule = load_run(run, folder)
        settings = module.synthesis
        for condition in SYNTHESES:
            module.synthesis = synthesis_for(settings, condition)
            plain = condition == "windowed"
            media_root = run_dir(run, folder) / ("" if plain else condition)
            trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu",
                                 enable_progress_bar=False, default_root_dir=media_root)
            metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
            name = f"free-running-{run}" + ("" if plain else f"-{condition}")
            rows.append(_row(name, "free-running", f"{module.hparams.model}",
                             {k: float(v) for k, v in metrics.items()}, run=run,
                             synthesis=condition))
    return rows


def _read(path: str) -> torch.Tensor:
    audio, rate = sf.read(path, dtype="int16")
    if rate != SAMPLE_RATE:
        raise DataError(f"{path}: {rate} Hz, expected flite's {SAMPLE_RATE} Hz")
    return torch.from_numpy(audio)


def _int16(audio: torch.Tensor) -> torch.Tensor:
    return (audio.clamp(-1, 1) * 32767).round().to(torch.int16)


def _conditions(module: TTSModule, datamodule: TTSDataModule, items: int
                ) -> tuple[list[str], dict[str, list[torch.Tensor]], float]:
    """References, audio per condition (int16, 16 kHz) and the real-time factor."""
    dataset = datamodule.dataset("short")
    texts, audio = [], {"flite": [], "griffin_lim_true": [], "ours": []}
    synth_seconds = audio_seconds = 0.0
    for i in range(min(items, len(dataset))):
        item = dataset[i]
        texts.append(item["text"])
        audio["flite"].append(_read(item["wav"]))
        true_mel = module.denormalise(item["mel"])
        audio["griffin_lim_true"].append(_int16(module.vocoder(true_mel)))
        start = time.perf_counter()
        tokens = item["tokens"][None]
        generated = module.synthesize(tokens, torch.tensor([tokens.shape[1]]), [item["index"]])
        mel = module.denormalise(generated.mel[0, : int(generated.lengths[0])])
        ours = module.vocoder(mel)
        synth_seconds += time.perf_counter() - start
        audio_seconds += len(ours) / SAMPLE_RATE
        audio["ours"].append(_int16(ours))
    return texts, audio, synth_seconds / max(audio_seconds, 1e-9)


def intelligibility(runs: list[str], items: int = 200, folder: str = EXPERIMENT
                    ) -> list[dict[str, Any]]:
    """pocketsphinx CER/WER on each condition for each run, the ratio of ours to flite's,
    a bootstrap interval of the per-utterance CER difference, and the one-thread RTF."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for run in runs:
            module, datamodule = load_run(run, folder)
            with torch.no_grad():
                texts, audio, rtf = _conditions(module, datamodule, items)
            metrics: dict[str, float] = {"test/rtf_one_thread": rtf, "utterances": len(texts)}
            per_item = {}
            for condition, waves in audio.items():
                hypotheses = transcribe(waves)
                for key, value in score(hypotheses, texts).items():
                    metrics[f"test/{key}_{condition}"] = value
                per_item[condition] = [float(char_error_rate(h, r))
                                       for h, r in zip(hypotheses, texts, strict=True)]
            metrics["test/cer_ratio_to_flite"] = (metrics["test/cer_ours"]
                                                  / max(metrics["test/cer_flite"], 1e-9))
            diffs = [a - b for a, b in zip(per_item["ours"], per_item["flite"], strict=True)]
            low, high = align.bootstrap_ci(diffs)
            metrics |= {"test/cer_diff_mean": statistics.fmean(diffs),
                        "test/cer_diff_ci_low": low, "test/cer_diff_ci_high": high}
            rows.append(_row(f"intelligibility-{run}", "intelligibility",
                             f"{module.hparams.model}-pocketsphinx", metrics, run=run))
        return rows
    finally:
        torch.set_num_threads(threads)


def skip_flags(weights: torch.Tensor, true_token: torch.Tensor, step_lengths: torch.Tensor,
               token_lengths: torch.Tensor, silent: torch.Tensor
               ) -> tuple[list[bool], list[bool | None]]:
    """Per item, whether :func:`tasks.tts.alignment.attention_errors` counts a skip in the
    attention ``weights`` ``(B, S, N)``, and in the one-hot of flite's ``true_token``
    ``(B, S)`` (a phone shorter than a decoder step is nobody's true phone; None where the
    item's true tokens are unknown, -1, as for character input). ``silent`` ``(B, N)`` marks
    the pauses, which are never skipped."""
    model: list[bool] = []
    timing: list[bool | None] = []
    for i in range(weights.shape[0]):
        steps, tokens = int(step_lengths[i]), int(token_lengths[i])
        model.append(align.attention_errors(weights[i, :steps], tokens, False, silent[i])["skip"])
        if (true_token[i, :steps] < 0).all():
            timing.append(None)
            continue
        true = F.one_hot(true_token[i, :steps].clamp(min=0), weights.shape[-1]).float()
        timing.append(align.attention_errors(true, tokens, False, silent[i])["skip"])
    return model, timing


def teacher_forced_skips(module: TTSModule, batches: Iterable[dict[str, Any]]
                          ) -> tuple[list[bool], list[bool | None]]:
    """:func:`skip_flags` over every item, the attention being the mean of the heads free-running
    synthesis watches, as in the free-running test."""
    pause_ids = torch.tensor(sorted(silent_ids(module.hparams.units)))
    model, timing = [], []
    for batch in batches:
        with torch.no_grad():
            _, maps, _ = module.losses(batch)
        weights = align.head_maps(maps, module.synthesis_heads).mean(1)  # (B, S, N)
        steps = module.step_lengths(batch)
        true = module.true_tokens(batch, weights.shape[1])
        silent = torch.isin(batch["tokens"], pause_ids)
        batch_model, batch_timing = skip_flags(weights, true, steps, batch["token_lengths"],
                                               silent)
        model.extend(batch_model)
        timing.extend(batch_timing)
    return model, timing


def skip_rule(runs: list[str], folder: str = EXPERIMENT) -> list[dict[str, Any]]:
    """The skip rule's floor: the share of held-out items it flags on each run's teacher-forced
    attention and on flite's true alignment: rows ``skip-rule-<run>``."""
    rows = []
    for run in runs:
        module, datamodule = load_run(run, folder)
        metrics: dict[str, float] = {}
        for name, loader in zip(TEST_SETS, datamodule.test_dataloader(), strict=True):
            model, timing = teacher_forced_skips(module, loader)
            metrics[f"test/skip_teacher_forced_{name}"] = statistics.fmean(model)
            known = [flag for flag in timing if flag is not None]
            if known:
                metrics[f"test/skip_true_alignment_{name}"] = statistics.fmean(known)
        rows.append(_row(f"skip-rule-{run}", "skip-rule", f"{module.hparams.model}", metrics,
                         run=run))
    return rows
