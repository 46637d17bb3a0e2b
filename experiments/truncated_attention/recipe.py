"""Stage ``recipe``: does each training-recipe option earn its place in the default?

Three options of the ASR head (issue 20's recipe) are off by default until a probe says they
help: a length-sorted first epoch (``data.sorted_first_epoch``, SortaGrad), intermediate CTC on
a middle layer (``model.inter_ctc_layer``/``inter_ctc_weight``) and a SpecAugment that ramps in
after the warmup (``data.spec_augment_ramp``). Each probe trains the head's default recogniser
for the same number of optimiser steps with all three off but the one it tests (the ``base``
probe: none), greedy decoding at test, ``jobs`` probes side by side on their share of the
threads (:func:`suite.experiment.execute_all`, which also keeps a probe already trained with the
same configuration). Equal steps, not equal time, as the runs share the CPU; each row records its
training seconds, since an option that costs time must win by more.

The rows are what the probes measured when the options were chosen: later changes to the
default do not make them stale (the stage's fingerprint is its parameters), so the row carries
the probe's full model and data settings.
"""

from __future__ import annotations

from typing import Any

from experiments.truncated_attention.trained import RUNS, run_config, section
from suite.experiment import execute_all

FOLDER = "truncated_attention-recipe"
"""Where the probes' runs go (``runs/asr/<FOLDER>/<probe>``)."""
ALL_OFF = {"data.sorted_first_epoch": False, "model.inter_ctc_layer": None,
           "data.spec_augment_ramp": 0}
"""The options probed, each at its off value: every probe starts from these."""
METRICS = ("val/cer", "val/wer", "test/cer_unseen", "test/wer_unseen", "test/cer_real",
           "test/wer_real")


def probe_run(name: str, option: dict[str, Any], steps: int) -> dict[str, Any]:
    """The planned run (:mod:`suite.spec`'s layout) of one probe: the default recogniser for
    ``steps`` optimiser steps, greedy decoding, the options off but ``option``."""
    overrides = {**ALL_OFF, **option, "trainer.max_steps": steps, "trainer.max_time": None,
                 "model.decoding.beam_size": 0}
    return {"name": name, "group": "recipe", "head": "asr", "config": None,
            "overrides": overrides, "seed": 0}


def rows(probes: dict[str, dict[str, Any]], steps: int = 2000, jobs: int = 2,
         extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per probe (``name -> {option: value}``; ``{}`` is the base): its greedy CER and
    WER on the validation split, the unseen voices and the real prompts after ``steps`` steps.
    ``extra`` overrides go to every probe (the quick plan's small model)."""
    planned = [probe_run(name, option, steps) for name, option in probes.items()]
    for run in planned:
        run["overrides"] |= extra or {}
    trained = execute_all(planned, FOLDER, RUNS, force=False, jobs=jobs)
    out = []
    for run in planned:
        row, config = trained[run["name"]], run_config(run["name"], FOLDER)
        option = probes[run["name"]]
        metrics = {key: row["metrics"][key] for key in METRICS if key in row["metrics"]}
        print(f"  recipe {run['name']}: {metrics}", flush=True)
        out.append({"name": f"recipe {run['name']}", "group": "recipe", "head": "asr",
                    "probe": run["name"], "option": option, "steps": row["steps"],
                    "model": row["model"], "params": row["params"],
                    "train_seconds": row["train_seconds"], "jobs": jobs,
                    "settings": {"model": section(config, "model"),
                                 "data": section(config, "data")},
                    "metrics": metrics})
    return out
