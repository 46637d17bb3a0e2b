"""guided_attention: the report's reading of curves, stage rows and targets."""

import torch

from experiments.guided_attention.listen import SYNTHESES, skip_flags, synthesis_for
from experiments.guided_attention.report import (
    alignment_table,
    analysis,
    free_running,
    skip_rule_table,
    steps_to,
    targets,
)
from tasks.tts.synthesis import Synthesis


def _run(group: str, seed: int, steps_to_align: float, curve: list[float]) -> dict:
    return {"name": f"{group}-s{seed}", "group": group, "head": "tts", "seed": seed,
            "steps": 100 * len(curve), "train_seconds": 60.0,
            "metrics": {"val/steps_to_align": steps_to_align, "val/align_acc": curve[-1]},
            "curves": {"val/align_acc": [[100 * (i + 1), a] for i, a in enumerate(curve)]}}


def _stage(run: str, synthesis: str, errors: float) -> dict:
    return {"name": f"free-running-{run}" + ("" if synthesis == "windowed" else f"-{synthesis}"),
            "stage": "free-running", "run": run, "synthesis": synthesis,
            "metrics": {"test/any_error_short": errors, "test/any_error_long": 2 * errors,
                        "test/duration_error_median_short": 0.05,
                        "test/duration_error_median_long": 0.2}}


RESULTS = {"experiment": "guided_attention", "command": "suite experiment guided_attention",
           "runs": [_run("guided", 0, 300, [0.5, 0.95, 0.96]),
                    _run("unguided", 0, -1, [0.2, 0.3, 0.95]),
                    _stage("guided-s0", "windowed", 0.01), _stage("guided-s0", "windowless", 0.08),
                    _stage("guided-s0", "by-phrase", 0.04)]}


def test_steps_to_a_level_needs_it_held_at_the_next_evaluation() -> None:
    curve = [[100, 0.7], [200, 0.85], [300, 0.75], [400, 0.82], [500, 0.9]]
    assert steps_to(curve, 0.8) == 400
    assert steps_to(curve, 0.95) is None


def test_free_running_rows_are_grouped_by_their_run_and_synthesis() -> None:
    assert [r["run"] for r in free_running(RESULTS)["guided"]] == ["guided-s0"]
    assert free_running(RESULTS, "windowless")["guided"][0]["metrics"][
        "test/any_error_short"] == 0.08
    assert free_running(RESULTS, "by-phrase")["guided"][0]["name"] == (
        "free-running-guided-s0-by-phrase")


def test_targets_say_met_missed_or_not_measured() -> None:
    groups = {"guided": RESULTS["runs"][:1], "unguided": RESULTS["runs"][1:2]}
    table = "\n".join(targets(RESULTS, groups))
    assert "| guided aligns within 1500 steps (every seed) | 300 | met |" in table
    assert "unguided never aligned within the budget | met |" in table
    assert "(windowed) <= 2% | 1.0% | met |" in table
    assert "(no window) <= 5% | 8.0% | missed |" in table
    assert "synthesised phrase by phrase | 8.0% | met |" in table
    assert "on flite's | - | not measured |" in table


def test_analysis_renders_every_section_present() -> None:
    text = analysis(RESULTS)
    assert "## The monotonic inference window" in text and "## Intelligibility" not in text
    assert "| guided | 1.0 / 8.0 / 4.0 | 2.0 / 16.0 / 8.0 | 20.0 / 20.0 |" in text
    assert "| guided | 1 | 300 | 200 |" in text  # 90% at 300 steps, 80% held from 200


def test_each_free_running_condition_keeps_the_runs_other_settings() -> None:
    base = Synthesis(max_stall=7, by_phrase=True)
    conditions = {name: synthesis_for(base, name) for name in SYNTHESES}
    assert [(c.windowed, c.by_phrase) for c in conditions.values()] == [
        (True, False), (False, False), (True, True)]
    assert all(c.max_stall == 7 for c in conditions.values())


def test_skip_flags_read_the_rule_on_attention_and_on_the_true_alignment() -> None:
    # item 0: token 1 lasts less than a step (no step's own), attention shares it at 0.3;
    # item 1: token 1 owns step 1 but attention passes it by; token 2 is a pause in both
    true = torch.tensor([[0, 2, 3, 3], [0, 1, 3, 3]])
    weights = torch.zeros(2, 4, 4)
    weights[0, 0, 0], weights[0, 1, 1], weights[0, 1, 2], weights[0, 2:, 3] = 1, 0.3, 0.7, 1
    weights[1, 0, 0], weights[1, 1, 0], weights[1, 2:, 3] = 1, 1, 1
    silent = torch.tensor([[False, False, True, False]] * 2)
    model, timing = skip_flags(weights, true, torch.tensor([4, 4]), torch.tensor([4, 4]), silent)
    assert model == [False, True]
    assert timing == [True, False]
    unknown = torch.full_like(true, -1)  # character input: flite times no character
    assert skip_flags(weights, unknown, torch.tensor([4, 4]), torch.tensor([4, 4]),
                      silent)[1] == [None, None]


def test_skip_rule_table_sets_the_floor_beside_the_free_running_rate() -> None:
    row = {"name": "skip-rule-guided-s0", "stage": "skip-rule", "run": "guided-s0",
           "metrics": {"test/skip_teacher_forced_short": 0.05,
                       "test/skip_true_alignment_short": 0.1,
                       "test/skip_teacher_forced_long": 0.2,
                       "test/skip_true_alignment_long": 0.3}}
    stage = _stage("guided-s0", "windowed", 0.01)
    stage["metrics"]["test/skip_short"] = 0.25
    table = skip_rule_table({"runs": [stage, row]})
    assert table[-1] == "| guided-s0 | 25.0 | 5.0 | 10.0 | 20.0 | 30.0 |"
    untimed = {**row, "metrics": {k: v for k, v in row["metrics"].items() if "true" not in k}}
    assert skip_rule_table({"runs": [stage, untimed]})[-1] == \
        "| guided-s0 | 25.0 | 5.0 | - | 20.0 | - |"
    with_floor = {**RESULTS, "runs": [*RESULTS["runs"], row]}
    assert "## How often the skip rule fires" in analysis(with_floor)


def test_a_run_without_an_alignment_curve_is_not_scored_as_never_aligned() -> None:
    characters = {**_run("characters", 0, -1, [0.5]), "curves": {}}
    characters["metrics"] = {"val/focus_rate": 0.8}
    row = alignment_table({"characters": [characters]})[-1]
    assert row.startswith("| characters | 1 | - | - | - | 0.800 |")


def test_the_unguided_ratio_says_how_many_seeds_never_aligned() -> None:
    unguided = [_run("unguided", 0, 330, [0.2, 0.95, 0.96]), _run("unguided", 1, -1, [0.2, 0.3])]
    table = "\n".join(targets(RESULTS, {"guided": RESULTS["runs"][:1], "unguided": unguided}))
    assert "| 1.1x over the unguided seeds that aligned; 1 of 2 never did | missed |" in table
