"""Benchmark ``attention_core``: windowed vs full attention as T grows, and our encoder layer
against ``torch.nn.TransformerEncoderLayer``.

Every measurement runs in a fresh subprocess; its peak memory is the kernel's peak resident
size (``VmHWM``, reset just before the first attention call) minus the resident size at that
moment, so inputs and start-up are excluded and only what attention itself allocates counts.
Times are the median of repeated forward + backward passes after one warm-up pass.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

WINDOW = (32, 32)
LENGTHS = [1024, 2048, 4096, 8192, 16384]
HEADS, HEAD_DIM = 4, 64
# name -> (impl, windowed); "full-explicit" is the textbook T x T softmax.
VARIANTS = {
    "full (fused SDPA)": ("fused", False),
    "full (explicit T x T)": ("explicit", False),
    "window +-32 (dense mask)": ("fused", True),
    "window +-32 (banded)": ("banded", True),
}
EXPLICIT_MAX_T = 8192  # the T x T path needs ~3 GB at 8k; 16k would need ~12 GB


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith(field))
    return int(line.split()[1]) / 1024


def _reset_peak() -> float:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5) and return the current RSS,
    so the next ``VmHWM`` read is the peak of what runs in between, not of start-up."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _proc_status_mb("VmRSS")


def measure_attention(seq_len: int, impl: str, windowed: bool, repeats: int) -> dict[str, float]:
    """One configuration, in this process: median seconds of fwd+bwd and peak memory (MB)."""
    from suite.attention import AttentionMask, attend

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, seq_len, HEAD_DIM, generator=generator).requires_grad_()
               for _ in range(3))
    mask = AttentionMask(window=WINDOW) if windowed else AttentionMask()
    before = _reset_peak()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        out, _ = attend(q, k, v, mask, impl=impl)
        out.sum().backward()
        times.append(time.perf_counter() - start)
        q.grad = k.grad = v.grad = None
    return {"seconds": statistics.median(times[1:]),
            "peak_memory_mb": _proc_status_mb("VmHWM") - before}


def _layer_pair(dim: int, heads: int, ffn: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    from suite.blocks import EncoderLayer, LayerConfig

    torch.manual_seed(0)
    ours = EncoderLayer(LayerConfig(dim=dim, num_heads=heads, ffn_dim=ffn, dropout=0.1))
    theirs = torch.nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.1, activation="gelu",
                                              batch_first=True, norm_first=True)
    return ours, theirs


def measure_layers(dtype: str, rounds: int, steps: int, batch: int = 32, seq_len: int = 128,
                   dim: int = 256, heads: int = 4, ffn: int = 1024) -> dict[str, float]:
    """Train-step throughput (sequences/s) of both layers, interleaved round by round so
    machine noise hits both alike; returns the median of each."""
    ours, theirs = _layer_pair(dim, heads, ffn)
    x = torch.randn(batch, seq_len, dim)
    lengths = torch.full((batch,), seq_len)
    from suite.attention import AttentionMask

    mask = AttentionMask(key_lengths=lengths)
    padding = torch.zeros(batch, seq_len, dtype=torch.bool)
    calls = {"ours": (ours, lambda: ours(x, mask)[0]),
             "torch": (theirs, lambda: theirs(x, src_key_padding_mask=padding))}
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, (m, _) in calls.items()}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    rates: dict[str, list[float]] = {k: [] for k in calls}
    for round_ in range(rounds + 1):
        for name, (_, call) in calls.items():
            start = time.perf_counter()
            for _ in range(steps):
                with autocast:
                    loss = call().float().square().mean()
                loss.backward()
                optimizers[name].step()
                optimizers[name].zero_grad(set_to_none=True)
            if round_:  # round 0 is warm-up
                rates[name].append(steps * batch / (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in rates.items()}


def _subprocess(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "suite.benchmarks.attention_core", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict[str, Any]]:
    """All rows of the benchmark (``quick``: shorter sequences and fewer repeats)."""
    lengths = LENGTHS[:3] if quick else LENGTHS
    rows = []
    for seq_len in lengths:
        for name, (impl, windowed) in VARIANTS.items():
            if impl == "explicit" and seq_len > EXPLICIT_MAX_T:
                continue
            repeats = 1 if quick or seq_len >= 8192 and impl != "banded" else 3
            result = _subprocess(["attention", str(seq_len), impl, str(int(windowed)),
                                  str(repeats)])
            print(f"  T={seq_len:6d} {name:28s} {result}", flush=True)
            rows.append({"name": f"{name} T={seq_len}", "group": name, "model": name,
                         "seq_len": seq_len, "precision": "32-true", "params": 0,
                         "metrics": result})
    for dtype in ("fp32", "bf16"):
        result = _subprocess(["layers", dtype, "2" if quick else "5", "3" if quick else "10"])
        print(f"  encoder layer {dtype}: {result}", flush=True)
        rows.append({"name": f"encoder-layer-{dtype}", "group": "encoder layer",
                     "model": "EncoderLayer vs nn.TransformerEncoderLayer",
                     "precision": "bf16-mixed" if dtype == "bf16" else "32-true",
                     "metrics": {"ours_samples_per_second": result.get("ours"),
                                 "torch_samples_per_second": result.get("torch"),
                                 "ratio": (result["ours"] / result["torch"])
                                 if "ours" in result else None}})
    return rows


def _plot(rows: list[dict[str, Any]], key: str, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ratio(a: dict | None, b: dict | None, key: str) -> str:
    return f"{a[key] / b[key]:.1f}x" if a and b and key in a and key in b else "-"


def report(results: dict[str, Any], out_dir: Path) -> str:
    """Markdown tables + plots for the report README."""
    rows = [r for r in results["runs"] if "seq_len" in r]
    lengths = sorted({r["seq_len"] for r in rows})
    cell = {(r["group"], r["seq_len"]): r["metrics"] for r in rows}
    lines = [f"## Attention, forward + backward (B=1, {HEADS} heads x {HEAD_DIM}, fp32)", "",
             "| variant | " + " | ".join(f"T={t}" for t in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    for name in VARIANTS:
        def fmt(m: dict | None) -> str:
            if m is None:
                return "skipped"
            if "error" in m:
                return "failed"
            return f"{m['seconds']:.3f} s / {m['peak_memory_mb']:.0f} MB"
        lines.append(f"| {name} | " + " | ".join(fmt(cell.get((name, t))) for t in lengths) + " |")
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
    _plot(rows, "seconds", "seconds (fwd + bwd)", out_dir / "attention_time.png")
    _plot(rows, "peak_memory_mb", "peak memory (MB)", out_dir / "attention_memory.png")
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


def _main(argv: list[str]) -> None:
    if argv[0] == "attention":
        seq_len, impl, windowed, repeats = int(argv[1]), argv[2], argv[3] == "1", int(argv[4])
        print(json.dumps(measure_attention(seq_len, impl, windowed, repeats)))
    else:
        print(json.dumps(measure_layers(argv[1], int(argv[2]), int(argv[3]))))


if __name__ == "__main__":
    _main(sys.argv[1:])
