"""guided_attention: the report's reading of curves, stage rows and targets."""

from experiments.guided_attention.listen import SYNTHESES, synthesis_for
from experiments.guided_attention.report import analysis, free_running, steps_to, targets
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
