"""What the TTS head shows and scores of free-running output: per-item test rows, the test
summary, attention/mel figures, audio samples, and predict's WAV + attention plot."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from suite.logging import log_audio, log_figure
from tasks.asr.features import SAMPLE_RATE
from tasks.tts import alignment as align
from tasks.tts.corpus import FRAMES_PER_SECOND
from tasks.tts.model import Generated
from tasks.tts.vocoder import write_wav

ERRORS = ("skip", "repeat", "early_stop", "overrun")


@dataclass
class Example:
    """One test item kept for the figures and the audio sample."""

    text: str
    predicted: Tensor  # (frames, n_mels) log-mel
    reference: Tensor  # (frames, n_mels) log-mel
    alignment: Tensor  # (steps, tokens)


@dataclass
class TestLog:
    """Per-item scores of the free-running test, by test set, and one example of each."""

    silent: frozenset[int] = frozenset()  # token ids never counted as skipped (pauses)
    rows: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    examples: dict[str, Example] = field(default_factory=dict)
    seconds: float = 0.0
    audio_seconds: float = 0.0

    def add(self, name: str, batch: dict[str, Any], generated: Generated, seconds: float,
            denormalise: Callable[[Tensor], Tensor]) -> None:
        """Score each item of a synthesised batch against its reference and flite's
        duration."""
        self.seconds += seconds
        self.audio_seconds += float(generated.lengths.sum()) / FRAMES_PER_SECOND
        for i in range(len(generated.lengths)):
            frames, tokens = int(generated.lengths[i]), int(batch["token_lengths"][i])
            weights = generated.alignment[i, :int(generated.steps[i]), :tokens].cpu()
            ids = batch["tokens"][i, :tokens].cpu()
            silent = torch.tensor([int(t) in self.silent for t in ids], dtype=torch.bool)
            errors = align.attention_errors(weights, tokens, bool(generated.capped[i]), silent)
            predicted = denormalise(generated.mel[i, :frames]).cpu()
            reference = denormalise(batch["mel"][i, : int(batch["mel_lengths"][i])]).cpu()
            row = {error: float(errors[error]) for error in ERRORS}
            row |= {"any_error": float(any(errors.values())),
                    "duration_ratio": frames / len(reference),
                    "mel_l1": align.mel_l1_dtw(predicted, reference),
                    "mcd": align.mel_cepstral_distance(predicted, reference)}
            self.rows.setdefault(name, []).append(row)
            self.examples.setdefault(name, Example(batch["text"][i], predicted, reference,
                                                   weights))

    def summary(self) -> dict[str, float]:
        """``<metric>_<test set>``: error shares, median duration ratio and error, mean mel
        L1 and MCD after DTW; ``rtf``: synthesis seconds per second of audio (no vocoder)."""
        out: dict[str, float] = {}
        for name, rows in self.rows.items():
            for key in (*ERRORS, "any_error", "mel_l1", "mcd"):
                out[f"{key}_{name}"] = statistics.fmean(r[key] for r in rows)
            ratios = [r["duration_ratio"] for r in rows]
            out[f"duration_ratio_median_{name}"] = statistics.median(ratios)
            out[f"duration_error_median_{name}"] = statistics.median(abs(x - 1) for x in ratios)
        if self.audio_seconds:
            out["rtf"] = self.seconds / self.audio_seconds
        return out

    def log_media(self, module: Any, vocoder: torch.nn.Module,
                  denormalise: Callable[[Tensor], Tensor]) -> None:
        """Each test set's example: mel (true vs predicted) and attention figure, and its
        Griffin-Lim audio."""
        for name, example in self.examples.items():
            log_figure(module, f"test/example_{name}", example_figure(example))
            log_audio(module, f"test/audio_{name}", vocoder(example.predicted).numpy(),
                      SAMPLE_RATE, example.text)


def example_figure(example: Example) -> Any:
    """True and predicted log-mel above the monitored heads' attention."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 8))
    for ax, mel, title in ((axes[0], example.reference, "flite (true)"),
                           (axes[1], example.predicted, "predicted, free-running")):
        ax.imshow(mel.T.numpy(), origin="lower", aspect="auto")
        ax.set(title=f"{title}: {example.text[:70]}", ylabel="mel bin", xlabel="frame (10 ms)")
    axes[2].imshow(example.alignment.T.numpy(), origin="lower", aspect="auto")
    axes[2].set(title="cross-attention (monitored heads)", xlabel="decoder step",
                ylabel="input token")
    fig.tight_layout()
    return fig


def attention_figure(weights: Tensor, text: str) -> Any:
    """One utterance's alignment ``(steps, tokens)``: tokens up, decoder steps across."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.imshow(weights.T.numpy(), origin="lower", aspect="auto")
    ax.set(title=text[:80], xlabel="decoder step", ylabel="input token")
    fig.tight_layout()
    return fig


def slug(text: str, words: int = 5) -> str:
    """A file-name-safe stem from the first words of ``text``."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:words]) or "utterance"


def write_prediction(directory: Path, number: int, text: str, audio: Tensor,
                     weights: Tensor) -> Path:
    """``<directory>/<number>-<slug>.wav`` and its ``-attention.png``; returns the WAV."""
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{number:02d}-{slug(text)}"
    wav = write_wav(stem.with_suffix(".wav"), audio, SAMPLE_RATE)
    fig = attention_figure(weights, text)
    fig.savefig(f"{stem}-attention.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return wav
