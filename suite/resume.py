"""Exact resume: what a checkpoint carries beyond weights, optimiser and loop counters, and
which run ``--run.resume last`` means.

Shuffling and dropout draw from the process's global generators: each epoch a DataLoader's
``RandomSampler`` seeds its permutation from torch's generator, dropout draws from it on every
step, and data code may use Python's ``random`` or NumPy. :class:`RandomState` saves all of
them in every checkpoint and restores them before training resumes, so a run killed and resumed
from an epoch-end checkpoint draws the same numbers as the unbroken run and ends with the same
weights, bit for bit.

Granularity: checkpoints are written at every validation end (``last.ckpt``). Resuming from one
written at an epoch's end (validation every epoch, the default) is exact; one written
mid-epoch (``trainer.val_check_interval``) restores the random states, but Lightning (which
warns) finishes that epoch on a fresh shuffle, so the run continues close to, not exactly as,
the unbroken one. A run whose length is set by the clock (``trainer.max_time``) cannot be
exact either. Under DDP every rank resumes with rank 0's states.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from suite.errors import UsageError


def random_states() -> dict[str, Any]:
    """The global generators' states, as tensors and plain Python values only (so a checkpoint
    holding them still loads with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    """Restore what :func:`random_states` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomState(Callback):
    """Saves the global random states in every checkpoint; resuming a fit restores them.

    Lightning restores a checkpoint before it builds the training data iterator, so the
    resumed run's first shuffle and dropout draws are the unbroken run's next ones.
    """

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["random_states"] = random_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING and "random_states" in checkpoint:
            set_random_states(checkpoint["random_states"])


def run_directory(run: Mapping[str, Any], head: str) -> Path:
    """This run's directory, ``<root>/<head>/<experiment>/<name>``, from the ``run`` settings.

    ``--run.resume last`` continues the run named by ``--run.name``, or without a name the
    latest run of the experiment; a fresh run gets a directory of its own: re-using a name is
    a usage error unless ``--run.overwrite`` (the old run is then deleted), and the default
    name, a timestamp, gets a suffix if taken.
    """
    experiment_dir = Path(run["root"]) / head / run["experiment"]
    name, resume = run.get("name"), run.get("resume")
    if resume == "last":
        run_dir = experiment_dir / name if name else latest_run(experiment_dir)
        if not (run_dir / "checkpoints" / "last.ckpt").is_file():
            raise UsageError(f"--run.resume last: {run_dir} has no checkpoints/last.ckpt to "
                             "resume")
        return run_dir
    if name is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        candidates = itertools.chain([stamp], (f"{stamp}-{i}" for i in itertools.count(1)))
        name = next(n for n in candidates if not (experiment_dir / n).exists())
    run_dir = experiment_dir / name
    if rank_zero_only.rank > 0:  # a DDP worker re-running the command: rank 0 checked the name
        return run_dir
    if run_dir.exists() and resume is None:
        if not run.get("overwrite"):
            raise UsageError(f"run {run_dir} exists; continue it with --run.resume last, or "
                             "replace it with --run.overwrite")
        shutil.rmtree(run_dir)
    return run_dir


def latest_run(experiment_dir: Path) -> Path:
    """The run under ``experiment_dir`` (``runs/<head>/<experiment>``) whose ``last.ckpt`` was
    written most recently: what ``--run.resume last`` resumes when no ``--run.name`` is given."""
    found = sorted(experiment_dir.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UsageError(f"--run.resume last: no run under {experiment_dir} has a "
                         "checkpoints/last.ckpt to resume")
    return found[-1].parent.parent

