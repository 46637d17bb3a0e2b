"""The ``truncated_attention`` report: each target checked against the measured numbers, the
sweep and peer table, and the ``scaling`` stage's table and plots."""

from __future__ import annotations

from typing import Any

from suite.report import pyplot

METRICS = ["test/cer_unseen", "test/wer_unseen", "test/cer_real", "test/wer_real"]
DECODERS = {"beam": "beam+LM", "word": "word LM"}
"""Metric suffix -> label of the decoders beside greedy: prefix beam search + character LM,
lexicon beam search + word LM."""


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:,.0f}"


def _best(metrics: dict[str, float], key: str) -> tuple[float | None, str]:
    """The best of greedy and the LM decoders for ``key``, and which it was."""
    options = [(metrics.get(key), "greedy"),
               *((metrics.get(f"{key}_{suffix}"), label) for suffix, label in DECODERS.items())]
    options = [o for o in options if o[0] is not None]
    return min(options) if options else (None, "-")


def sweep_table(runs: list[dict[str, Any]], peer: dict[str, Any] | None) -> str:
    head = ["run", "model", "CER unseen", "WER unseen", "CER real", "WER real",
            *(f"{label} CER / WER {part}" for label in DECODERS.values()
              for part in ("unseen", "real")),
            "epochs", "train s", "peak MB", "params"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        m = r["metrics"]
        decoded = [f"{_fmt(m.get(cer))} / {_fmt(m.get(wer))}" if cer in m else "-"
                   for suffix in DECODERS for cer, wer in
                   ((f"{METRICS[0]}_{suffix}", f"{METRICS[1]}_{suffix}"),
                    (f"{METRICS[2]}_{suffix}", f"{METRICS[3]}_{suffix}"))]
        lines.append("| " + " | ".join([
            r["group"], str(r.get("model")), *(_fmt(m.get(k)) for k in METRICS), *decoded,
            str(r.get("epochs", "-")), _fmt(r.get("train_seconds"), False),
            _fmt(r.get("peak_memory_mb"), False), _fmt(r.get("params"), False)]) + " |")
    if peer:
        m = peer["metrics"]
        lines.append(f"| pocketsphinx (peer, {m['utterances']} prompts) | {peer['model']} | - "
                     f"| - | {_fmt(m['test/cer_real'])} | {_fmt(m['test/wer_real'])} | - | - "
                     f"| - | - | - | decode {m['decode_seconds']:.0f} s for "
                     f"{m['audio_seconds']:.0f} s of audio | - | - |")
    return "\n".join(lines)


TRUNCATED = "window (16,16)"
FULL_VARIANTS = ("full", "full (materialised)")
"""Scaling rows: SDPA's fused kernel (never holds the (T, T) weights) and the math backend."""


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


def targets(by_group: dict[str, dict[str, Any]], scaling: list[dict[str, Any]],
            peer: dict[str, Any] | None) -> str:
    """The experiment's targets, each with the measured value and met / missed / not measured."""
    rows = []

    def add(name: str, measured: str, ok: bool | None) -> None:
        verdict = "not measured" if ok is None else ("met" if ok else "missed")
        rows.append(f"| {name} | {measured} | {verdict} |")

    default = by_group.get("default")
    m = default["metrics"] if default else {}
    cer, how = _best(m, "test/cer_unseen")
    add("unseen synthetic voices CER <= 5% (default model)", f"{_fmt(cer)} ({how})",
        None if cer is None else cer <= 0.05)
    wer, how = _best(m, "test/wer_real")
    peer_wer = peer["metrics"]["test/wer_real"] if peer else None
    add("real speech WER <= pocketsphinx's", f"{_fmt(wer)} ({how}) vs {_fmt(peer_wer)}",
        None if wer is None or peer_wer is None else wer <= peer_wer)
    full, w16 = by_group.get("full"), by_group.get("w16-16")
    if full and w16:
        a, b = w16["metrics"].get("test/cer_unseen"), full["metrics"].get("test/cer_unseen")
        ok = None if a is None or b is None else a <= 1.1 * b
        add("(16,16) within 10% relative CER of full (sweep, greedy, unseen voices)",
            f"{_fmt(a)} vs {_fmt(b)}", ok)
    else:
        add("(16,16) within 10% relative CER of full", "-", None)
    at = {r["model"]: r["metrics"] for r in scaling if r["audio_seconds"] == 600}
    trunc_mb = at.get(TRUNCATED, {}).get("peak_memory_mb")
    for variant in FULL_VARIANTS:
        name = f"10 min of audio: truncated peak memory >= 20x below {variant}'s"
        full = at.get(variant, {})
        if "error" in full and trunc_mb is not None:
            add(name, f"{variant} failed ({full['error']}), truncated {trunc_mb:.0f} MB", True)
            continue
        full_mb = full.get("peak_memory_mb")
        ratio = full_mb / trunc_mb if full_mb and trunc_mb else None
        add(name, f"{ratio:.1f}x" if ratio else "-", None if ratio is None else ratio >= 20)
    seconds = default.get("train_seconds") if default else None
    add("default training <= 30 min on this CPU", f"{_fmt(seconds, False)} s (max_time cap)",
        None if seconds is None else seconds <= 1800)
    return "\n".join(["| target | measured | verdict |", "|---|---|---|", *rows])


def analysis(results: dict[str, Any]) -> str:
    """Targets, the window sweep beside the peer, and the encoder scaling table."""
    runs = results["runs"]
    sweep = [r for r in runs if r["group"] != "peer" and not r["group"].startswith("scaling")]
    peer = next((r for r in runs if r["group"] == "peer"), None)
    by_group = {r["group"]: r for r in sweep}
    scaling = _scaling(results)
    return "\n".join([
        "## Targets", "", targets(by_group, scaling, peer), "",
        "## Window sweep and peer", "",
        "Windows are (left, right) in encoder frames after 4x subsampling (40 ms each). "
        "CER/WER are corpus-level (torchmetrics); 'unseen' = synthetic voices held out of "
        "training, 'real' = the Asterisk prompts (one human speaker). Greedy CTC unless "
        "marked beam+LM (prefix beam search + character 6-gram) or word LM (lexicon beam "
        "search over the training text's words + word trigram; flashlight's decoder), both "
        "LMs trained on the training transcripts only.", "", sweep_table(sweep, peer), "",
        "## Encoder scaling: forward time / peak memory vs audio length", "",
        "Default-size encoder (random weights), batch 1, fp32, no grad; each cell a fresh "
        "subprocess.", "", scaling_table(scaling)])
