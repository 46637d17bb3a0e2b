"""A trained run of ``truncated_attention`` as the stages that re-measure it read it: its folder,
the ``config.yaml`` and ``summary.json`` ``suite train`` wrote there, the precision it trained
and tested under, and the manifest rows and lengths of the corpus it trained on.

Runs are named by their folder, ``<run>-s<seed>`` (``default-s0``), as the experiment's
``each: runs`` stages list them.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from suite import cache, paths
from suite.errors import DataError
from tasks.asr.data import DEFAULT_CORPUS_SIZE, corpus_dir, synthetic_inputs

EXPERIMENT = "truncated_attention"
RUNS = paths.ROOT / "runs"
"""Where ``suite experiment`` puts runs (``RUNS/asr/<folder>/<run>``)."""
MIXED_BF16 = ("bf16-mixed", "bf16")
"""Lightning precisions that run the step under bf16 autocast (weights stay float32)."""


def run_dir(run: str, folder: str = EXPERIMENT) -> Path:
    return RUNS / "asr" / folder / run


def _read(run: str, folder: str, name: str) -> str:
    path = run_dir(run, folder) / name
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected run {run!r} of {folder} trained "
                        f"(`suite experiment {EXPERIMENT}` trains it)")
    return path.read_text()


def run_config(run: str, folder: str = EXPERIMENT) -> dict[str, Any]:
    """The full configuration ``suite train`` recorded for the run (``config.yaml``)."""
    return yaml.safe_load(_read(run, folder, "config.yaml"))


def run_summary(run: str, folder: str = EXPERIMENT) -> dict[str, Any]:
    """The run's ``summary.json`` (throughput, training time, test metrics)."""
    return json.loads(_read(run, folder, "summary.json"))


def section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A config section's init arguments (``data``, ``model``), nested or not."""
    part = config.get(name) or {}
    return part.get("init_args", part)


def autocast(precision: str | None) -> contextlib.AbstractContextManager:
    """The autocast Lightning wraps a step in under ``precision`` (bf16 on the CPU for
    ``bf16-mixed``; none for float32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision in MIXED_BF16)


def corpus_manifest(data: dict[str, Any]) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """The manifest rows (text, split, voice, kind, snr_db, codec, ... as the corpus recorded
    them) and the feature frames of each utterance ``(N,)`` of the corpus a run's ``data``
    section names. The feature file is memory-mapped, so its frames are never read."""
    size = data.get("corpus_size", DEFAULT_CORPUS_SIZE)
    seed = data.get("corpus_seed", 0)
    path = corpus_dir(size, seed) / "features.pt"
    verdict = cache.check(path, inputs=synthetic_inputs(size, seed))
    if not verdict.ready:
        raise DataError(f"{path}: ASR corpus features {verdict.reason}; run "
                        "`suite data prepare asr`")
    payload = torch.load(path, mmap=True, weights_only=True)
    return payload["rows"], payload["offsets"].diff()
