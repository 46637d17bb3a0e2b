"""The ``attention_core`` report: time and memory of each attention variant by T, the banded
path's speed-ups and memory savings, and our encoder layer against PyTorch's."""

from __future__ import annotations

from typing import Any

from experiments.attention_core.benchmark import HEAD_DIM, HEADS, VARIANTS
from suite.report import pyplot


def _chart(rows: list[dict[str, Any]], key: str, ylabel: str) -> Any:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for name in VARIANTS:
        pts = [(r["seq_len"], r["metrics"][key]) for r in rows
               if r["group"] == name and key in r["metrics"]]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def charts(results: dict[str, Any]) -> dict[str, Any]:
    """Time and peak memory against T, one line per attention variant."""
    rows = [r for r in results["runs"] if "seq_len" in r]
    return {"attention_time.png": _chart(rows, "seconds", "seconds (fwd + bwd)"),
            "attention_memory.png": _chart(rows, "peak_memory_mb", "peak memory (MB)")}


def _ratio(a: dict | None, b: dict | None, key: str) -> str:
    return f"{a[key] / b[key]:.1f}x" if a and b and key in a and key in b else "-"


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "skipped"
    if "error" in m:
        return "failed"
    return f"{m['seconds']:.3f} s / {m['peak_memory_mb']:.0f} MB"


def analysis(results: dict[str, Any]) -> str:
    """The attention table by T, the banded path's ratios, the encoder layer table."""
    rows = [r for r in results["runs"] if "seq_len" in r]
    lengths = sorted({r["seq_len"] for r in rows})
    cell = {(r["group"], r["seq_len"]): r["metrics"] for r in rows}
    lines = [f"## Attention, forward + backward (B=1, {HEADS} heads x {HEAD_DIM}, fp32)", "",
             "| variant | " + " | ".join(f"T={t}" for t in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    for name in VARIANTS:
        lines.append(f"| {name} | " + " | ".join(_cell(cell.get((name, t))) for t in lengths)
                     + " |")
    banded, fused = "window +-32 (banded)", "full (fused SDPA)"
    explicit = "full (explicit T x T)"
    lines += ["", "| T | speed-up vs fused full | speed-up vs explicit full | memory: explicit "
              "full / banded | time(T) / time(T/2), banded |", "|---|---|---|---|---|"]
    for t in lengths:
        b, f, e = cell.get((banded, t)), cell.get((fused, t)), cell.get((explicit, t))
        half = cell.get((banded, t // 2))
        growth = _ratio(b, half, "seconds") if half else "-"
        lines.append(f"| {t} | {_ratio(f, b, 'seconds')} | {_ratio(e, b, 'seconds')} | "
                     f"{_ratio(e, b, 'peak_memory_mb')} | {growth} |")
    lines += ["", "![time](attention_time.png) ![memory](attention_memory.png)", "",
              "## Encoder layer train step vs torch.nn.TransformerEncoderLayer", "",
              "d_model 256, 4 heads, FFN 1024, GELU, pre-norm, dropout 0.1, batch 32 x 128 "
              "tokens, AdamW step included; medians of interleaved rounds.", "",
              "| precision | ours (seq/s) | torch (seq/s) | ours / torch |", "|---|---|---|---|"]
    for r in results["runs"]:
        if r["group"] == "encoder layer":
            m = r["metrics"]
            if m.get("ratio") is None:
                lines.append(f"| {r['precision']} | failed | failed | - |")
                continue
            lines.append(f"| {r['precision']} | {m['ours_samples_per_second']:.1f} | "
                         f"{m['torch_samples_per_second']:.1f} | {m['ratio']:.2f}x |")
    return "\n".join(lines)


