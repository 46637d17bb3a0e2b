"""truncated_attention's recipe stage: each probe is the default with the three options off but
its own, the probes train through the experiment runner, and the report compares them with the
base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.truncated_attention import recipe
from experiments.truncated_attention.sections import recipe_section
from suite.experiment import train_command

PROBES = {"base": {}, "inter-ctc": {"model.inter_ctc_layer": 4, "model.inter_ctc_weight": 0.3}}


def test_a_probe_turns_every_option_off_but_its_own():
    run = recipe.probe_run("inter-ctc", PROBES["inter-ctc"], 2000)
    command = train_command(run, recipe.FOLDER, Path("runs"))
    assert "--data.sorted_first_epoch=false" in command
    assert "--data.spec_augment_ramp=0" in command
    assert "--model.inter_ctc_layer=4" in command
    assert "--model.inter_ctc_layer=null" not in command
    assert {"--trainer.max_steps=2000", "--trainer.max_time=null",
            "--model.decoding.beam_size=0"} <= set(command)
    assert "-c" not in command  # the head's default recogniser


def test_rows_train_the_probes_together_and_keep_their_settings(monkeypatch):
    calls: list[tuple[list[str], int]] = []

    def execute_all(runs: list[dict[str, Any]], experiment: str, root: Path, force: bool,
                    jobs: int) -> dict[str, dict[str, Any]]:
        calls.append(([run["name"] for run in runs], jobs))
        return {run["name"]: {"steps": 2000, "model": "ctc-w8-8", "params": 10,
                              "train_seconds": 600.0 + 60 * i,
                              "metrics": {"val/cer": 0.4 - 0.05 * i, "test/wer_real": 0.9,
                                          "train/loss": 1.0}}
                for i, run in enumerate(runs)}

    monkeypatch.setattr(recipe, "execute_all", execute_all)
    monkeypatch.setattr(recipe, "run_config", lambda name, folder: {
        "model": {"units": "bpe-256", "inter_ctc_layer": 4 if name == "inter-ctc" else None},
        "data": {"sorted_first_epoch": False}})
    rows = recipe.rows(PROBES, steps=2000, jobs=2)
    assert calls == [(["base", "inter-ctc"], 2)]
    assert [r["probe"] for r in rows] == ["base", "inter-ctc"]
    assert rows[1]["option"] == PROBES["inter-ctc"]
    assert rows[1]["settings"]["model"]["inter_ctc_layer"] == 4
    assert "train/loss" not in rows[0]["metrics"]
    section = recipe_section([{**r, "group": "recipe"} for r in rows])
    assert "| base | none (base) | 2,000 | 600 | 40.0% |" in section
    assert "`model.inter_ctc_layer=4`, `model.inter_ctc_weight=0.3`" in section
    assert section.splitlines()[-1].endswith("| -5.0 points |")


def test_without_recipe_rows_the_section_says_not_measured():
    assert recipe_section([]) == "Not measured: these results hold no `recipe` stage rows."
