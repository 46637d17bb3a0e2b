"""The report's sections for the ``breakdown``, ``efficiency``, ``recipe`` and ``tuning`` stages'
rows; each says it was not measured when the results hold none of its rows."""

from __future__ import annotations

from typing import Any

from experiments.truncated_attention.groups import ordered
from experiments.truncated_attention.targets import (
    DECODERS,
    PREVIOUS_DEFAULT,
    fmt,
    previous_encoder_frames_per_second,
)
from suite.experiment import command_value

BREAKDOWN_TABLES = {"engine": "engine", "snr": "SNR band", "codec": "G.722 codec",
                    "kind": "kind of text"}
"""Groupings shown as tables (the rows also hold ``voice``: one group per voice id)."""


def _not_measured(stage: str) -> str:
    return f"Not measured: these results hold no `{stage}` stage rows."


def _label(decoder: str) -> str:
    return DECODERS.get(decoder, decoder)


def breakdown_table(rows: list[dict[str, Any]], by: str) -> str:
    """One run's CER / WER per group of ``by``, one column per decoder measured."""
    chosen = [r for r in rows if r["by"] == by]
    decoders = list(dict.fromkeys(r["decoder"] for r in chosen))
    cell = {(r["value"], r["decoder"]): r["metrics"] for r in chosen}
    head = [BREAKDOWN_TABLES[by], "utterances", *(f"{_label(d)} CER / WER" for d in decoders)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for value in ordered(by, {r["value"] for r in chosen}):
        scores = [cell.get((value, d)) for d in decoders]
        count = next(m["utterances"] for m in scores if m)
        lines.append("| " + " | ".join([value, str(count), *(
            f"{fmt(m['cer'])} / {fmt(m['wer'])}" if m else "-" for m in scores)]) + " |")
    return "\n".join(lines)


def breakdown_section(runs: list[dict[str, Any]]) -> str:
    """Per measured run: CER / WER on the unseen voices by engine, SNR band, codec and kind."""
    rows = [r for r in runs if r["group"] == "breakdown"]
    if not rows:
        return _not_measured("breakdown")
    parts = []
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        total = next(r["metrics"]["utterances"] for r in mine if r["by"] == "all")
        parts += [f"Run `{run}` on its {total} unseen-voice test utterances, decoded as its "
                  "test decodes them (greedy, and its LM decoder with the lowest unseen CER); "
                  "CER / WER corpus-level within each group. SNR: the noise added to an "
                  "utterance (clean: none).", ""]
        parts += [part for by in BREAKDOWN_TABLES for part in (breakdown_table(mine, by), "")]
    return "\n".join(parts[:-1])


def _efficiency_line(row: dict[str, Any]) -> str:
    m = row["metrics"]
    cells = [row["run"], str(row["model"]), f"{row['batch']} x {row['audio_seconds']:g} s",
             f"{m['step_flops'] / 1e9:.1f}", f"{m['step_seconds']:.3f}",
             f"{m['flops_per_second'] / 1e9:.1f}", f"{m['bf16_matmul_peak'] / 1e9:.0f}",
             f"{m['peak_share']:.1%}", str(row["threads"]), f"{m['samples_per_second']:.1f}",
             f"{m['encoder_frames_per_second']:,.0f}", f"{m['audio_seconds_per_second']:.1f}"]
    return "| " + " | ".join(cells) + " |"


def efficiency_section(runs: list[dict[str, Any]]) -> str:
    """The training step's achieved FLOP/s beside the bf16 matmul peak, and throughput."""
    rows = [r for r in runs if r["group"] == "efficiency"]
    if not rows:
        return _not_measured("efficiency")
    head = ["run", "model", "step batch", "step GFLOP", "step s", "achieved GFLOP/s",
            "bf16 matmul peak GFLOP/s", "share of peak", "threads", "samples/s",
            "encoder frames/s", "audio s per s"]
    return "\n".join([
        "One training step of the run's model (fresh weights) on a fixed batch of random "
        "features: forward, CTC, backward, clipping and AdamW at the run's precision, the "
        "median of the timed steps; FLOPs counted by PyTorch's FlopCounterMode (matrix "
        "products, convolutions, attention); the bf16 matmul peak measured in the same "
        "process. Throughput: the run's training samples/s times its corpus's mean training "
        "utterance.", "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
        *(_efficiency_line(r) for r in rows), "",
        f"Previous default ({PREVIOUS_DEFAULT['commit']}): "
        f"{previous_encoder_frames_per_second():,.0f} encoder frames/s "
        f"({PREVIOUS_DEFAULT['samples_per_second']} samples/s of "
        f"{PREVIOUS_DEFAULT['train_audio_hours']} h / {PREVIOUS_DEFAULT['train_size']:,} "
        f"training utterances at {PREVIOUS_DEFAULT['subsampling']}x subsampling)."])


RECIPE_COLUMNS = (("val/cer", "val CER"), ("test/cer_unseen", "unseen CER"),
                  ("test/wer_unseen", "unseen WER"), ("test/wer_real", "real WER"))


def _option(row: dict[str, Any]) -> str:
    options = row["option"].items()
    return ", ".join(f"`{key}={command_value(value)}`" for key, value in options) or "none (base)"


def recipe_section(runs: list[dict[str, Any]]) -> str:
    """The recipe probes side by side: each option alone against the base at equal steps, the
    change in validation CER, and the training time it cost."""
    rows = [r for r in runs if r["group"] == "recipe"]
    if not rows:
        return _not_measured("recipe")
    base = next((r for r in rows if not r["option"]), None)
    base_cer = base["metrics"].get("val/cer") if base else None
    head = ["probe", "option", "steps", "train s", *(label for _, label in RECIPE_COLUMNS),
            "val CER vs base"]
    lines = [f"Each probe trains the default recogniser for {rows[0]['steps']:,} optimiser "
             f"steps with all three options off but its own, {rows[0]['jobs']} probes at a "
             "time on their share of the threads; greedy decoding.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        m = row["metrics"]
        change = (f"{100 * (m['val/cer'] - base_cer):+.1f} points"
                  if base_cer is not None and m.get("val/cer") is not None and row is not base
                  else "-")
        lines.append("| " + " | ".join([row["probe"], _option(row), f"{row['steps']:,}",
                                        f"{row['train_seconds']:,.0f}",
                                        *(fmt(m.get(key)) for key, _ in RECIPE_COLUMNS),
                                        change]) + " |")
    return "\n".join(lines)


def tuning_section(runs: list[dict[str, Any]]) -> str:
    """Per run and vocabulary: the lexicon decoder's weights picked on validation, and the
    test sets decoded with them."""
    rows = [r for r in runs if r["group"] == "tuning"]
    if not rows:
        return _not_measured("tuning")
    grid = rows[0]["grid"]
    weights = sorted({g["lm_weight"] for g in grid})
    scores = sorted({g["word_score"] for g in grid})
    head = ["run", "vocabulary", "LM weight", "word score", "val WER", "unseen CER / WER",
            "real CER / WER"]
    lines = [f"Each lexicon decoder decodes {rows[0]['val_utterances']} validation utterances "
             f"(the training voices' held-out split, spread over its lengths) with every LM "
             f"weight of {', '.join(f'{w:g}' for w in weights)} and word score of "
             f"{', '.join(f'{s:g}' for s in scores)}; the pair with the lowest validation WER "
             "decodes the test sets. The targets count these decoders among the best.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        m = row["metrics"]
        lines.append("| " + " | ".join([
            row["run"], _label(row["decoder"]), f"{row['lm_weight']:g}",
            f"{row['word_score']:g}", fmt(m.get("val/wer")),
            f"{fmt(m.get('test/cer_unseen'))} / {fmt(m.get('test/wer_unseen'))}",
            f"{fmt(m.get('test/cer_real'))} / {fmt(m.get('test/wer_real'))}"]) + " |")
    return "\n".join(lines)
