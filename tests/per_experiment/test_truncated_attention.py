"""truncated_attention: the scaling stage's measurement, the report's targets (issue 20's and
the scaling benchmark's) and its breakdown and efficiency sections."""

from __future__ import annotations

import pytest

from experiments.truncated_attention.report import analysis
from experiments.truncated_attention.scaling import VARIANTS, measure_encoder
from experiments.truncated_attention.sections import (
    breakdown_section,
    efficiency_section,
    tuning_section,
)
from experiments.truncated_attention.targets import (
    previous_encoder_frames_per_second,
    targets,
    with_tuning,
)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_measure_encoder_runs_every_scaling_variant(name):
    window, kernel = VARIANTS[name]
    result = measure_encoder(2.0, window, kernel)
    assert result["encoder_frames"] == 24  # 200 frames after the default 8x subsampling
    assert result["seconds"] > 0 and result["peak_memory_mb"] >= 0


def _scaling(model: str, mb: float | None, error: str | None = None) -> dict:
    metrics = {"error": error} if error else {"seconds": 1.0, "peak_memory_mb": mb}
    return {"model": model, "audio_seconds": 600, "metrics": metrics}


def test_memory_target_is_judged_against_both_full_attention_kernels():
    """The fused kernel never holds the (T, T) weights, so only the materialised softmax shows
    the O(T^2) memory the target is about; the report judges both."""
    scaling = [_scaling("full", 330.0), _scaling("full (materialised)", 9900.0),
               _scaling("window (8,8)", 330.0)]
    table = targets({}, scaling, None)
    assert "below full's | 1.0x | missed |" in table
    assert "below full (materialised)'s | 30.0x | met |" in table
    failed = [_scaling("full", 330.0), _scaling("full (materialised)", None, "exit -9: killed"),
              _scaling("window (8,8)", 330.0)]
    assert "failed (exit -9: killed), truncated 330 MB | met |" in targets({}, failed, None)


def _row(group: str, **metrics: float) -> dict:
    return {"group": group, "name": f"{group}-s0", "model": "m", "metrics": metrics}


def _efficiency(run: str, frames_per_second: float, subsampling: int = 8) -> dict:
    return {"group": "efficiency", "name": f"efficiency {run}", "run": run, "model": "m",
            "subsampling": subsampling, "batch": 16, "audio_seconds": 5.0, "threads": 2,
            "metrics": {"step_flops": 4e9, "step_seconds": 0.2, "flops_per_second": 2e10,
                        "bf16_matmul_peak": 4e11, "peak_share": 0.05,
                        "samples_per_second": 100.0, "encoder_frames_per_second":
                            frames_per_second, "audio_seconds_per_second": 300.0}}


def _issue_20_rows() -> dict[str, dict]:
    default = _row("default", **{"test/wer_real": 0.6, "test/wer_real_general": 0.40,
                                 "test/cer_unseen": 0.2, "test/cer_unseen_beam": 0.14,
                                 "test/cer_unseen_word": 0.16})
    default["train_seconds"] = 3500.0
    return {"default": default, "full": _row("full", **{"test/cer_unseen": 0.30}),
            "w8-8": _row("w8-8", **{"test/cer_unseen": 0.32}),
            "w16-16": _row("w16-16", **{"test/cer_unseen": 0.50})}


def test_issue_20_targets_are_judged_with_the_default_and_its_efficiency_row():
    """At 8x subsampling the sweep's target window is (8,8), the seconds (16,16) spans at 4x;
    throughput is judged against the previous default recorded in targets.py."""
    peer = {"metrics": {"test/wer_real": 0.332}}
    rate = 2.5 * previous_encoder_frames_per_second()
    table = targets(_issue_20_rows(), [], peer, {"default-s0": _efficiency("default-s0", rate)})
    assert "| real prompts WER <= 45% (default model, best decoder) | 40.0% (general LM) | met |" \
        in table
    assert "| 40.0% (general LM) vs 33.2% | missed |" in table
    assert "| unseen synthetic voices CER <= 15% (default model, beam + LM) | 14.0% (beam+LM) " \
           "| met |" in table
    assert "| default training <= 60 min on this CPU | 3,500 s | met |" in table
    assert "(2.50x; previous default, 03e2be6); LM-decoded unseen CER 14.0% vs 33.1% | met |" \
        in table
    assert "| 20.0 GFLOP/s = 5.0% of the 400 GFLOP/s bf16 matmul peak | met |" in table
    assert "| window (8,8) at 8x subsampling (0.64 s each side) within 10% relative CER of " \
           "full (sweep, greedy, unseen voices) | 32.0% vs 30.0% | met |" in table


def test_a_window_is_not_judged_against_a_full_attention_run_that_never_learned():
    rows = {**_issue_20_rows(), "full": _row("full", **{"test/cer_unseen": 0.95})}
    table = targets(rows, [], None, {"default-s0": _efficiency("default-s0", 1000.0)})
    assert "| 32.0% vs 95.0%: full attention had not left CTC's blank plateau within the " \
           "sweep's budget, so there is no ability to compare with | inconclusive |" in table


def test_throughput_is_judged_against_a_previous_default_run_when_the_results_hold_one():
    by_group = {**_issue_20_rows(),
                "previous-default": _row("previous-default", **{"test/cer_unseen_beam": 0.1})}
    efficiency = {"default-s0": _efficiency("default-s0", 1900.0),
                  "previous-default-s0": _efficiency("previous-default-s0", 1000.0, 4)}
    table = targets(by_group, [], None, efficiency)
    assert "| 1,900 vs 1,000 encoder frames/s (1.90x; previous-default run); LM-decoded " \
           "unseen CER 14.0% vs 10.0% | missed |" in table


def test_without_the_new_stages_their_targets_and_sections_say_not_measured():
    report = analysis({"runs": list(_issue_20_rows().values())})
    assert "| training throughput >= 2x the previous default's at equal or better CER | - " \
           "| not measured |" in report
    assert "| the training step's FLOP/s reported beside the bf16 matmul peak | - " \
           "| not measured |" in report
    assert "window (16,16) at 4x subsampling (0.64 s each side)" in report
    assert "Not measured: these results hold no `breakdown` stage rows." in report
    assert "Not measured: these results hold no `efficiency` stage rows." in report


def _breakdown(by: str, value: str, decoder: str, cer: float, n: int) -> dict:
    return {"group": "breakdown", "run": "default-s0", "by": by, "value": value,
            "decoder": decoder, "metrics": {"cer": cer, "wer": 2 * cer, "utterances": n}}


def test_breakdown_and_efficiency_sections_tabulate_their_rows():
    rows = [_breakdown("all", "all", "greedy", 0.3, 10),
            _breakdown("all", "all", "beam", 0.2, 10),
            *(_breakdown("snr", band, decoder, 0.1, 5) for band in
              ("not recorded", "<15 dB", "clean") for decoder in ("greedy", "beam")),
            _breakdown("engine", "piper", "greedy", 0.4, 10),
            _breakdown("kind", "digits", "greedy", 0.1, 10)]
    section = breakdown_section(rows)
    assert "Run `default-s0` on its 10 unseen-voice test utterances" in section
    assert "| SNR band | utterances | greedy CER / WER | beam+LM CER / WER |" in section
    snr = section[section.index("| SNR band"):].split("\n\n")[0].splitlines()[2:]
    assert [line.split(" | ")[0] for line in snr] == ["| clean", "| <15 dB", "| not recorded"]
    assert "| piper | 10 | 40.0% / 80.0% |" in section
    assert "| G.722 codec |" in section and "| kind of text |" in section
    efficiency = efficiency_section([_efficiency("default-s0", 9000.0)])
    assert "| default-s0 | m | 16 x 5 s | 4.0 | 0.200 | 20.0 | 400 | 5.0% | 2 | 100.0 | " \
           "9,000 | 300.0 |" in efficiency
    assert "Previous default (03e2be6)" in efficiency


def _tuning_row(decoder: str, real_wer: float) -> dict:
    return {"group": "tuning", "name": f"tuning default-s0 {decoder}", "run": "default-s0",
            "model": "m", "decoder": decoder, "lm_weight": 2.0, "word_score": -1.0,
            "val_utterances": 300,
            "grid": [{"lm_weight": w, "word_score": -1.0, "cer": 0.1, "wer": 0.2}
                     for w in (0.5, 2.0)],
            "metrics": {"val/cer": 0.1, "val/wer": 0.2, "test/cer_unseen": 0.12,
                        "test/wer_unseen": 0.3, "test/cer_real": 0.2, "test/wer_real": real_wer}}


def test_decoders_tuned_on_validation_count_among_the_best_and_get_a_section():
    rows = _issue_20_rows()
    tuning = [_tuning_row("word", 0.5), _tuning_row("general", 0.38)]
    default = with_tuning(rows["default"], tuning)
    assert default["metrics"]["test/wer_real_general_tuned"] == 0.38
    assert rows["default"]["metrics"].get("test/wer_real_general_tuned") is None  # a copy
    table = targets({**rows, "default": default}, [], None, {})
    assert "| 38.0% (general LM, tuned on validation) | met |" in table
    section = tuning_section(tuning)
    assert "with every LM weight of 0.5, 2 and word score of -1;" in section
    assert "| default-s0 | general LM | 2 | -1 | 20.0% | 12.0% / 30.0% | 20.0% / 38.0% |" \
        in section
    assert tuning_section([]) == "Not measured: these results hold no `tuning` stage rows."
