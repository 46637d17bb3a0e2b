"""Loggers (W&B offline-first, CSV always) and media helpers.

W&B is the dashboard. Its mode: ``disabled`` under pytest or when ``SUITE_WANDB=disabled``;
``online`` when asked for (``SUITE_WANDB=online``) or when ``WANDB_API_KEY`` is set;
otherwise ``offline`` - the run is written inside the run directory and can be uploaded later
with the ``wandb sync`` line printed at the end. Offline mode never touches the network, so it
cannot hang; online start-up has a bounded timeout.
"""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


def wandb_mode(requested: str | None = None) -> str:
    """``disabled`` | ``offline`` | ``online`` from the request and the environment."""
    requested = requested or os.environ.get("SUITE_WANDB")
    if "PYTEST_CURRENT_TEST" in os.environ and requested is None:
        return "disabled"
    if requested in ("disabled", "offline", "online"):
        return requested
    if requested is not None:
        raise ValueError(f"unknown W&B mode {requested!r}; expected disabled|offline|online")
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued, not
    deleted: a resumed run appends to the rows its earlier pieces wrote."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class RunCSVLogger(CSVLogger):
    """``run_dir/metrics.csv``, kept across resumes: :meth:`drop_rows_from` cuts the rows a
    killed piece wrote after the checkpoint that the run resumes from."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def drop_rows_from(self, step: int) -> None:
        """Remove the rows logged at optimiser step ``step`` or later (the resumed run logs
        them again); the epoch-end rows of the step before stay."""
        path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(row for row in rows if int(row["step"]) < step)


WANDB_ID = "wandb-id"
"""The file in a run directory that holds its W&B run's id."""


def make_loggers(run_dir: Path, *, experiment: str, name: str, tags: list[str],
                 config: dict[str, Any] | None = None, mode: str | None = None
                 ) -> list[Logger]:
    """A CSV logger (``run_dir/metrics.csv``) and, unless disabled, a W&B logger.

    W&B: project ``suite``, group = experiment, tags = head / model / data set. A run that
    has a ``run_dir/wandb-id`` (:func:`remember_wandb_id`) continues that W&B run.
    """
    run_dir = Path(run_dir)
    loggers: list[Logger] = [RunCSVLogger(run_dir)]
    mode = wandb_mode(mode)
    if mode != "disabled":
        import wandb

        id_file = run_dir / WANDB_ID
        resume = id_file.is_file()
        loggers.append(WandbLogger(
            project=os.environ.get("WANDB_PROJECT", "suite"), group=experiment, name=name,
            tags=tags, save_dir=str(run_dir), mode=mode, config=config,
            id=id_file.read_text().strip() if resume else uuid.uuid4().hex[:12],
            resume="allow" if resume else None,
            settings=wandb.Settings(init_timeout=60, silent=True, console="off")))
    return loggers


def remember_wandb_id(run_dir: Path, loggers: list[Logger]) -> None:
    """Write the W&B run's id to ``run_dir/wandb-id`` once training starts (not before: the
    run directory is created only after the settings and data are checked)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            id_file = Path(run_dir) / WANDB_ID
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(str(logger.version))


def wandb_sync_hint(run_dir: Path) -> str | None:
    """The command that uploads an offline run (every piece of a resumed one), if one was
    written."""
    runs = sorted((Path(run_dir) / "wandb").glob("offline-run-*"))
    return f"wandb sync {' '.join(map(str, runs))}" if runs else None


def log_figure(module: Any, key: str, fig: Any) -> Path | None:
    """Save a matplotlib figure as ``<run_dir>/media/<key>.png`` and log it to W&B.

    ``module`` is a LightningModule attached to a trainer; without one nothing is written.
    """
    import matplotlib.pyplot as plt

    trainer = getattr(module, "_trainer", None)
    path = None
    if trainer is not None and trainer.is_global_zero:
        media = Path(trainer.default_root_dir) / "media"
        media.mkdir(parents=True, exist_ok=True)
        path = media / f"{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        for logger in module.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[str(path)], step=module.global_step)
    plt.close(fig)
    return path


def log_audio(module: Any, key: str, audio: Any, sample_rate: int, caption: str = ""
              ) -> Path | None:
    """Save mono float audio as ``<run_dir>/media/<key>.wav`` and log it to W&B as Audio.

    ``module`` is a LightningModule attached to a trainer; without one nothing is written.
    """
    import soundfile as sf

    trainer = getattr(module, "_trainer", None)
    if trainer is None or not trainer.is_global_zero:
        return None
    media = Path(trainer.default_root_dir) / "media"
    media.mkdir(parents=True, exist_ok=True)
    path = media / f"{key.replace('/', '_')}.wav"
    sf.write(path, audio, sample_rate, subtype="PCM_16")
    for logger in module.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_audio(key=key, audios=[str(path)], step=module.global_step,
                             caption=[caption])
    return path


def log_table(module: Any, key: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Log a table of predictions/examples to W&B (and as CSV under ``media/``)."""
    import csv

    trainer = getattr(module, "_trainer", None)
    if trainer is None or not trainer.is_global_zero:
        return
    media = Path(trainer.default_root_dir) / "media"
    media.mkdir(parents=True, exist_ok=True)
    with open(media / f"{key.replace('/', '_')}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    for logger in module.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=columns, data=rows, step=module.global_step)


def confusion_figure(matrix: Any, names: list[str], title: str) -> Any:
    """A matplotlib figure of the ``(true, predicted)`` count matrix, counts written in."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))
    ax.imshow(matrix.numpy(), cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            count = int(matrix[i, j])
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: test confusion matrix", fontsize=9)
    fig.tight_layout()
    return fig
