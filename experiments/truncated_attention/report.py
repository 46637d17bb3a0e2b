"""The ``truncated_attention`` report: each target checked against the measured numbers
(:mod:`experiments.truncated_attention.targets`), the sweep and peer table, the ``scaling``
stage's table and plots, and the ``breakdown`` and ``efficiency`` stages' tables."""

from __future__ import annotations

from typing import Any

from experiments.truncated_attention.sections import (
    breakdown_section,
    efficiency_section,
    recipe_section,
    tuning_section,
)
from experiments.truncated_attention.targets import (
    DECODERS,
    FULL_VARIANTS,
    TRUNCATED,
    fmt,
    subsampling_of,
    targets,
    with_tuning,
)
from suite.report import pyplot

METRICS = ["test/cer_unseen", "test/wer_unseen", "test/cer_real", "test/wer_real"]


def sweep_table(runs: list[dict[str, Any]], peer: dict[str, Any] | None) -> str:
    head = ["run", "model", "CER unseen", "WER unseen", "CER real", "WER real",
            *(f"{label} CER / WER {part}" for label in DECODERS.values()
              for part in ("unseen", "real")),
            "epochs", "train s", "peak MB", "params"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        m = r["metrics"]
        decoded = [f"{fmt(m.get(cer))} / {fmt(m.get(wer))}" if cer in m else "-"
                   for suffix in DECODERS for cer, wer in
                   ((f"{METRICS[0]}_{suffix}", f"{METRICS[1]}_{suffix}"),
                    (f"{METRICS[2]}_{suffix}", f"{METRICS[3]}_{suffix}"))]
        lines.append("| " + " | ".join([
            r["group"], str(r.get("model")), *(fmt(m.get(k)) for k in METRICS), *decoded,
            str(r.get("epochs", "-")), fmt(r.get("train_seconds"), False),
            fmt(r.get("peak_memory_mb"), False), fmt(r.get("params"), False)]) + " |")
    if peer:
        m = peer["metrics"]
        undecoded = " | ".join(["-"] * (2 * len(DECODERS) + 1))  # its LM decoders, epochs
        lines.append(f"| pocketsphinx (peer, {m['utterances']} prompts) | {peer['model']} | - "
                     f"| - | {fmt(m['test/cer_real'])} | {fmt(m['test/wer_real'])} "
                     f"| {undecoded} | decode {m['decode_seconds']:.0f} s for "
                     f"{m['audio_seconds']:.0f} s of audio | - | - |")
    return "\n".join(lines)


def _memory_ratio(full: dict[str, Any], trunc: dict[str, Any]) -> str:
    if "peak_memory_mb" not in full or "peak_memory_mb" not in trunc:
        return "-"
    return f"{full['peak_memory_mb'] / max(trunc['peak_memory_mb'], 1e-3):.1f}x"


def _scaling(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results["runs"] if r["group"].startswith("scaling")]


def scaling_table(rows: list[dict[str, Any]]) -> str:
    names = sorted({r["model"] for r in rows})
    lengths = sorted({r["audio_seconds"] for r in rows})
    cell = {(r["model"], r["audio_seconds"]): r["metrics"] for r in rows}
    lines = ["| audio | encoder frames | " + " | ".join(names)
             + " | memory full / truncated | memory materialised / truncated |",
             "|---|---|" + "---|" * len(names) + "---|---|"]
    for s in lengths:
        cells, frames = [], "-"
        for n in names:
            m = cell.get((n, s), {})
            frames = str(m.get("encoder_frames", frames))
            cells.append(m["error"] if "error" in m else
                         f"{m['seconds']:.2f} s / {m['peak_memory_mb']:.0f} MB")
        trunc = cell.get((TRUNCATED, s), {})
        ratios = [_memory_ratio(cell.get((n, s), {}), trunc) for n in FULL_VARIANTS]
        lines.append(f"| {s} s | {frames} | " + " | ".join(cells + ratios) + " |")
    lines += ["", "![time](scaling_seconds.png) ![memory](scaling_peak_memory_mb.png)"]
    return "\n".join(lines)


def charts(results: dict[str, Any]) -> dict[str, Any]:
    """Forward seconds and peak memory against audio length, one line per variant."""
    rows = _scaling(results)
    names = sorted({r["model"] for r in rows})
    lengths = sorted({r["audio_seconds"] for r in rows})
    cell = {(r["model"], r["audio_seconds"]): r["metrics"] for r in rows}
    figures = {}
    for key, label in (("seconds", "forward seconds"), ("peak_memory_mb", "peak memory (MB)")):
        fig, ax = pyplot().subplots(figsize=(6, 4))
        for n in names:
            pts = [(s, cell[(n, s)][key]) for s in lengths if key in cell.get((n, s), {})]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=n)
        ax.set(xscale="log", yscale="log", xlabel="audio seconds", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
        figures[f"scaling_{key}.png"] = fig
    return figures


STAGE_GROUPS = ("peer", "breakdown", "efficiency", "recipe", "tuning")
"""Row groups of stages other than ``scaling`` (whose groups start with "scaling")."""


def _sweep(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training runs' rows: the default and the window sweep."""
    return [r for r in runs if r["group"] not in STAGE_GROUPS
            and not r["group"].startswith("scaling")]


def analysis(results: dict[str, Any]) -> str:
    """Targets, the window sweep beside the peer, the encoder scaling table, where the unseen
    voices' errors lie, the training step's efficiency, the decoder weights tuned on
    validation and the recipe probes."""
    runs = results["runs"]
    sweep = _sweep(runs)
    peer = next((r for r in runs if r["group"] == "peer"), None)
    tuning = [r for r in runs if r["group"] == "tuning"]
    by_group = {r["group"]: with_tuning(r, tuning) for r in sweep}
    efficiency = {r["run"]: r for r in runs if r["group"] == "efficiency"}
    scaling = _scaling(results)
    subsampling = subsampling_of(efficiency)
    return "\n".join([
        "## Targets", "", targets(by_group, scaling, peer, efficiency), "",
        "## Window sweep and peer", "",
        f"Windows are (left, right) in encoder frames after {subsampling}x subsampling "
        f"({10 * subsampling} ms each). "
        "CER/WER are corpus-level (torchmetrics); 'unseen' = synthetic voices held out of "
        "training, 'real' = the Asterisk prompts (one human speaker). Greedy CTC unless "
        "marked beam+LM (prefix beam search + character 6-gram), word LM (lexicon beam "
        "search over the training text's words + word trigram; flashlight's decoder) or "
        "general LM (the same search over pocketsphinx's general English words and n-gram "
        "LM); the character and word LMs are trained on the training transcripts only.", "",
        sweep_table(sweep, peer), "",
        "## Encoder scaling: forward time / peak memory vs audio length", "",
        "Default-size encoder (random weights), batch 1, fp32, no grad; each cell a fresh "
        "subprocess.", "", scaling_table(scaling), "",
        "## Decoder weights tuned on validation", "", tuning_section(runs), "",
        "## Unseen voices: where the errors are", "", breakdown_section(runs), "",
        "## Training efficiency", "", efficiency_section(runs), "",
        "## Recipe options: each alone against the base", "", recipe_section(runs)])
