"""The ``truncated_attention`` report's targets, each with its figure and met / missed / not
measured: issue 20's (real prompts, unseen voices, training time and throughput, the window
sweep, the step's FLOP/s) and the scaling benchmark's memory targets.

The throughput target compares the default run's encoder frames per second of training with
the previous default's: from a ``previous-default`` run and its ``efficiency`` row when the
results hold both, otherwise from :data:`PREVIOUS_DEFAULT`.
"""

from __future__ import annotations

from typing import Any

from experiments.truncated_attention.scaling import TRUNCATED

DECODERS = {"beam": "beam+LM", "word": "word LM", "general": "general LM"}
"""Metric suffix -> label of the decoders beside greedy: prefix beam search + character LM,
lexicon beam search + training-text word LM, the same over general English words and LM."""
TUNED = {f"{suffix}_tuned": f"{DECODERS[suffix]}, tuned on validation"
         for suffix in ("word", "general")}
"""The lexicon decoders again with the weights the ``tuning`` stage picked on validation."""
REAL_WER_MAX = 0.45
UNSEEN_CER_MAX = 0.15
TRAIN_SECONDS_MAX = 3600
THROUGHPUT_RATIO_MIN = 2.0
WINDOW_SLACK = 0.10
"""The (16,16)-equivalent window's CER may exceed full attention's by this share of it."""
UNLEARNED_CER = 0.9
"""A sweep run at or above this CER has not left CTC's blank plateau (it emits almost only
blanks): a window compared with it is not compared with full attention's ability."""
VERDICTS = {True: "met", False: "missed", None: "not measured"}
"""A check's outcome -> its verdict; a check may also give its own (``"inconclusive"``)."""
MEMORY_RATIO_MIN = 20
REFERENCE_WINDOW, REFERENCE_SUBSAMPLING = 16, 4
"""The window the sweep's target is stated for: (16,16) encoder frames at 4x subsampling."""
DEFAULT_RUN = "default-s0"
BASELINE_GROUP = "previous-default"
PREVIOUS_DEFAULT = {"commit": "03e2be6", "samples_per_second": 53.82, "train_size": 12168,
                    "train_audio_hours": 11.5, "subsampling": 4,
                    "cer_unseen_lm": 0.3309530019760132}
"""The default run in reports/truncated_attention/results.json as committed in 03e2be6
(generated at git 7a10f72042): samples/s, training utterances, the unseen-voice CER of its
best LM decoder (beam+LM), and its corpus's training audio as the experiment description
states it (rounded to 0.1 h), which gives its mean utterance length; its run's summary
recorded no frame count."""
FULL_VARIANTS = ("full", "full (materialised)")
"""Scaling rows: SDPA's fused kernel (never holds the (T, T) weights) and the math backend."""


def fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:,.0f}"


def best(metrics: dict[str, float], key: str, greedy: bool = True) -> tuple[float | None, str]:
    """The lowest of ``key`` (greedy, unless not ``greedy``) and its LM decoders' values, and
    which decoder it was."""
    options = [*([(metrics.get(key), "greedy")] if greedy else []),
               *((metrics.get(f"{key}_{suffix}"), label)
                 for suffix, label in (DECODERS | TUNED).items())]
    options = [o for o in options if o[0] is not None]
    return min(options) if options else (None, "-")


def with_tuning(run: dict[str, Any], tuning: list[dict[str, Any]]) -> dict[str, Any]:
    """``run`` with the test metrics of its ``tuning`` stage rows added under the decoder
    suffixes of :data:`TUNED` (``test/wer_real_general_tuned``)."""
    tuned = {f"{key}_{row['decoder']}_tuned": value for row in tuning
             if row["run"] == run["name"]
             for key, value in row["metrics"].items() if key.startswith("test/")}
    return {**run, "metrics": {**run["metrics"], **tuned}}


def previous_encoder_frames_per_second() -> float:
    """:data:`PREVIOUS_DEFAULT`'s samples/s times its mean training utterance in encoder
    frames (the nominal 100 / subsampling frames per second of audio)."""
    p = PREVIOUS_DEFAULT
    mean_seconds = p["train_audio_hours"] * 3600 / p["train_size"]
    return p["samples_per_second"] * mean_seconds * 100 / p["subsampling"]


def equivalent_window(subsampling: int) -> int:
    """Encoder frames each side covering the seconds (16,16) covers at 4x subsampling."""
    return REFERENCE_WINDOW * REFERENCE_SUBSAMPLING // subsampling


def subsampling_of(efficiency: dict[str, dict[str, Any]]) -> int:
    """The default run's subsampling as its ``efficiency`` row records it (4 without one): the
    sweep is run with the default's encoder."""
    return efficiency.get(DEFAULT_RUN, {}).get("subsampling", REFERENCE_SUBSAMPLING)


def _baseline(by_group: dict[str, dict[str, Any]], efficiency: dict[str, dict[str, Any]]
              ) -> tuple[float, float | None, str]:
    """The previous default's encoder frames/s, best LM-decoder unseen CER, and source."""
    run = by_group.get(BASELINE_GROUP)
    row = efficiency.get(f"{BASELINE_GROUP}-s0")
    if run and row:
        return (row["metrics"]["encoder_frames_per_second"],
                best(run["metrics"], "test/cer_unseen", greedy=False)[0], "previous-default run")
    return (previous_encoder_frames_per_second(), PREVIOUS_DEFAULT["cer_unseen_lm"],
            f"previous default, {PREVIOUS_DEFAULT['commit']}")


def _throughput(by_group: dict[str, dict[str, Any]], efficiency: dict[str, dict[str, Any]]
                ) -> tuple[str, bool | None]:
    row = efficiency.get(DEFAULT_RUN)
    if row is None:
        return "-", None
    rate = row["metrics"]["encoder_frames_per_second"]
    before, before_cer, source = _baseline(by_group, efficiency)
    default = by_group.get("default")
    cer = best(default["metrics"], "test/cer_unseen", greedy=False)[0] if default else None
    measured = (f"{rate:,.0f} vs {before:,.0f} encoder frames/s ({rate / before:.2f}x; "
                f"{source}); LM-decoded unseen CER {fmt(cer)} vs {fmt(before_cer)}")
    if cer is None or before_cer is None:
        return measured, None
    return measured, rate >= THROUGHPUT_RATIO_MIN * before and cer <= before_cer


def _flop_rate(efficiency: dict[str, dict[str, Any]]) -> str:
    row = efficiency.get(DEFAULT_RUN)
    if row is None:
        return "-"
    m = row["metrics"]
    return (f"{m['flops_per_second'] / 1e9:.1f} GFLOP/s = {m['peak_share']:.1%} of the "
            f"{m['bf16_matmul_peak'] / 1e9:.0f} GFLOP/s bf16 matmul peak")


def _window(by_group: dict[str, dict[str, Any]], subsampling: int
            ) -> tuple[str, str, bool | str | None]:
    n = equivalent_window(subsampling)
    seconds = n * subsampling / 100  # encoder frames -> 10 ms input frames -> seconds
    name = (f"window ({n},{n}) at {subsampling}x subsampling ({seconds:g} s each side) "
            f"within 10% relative CER of full (sweep, greedy, unseen voices)")
    full, window = by_group.get("full"), by_group.get(f"w{n}-{n}")
    if not (full and window):
        return name, "-", None
    a, b = window["metrics"].get("test/cer_unseen"), full["metrics"].get("test/cer_unseen")
    if a is None or b is None:
        return name, f"{fmt(a)} vs {fmt(b)}", None
    if b >= UNLEARNED_CER:
        return name, (f"{fmt(a)} vs {fmt(b)}: full attention had not left CTC's blank plateau "
                      f"within the sweep's budget, so there is no ability to compare with"), \
            "inconclusive"
    return name, f"{fmt(a)} vs {fmt(b)}", a <= (1 + WINDOW_SLACK) * b


def _memory(scaling: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    at = {r["model"]: r["metrics"] for r in scaling if r["audio_seconds"] == 600}
    trunc_mb = at.get(TRUNCATED, {}).get("peak_memory_mb")
    out = []
    for variant in FULL_VARIANTS:
        name = f"10 min of audio: truncated peak memory >= 20x below {variant}'s"
        full = at.get(variant, {})
        if "error" in full and trunc_mb is not None:
            out.append((name, f"{variant} failed ({full['error']}), truncated "
                              f"{trunc_mb:.0f} MB", True))
            continue
        full_mb = full.get("peak_memory_mb")
        ratio = full_mb / trunc_mb if full_mb and trunc_mb else None
        out.append((name, f"{ratio:.1f}x" if ratio else "-",
                    None if ratio is None else ratio >= MEMORY_RATIO_MIN))
    return out


def targets(by_group: dict[str, dict[str, Any]], scaling: list[dict[str, Any]],
            peer: dict[str, Any] | None, efficiency: dict[str, dict[str, Any]] | None = None
            ) -> str:
    """The targets table: sweep rows by group, scaling rows, the peer's row and the
    ``efficiency`` rows by run."""
    efficiency = efficiency or {}
    default = by_group.get("default")
    m = default["metrics"] if default else {}
    wer, how = best(m, "test/wer_real")
    peer_wer = peer["metrics"]["test/wer_real"] if peer else None
    cer, cer_how = best(m, "test/cer_unseen", greedy=False)
    seconds = default.get("train_seconds") if default else None
    flop_rate = _flop_rate(efficiency)
    checks = [
        ("real prompts WER <= 45% (default model, best decoder)", f"{fmt(wer)} ({how})",
         None if wer is None else wer <= REAL_WER_MAX),
        ("stretch: real prompts WER <= pocketsphinx's on the same prompts",
         f"{fmt(wer)} ({how}) vs {fmt(peer_wer)}",
         None if wer is None or peer_wer is None else wer <= peer_wer),
        ("unseen synthetic voices CER <= 15% (default model, beam + LM)",
         f"{fmt(cer)} ({cer_how})", None if cer is None else cer <= UNSEEN_CER_MAX),
        ("default training <= 60 min on this CPU", f"{fmt(seconds, False)} s",
         None if seconds is None else seconds <= TRAIN_SECONDS_MAX),
        ("training throughput >= 2x the previous default's at equal or better CER",
         *_throughput(by_group, efficiency)),
        ("the training step's FLOP/s reported beside the bf16 matmul peak", flop_rate,
         None if flop_rate == "-" else True),
        _window(by_group, subsampling_of(efficiency)),
        *_memory(scaling)]
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for name, measured, ok in checks:
        lines.append(f"| {name} | {measured} | {VERDICTS.get(ok, ok)} |")
    return "\n".join(lines)
