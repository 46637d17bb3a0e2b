"""TaskModule: the LightningModule every head extends.

A head implements ``step(batch, stage) -> loss`` (logging its own metrics), ``batch_size``
and ``predict_inputs``; the base supplies the optimiser (AdamW, warmup + cosine or Noam),
parameter counts, throughput and peak-memory logging, and attention-map logging. It also
reads checkpoints whose init arguments were saved in an older layout (``upgrade_settings``).
Classification heads score with :class:`ClassificationMetrics`.
"""

from __future__ import annotations

import abc
import io
import math
import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Timer
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from suite.blocks import LayerConfig
from suite.checkpoint import head_of, load_checkpoint
from suite.errors import UsageError
from suite.logging import confusion_figure, log_figure

Stage = Literal["train", "val", "test"]

_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_field(value: str) -> str:
    """A user's input echoed in a tab-separated predict line: backslash, tab and line breaks
    escaped (``\\t``, ``\\n``, ``\\r``, ``\\\\``) so each input stays one line of fixed columns."""
    return value.translate(_TSV_ESCAPES)


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA's allocator peak on a GPU, else the peak RSS."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AMX or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str = "auto") -> str:
    """``auto`` -> ``bf16-mixed`` where the GPU or CPU has fast bf16, else ``32-true``."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def lr_multiplier(step: int, schedule: str, warmup_steps: int, total_steps: int,
                  min_lr_ratio: float = 0.0, time_fraction: float = 0.0) -> float:
    """Learning-rate factor at optimiser ``step`` (the peak factor is 1 for every schedule).

    cosine: linear warmup to 1, then half a cosine down to ``min_lr_ratio`` at the last step -
            or at the end of the time budget, whichever comes first: ``time_fraction`` is the
            share of ``trainer.max_time`` used so far, so a run stopped by the clock still ends
            annealed instead of being cut off at a high learning rate. The clock only counts
            while it binds - while the pace so far would spend the budget before the last
            step - so a run ahead of the clock follows the step schedule alone and is
            bit-reproducible whatever the machine's speed. The warmup follows the clock the same
            way: while the clock binds it ends at the same share of the budget as of the steps,
            since the step count (``max_epochs``' estimate) may be far beyond what the budget
            allows, and a step-counted warmup would then never finish.
    noam:   the Transformer paper's ``min(step^-0.5, step * warmup^-1.5)``, scaled to peak 1.
    constant: linear warmup then flat.
    """
    step = step + 1
    if schedule == "noam":
        warmup = max(1, warmup_steps)
        return min(step ** -0.5, step * warmup ** -1.5) * warmup ** 0.5
    clock_binds = time_fraction * total_steps > step  # the budget ends before the last step
    warmup_share = warmup_steps / max(1, total_steps)
    if step <= warmup_steps:
        ramp = step / max(1, warmup_steps)
        if clock_binds:
            ramp = max(ramp, time_fraction / warmup_share)
        if ramp < 1:
            return ramp
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if clock_binds:
        progress = max(progress, (time_fraction - warmup_share) / max(1e-9, 1 - warmup_share))
    progress = min(1.0, max(0.0, progress))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ClassificationMetrics(nn.Module):
    """Single-label classification scores: accuracy and macro F1 per stage, logged as epoch
    means ``<stage>/acc`` and ``<stage>/macro_f1``, and the test set's confusion matrix."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        # ModuleDict keys may not shadow nn.Module attributes ("train"), hence "<stage>_".
        self.stages = nn.ModuleDict({f"{stage}_": MetricCollection(
            {"acc": MulticlassAccuracy(num_classes, average="micro"),
             "macro_f1": MulticlassF1Score(num_classes, average="macro")}, prefix=f"{stage}/")
            for stage in ("train", "val", "test")})
        self.confusion = MulticlassConfusionMatrix(num_classes)

    def log_batch(self, module: pl.LightningModule, stage: Stage, logits: Tensor,
                  labels: Tensor, batch_size: int) -> None:
        """Score one batch, ``logits`` ``(B, classes)`` against ``labels`` ``(B,)``, and log
        the stage's scores through ``module``."""
        logits = logits.detach()
        scores = self.stages[f"{stage}_"]
        scores.update(logits, labels)
        module.log_dict(scores, prog_bar=stage != "train", batch_size=batch_size, on_epoch=True,
                        on_step=False)
        if stage == "test":
            self.confusion.update(logits, labels)

    def log_confusion(self, module: pl.LightningModule, class_names: list[str]) -> None:
        """Log the test confusion matrix as ``test/confusion_matrix``, titled with the model's
        name, and reset it."""
        matrix = self.confusion.compute().cpu()  # (true, predicted)
        self.confusion.reset()
        log_figure(module, "test/confusion_matrix",
                   confusion_figure(matrix, class_names, str(module.hparams.model)))


class TaskModule(pl.LightningModule, abc.ABC):
    """Base for every head: optimiser, schedules, throughput, memory and map logging.

    Args:
        lr: peak learning rate.
        weight_decay: AdamW decoupled weight decay (matrices only; never biases, norms or
            1-D parameters, which decay would only pull toward zero).
        betas: AdamW betas.
        schedule: ``cosine`` (warmup + cosine), ``noam`` or ``constant``.
        warmup_steps: optimiser steps of linear warmup; ``warmup_fraction`` is used if 0.
        warmup_fraction: warmup as a fraction of all training steps.
        min_lr_ratio: final learning rate of the cosine as a fraction of ``lr``.
    """

    CURVES: tuple[str, ...] = ()
    """Validation metrics whose value at every validation during fit is kept in the run's
    ``summary.json`` (and an experiment's row) as ``curves``: ``{metric: [[step, value]]}``,
    for reports that plot a quantity against training steps."""

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.05,
                 betas: tuple[float, float] = (0.9, 0.999),
                 schedule: Literal["cosine", "noam", "constant"] = "cosine",
                 warmup_steps: int = 0, warmup_fraction: float = 0.05,
                 min_lr_ratio: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._train_samples = 0
        self._train_seconds = 0.0
        self._epoch_start: float | None = None

    # ------------------------------------------------------------------ head interface
    @abc.abstractmethod
    def step(self, batch: Any, stage: Stage) -> Tensor:
        """Compute and log the loss and metrics of one batch; return the loss."""

    @abc.abstractmethod
    def batch_size(self, batch: Any) -> int:
        """Number of examples in ``batch`` (for throughput and metric averaging)."""

    @abc.abstractmethod
    def predict_inputs(self, inputs: list[str], **options: Any) -> list[str]:
        """Turn a user's files or strings into printable predictions, one line each.

        ``options`` are the head's declared ``predict_options`` (:class:`suite.head.Head`),
        each a keyword argument; a head takes exactly those.

        Raises :class:`suite.errors.DataError` naming the input that is not usable.
        """

    # ------------------------------------------------------------------ older checkpoints
    @classmethod
    def legacy_renames(cls, settings: Mapping[str, Any]) -> dict[str, str | None]:
        """The head's init arguments renamed since checkpoints were first written: old name ->
        new name, ``group.name`` inside a nested argument, or None for one since dropped.
        ``settings`` are the saved arguments, for renames that depend on them."""
        return {}

    @classmethod
    def upgrade_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Saved init arguments (a checkpoint's hyper-parameters, a run's ``config.yaml``
        ``model`` section) in today's layout: :class:`LayerConfig`'s fields, once flat, move
        under ``encoder``, except where the head's :meth:`legacy_renames` say otherwise. Settings
        already in today's layout come back unchanged."""
        settings = dict(settings)
        layer = {f.name: f"encoder.{f.name}" for f in fields(LayerConfig)}
        for old, new in (layer | cls.legacy_renames(settings)).items():
            if old not in settings:
                continue
            value = settings.pop(old)
            if new is None:
                continue
            group, _, name = new.rpartition(".")
            if group:
                settings[group] = {**(settings.get(group) or {}), name: value}
            else:
                settings[name] = value
        return settings

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> TaskModule:
        """``load_from_checkpoint`` for checkpoints of any age, read safely: the file is
        checked to be this head's checkpoint (:func:`suite.checkpoint.load_checkpoint`) and its
        hyper-parameters upgraded (:meth:`upgrade_settings`) before the module is built."""
        name = head_of(cls)
        checkpoint = load_checkpoint(path, name, map_location)
        key = cls.CHECKPOINT_HYPER_PARAMS_KEY
        checkpoint[key] = cls.upgrade_settings(checkpoint[key])
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        buffer.seek(0)
        try:
            return cls.load_from_checkpoint(buffer, map_location=map_location, weights_only=True)
        except RuntimeError as err:
            if "state_dict" not in str(err):
                raise
            # an old checkpoint names no head; its weights show it is another head's
            raise UsageError(f"checkpoint {path} does not fit the {name or cls.__name__} model "
                             f"(its weights are another model's)") from err

    # ------------------------------------------------------------------ loops
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.step(batch, "train")
        self._train_samples += self.batch_size(batch)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.step(batch, "test")

    # ------------------------------------------------------------------ throughput
    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        if self._epoch_start is not None:
            self._train_seconds += time.perf_counter() - self._epoch_start
        self.log("perf/samples_per_second", self.samples_per_second)
        self.log("perf/peak_memory_mb", peak_memory_mb())

    @property
    def samples_per_second(self) -> float:
        """Training examples per second of training-epoch wall time (validation excluded)."""
        return self._train_samples / self._train_seconds if self._train_seconds else 0.0

    def on_fit_start(self) -> None:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        for logger in self.loggers:
            logger.log_hyperparams({"params": total, "trainable_params": trainable})

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ media
    def log_attention_maps(self, maps: Tensor, key: str, titles: list[str] | None = None
                           ) -> None:
        """Draw up to 8 attention maps ``(n, Tq, Tk)`` side by side and log them as an image."""
        import matplotlib.pyplot as plt

        maps = maps.detach().float().cpu()[:8]
        fig, axes = plt.subplots(1, len(maps), figsize=(2.6 * len(maps), 2.8), squeeze=False)
        for i, (ax, m) in enumerate(zip(axes[0], maps, strict=False)):
            ax.imshow(m.numpy(), cmap="viridis", aspect="auto")
            ax.set_title(titles[i] if titles else f"{i}", fontsize=8)
            ax.set_xlabel("key")
            ax.set_ylabel("query")
        fig.tight_layout()
        log_figure(self, key, fig)

    # ------------------------------------------------------------------ optimisation
    def _time_budget_used(self) -> float:
        """Share of ``trainer.max_time`` spent in fit so far (0 without a time limit)."""
        callbacks = self._trainer.callbacks if self._trainer else []
        timer = next((c for c in callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining("train") if timer else None
        if remaining is None:
            return 0.0
        elapsed = timer.time_elapsed("train")
        return min(1.0, elapsed / max(1e-9, elapsed + remaining))

    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups: weight decay on matrices only, not on biases or norm gains.
        Heads may override to give some parameters their own learning rate (``lr`` key)."""
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        return [{"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def warmup_length(self) -> int:
        """Optimiser steps of learning-rate warmup: ``warmup_steps``, else ``warmup_fraction``
        of the fit's estimated steps (needs the trainer)."""
        hp = self.hparams
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return hp.warmup_steps or int(hp.warmup_fraction * total)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.param_groups(), lr=hp.lr, betas=tuple(hp.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = self.warmup_length()
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(
            s, hp.schedule, warmup, total, hp.min_lr_ratio, self._time_budget_used()))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
