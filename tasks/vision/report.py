"""Analysis of the ``vit_vs_cnn`` experiment (the report's ``analysis`` hook) and the two side-by-
side measurements it adds: our ViT against ``torchvision.models.VisionTransformer`` of the same
depth, width, heads and patch size, and bf16-mixed against fp32.

Throughput is timed in one process, the models' training steps interleaved round by round, so
that load from other processes on a shared CPU falls on all of them alike; the median round
counts. The rows are appended to the report's ``results.json`` (``metrics`` =
``bench/samples_per_second``) next to the training runs.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from suite.data import atomic_write_bytes
from suite.report import grouped, is_quick, mean_sd
from tasks.vision.data import DATASETS
from tasks.vision.model import build_model, torchvision_vit

ROOT = Path(__file__).resolve().parents[2]
VIT_CONFIG = "configs/vision/vit.yaml"
# Fashion-MNIST's 60k training images less the default 5k validation carve-out.
FULL_TRAIN = 60000 - DATASETS["fashion-mnist"].val_size
ARCHITECTURE = ("patch_size", "dim", "depth", "num_heads", "ffn_dim")


def vit_architecture(config: str = VIT_CONFIG) -> dict[str, Any]:
    """The ViT size from its config (defaults from default.yaml), so the peer always matches."""
    merged: dict[str, Any] = {}
    for path in (ROOT / "configs/vision/default.yaml", ROOT / config):
        merged.update(yaml.safe_load(path.read_text()).get("model", {}))
    return {key: merged[key] for key in ARCHITECTURE} | {"pool": merged.get("pool", "mean")}


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                labels: torch.Tensor, bf16: bool) -> None:
    """One AdamW step as Lightning runs it: autocast forward, fp32 loss, backward, update."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, _ = model(images)
    loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure_throughput(quick: bool = False, batch_size: int = 128) -> list[dict[str, Any]]:
    """Training images/s of our ViT (mean-pooled and with a class token) and torchvision's, in
    bf16-mixed and fp32, interleaved; one results row per (model, precision)."""
    arch = vit_architecture()
    size = {k: arch[k] for k in ARCHITECTURE}
    steps, rounds = (2, 1) if quick else (4, 5)
    torch.manual_seed(0)
    candidates = {
        "ours": lambda: build_model("vit", 28, 1, 10, pool=arch["pool"], **size),
        "ours-cls": lambda: build_model("vit", 28, 1, 10, pool="cls", **size),
        "torchvision": lambda: torchvision_vit(28, 1, 10, **size),
    }
    images = torch.randn(batch_size, 1, 28, 28)
    labels = torch.randint(0, 10, (batch_size,))
    setups = {}
    for name, make in candidates.items():
        for bf16 in (True, False):
            model = make().train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            _train_step(model, optimizer, images, labels, bf16)  # warm-up (kernel choice)
            setups[(name, bf16)] = (model, optimizer)
    times: dict[tuple[str, bool], list[float]] = defaultdict(list)
    for _ in range(rounds):
        for (name, bf16), (model, optimizer) in setups.items():
            start = time.perf_counter()
            for _ in range(steps):
                _train_step(model, optimizer, images, labels, bf16)
            times[(name, bf16)].append(batch_size * steps / (time.perf_counter() - start))
    rows = []
    for (name, bf16), rates in times.items():
        model = setups[(name, bf16)][0]
        rate = statistics.median(rates)
        rows.append({"name": f"throughput-{name}-{'bf16' if bf16 else 'fp32'}",
                     "group": "throughput", "head": "vision",
                     "model": "torchvision-vit" if name == "torchvision" else f"vit ({name})",
                     "dataset": "synthetic 28x28", "train_size": None, "seed": 0,
                     "config": VIT_CONFIG, "overrides": {"batch_size": batch_size,
                                                         "steps": steps, "rounds": rounds},
                     "precision": "bf16-mixed" if bf16 else "32-true",
                     "params": sum(p.numel() for p in model.parameters()),
                     "train_seconds": None, "samples_per_second": round(rate, 1),
                     "peak_memory_mb": None, "metrics": {"bench/samples_per_second": rate}})
    return rows


# ----------------------------------------------------------------------------- analysis


def _size(run: dict[str, Any]) -> int:
    """The run's training-set size as configured (the grid's x axis)."""
    return int(run.get("overrides", {}).get("data.train_size") or FULL_TRAIN)


def _acc(runs: list[dict[str, Any]]) -> list[float]:
    return [r["metrics"]["test/acc"] for r in runs if "test/acc" in r.get("metrics", {})]


def _by_model_and_size(runs: list[dict[str, Any]]) -> dict[str, dict[int, list[float]]]:
    table: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if "test/acc" in run.get("metrics", {}) and run.get("precision") != "32-true":
            table[run["model"]][_size(run)].append(run["metrics"]["test/acc"])
    return table


def _claim(table: dict[str, dict[int, list[float]]]) -> str:
    """The lecture's claim, checked in words: CNN ahead on little data, attention catching up."""
    if "cnn" not in table or "vit" not in table:
        return "The grid lacks cnn or vit runs, so the claim cannot be checked."
    sizes = sorted(set(table["cnn"]) & set(table["vit"]))
    gaps = {n: 100 * (statistics.mean(table["cnn"][n]) - statistics.mean(table["vit"][n]))
            for n in sizes}
    small, large = sizes[0], sizes[-1]

    def lead(n: int) -> str:
        side = "ahead of" if gaps[n] >= 0 else "behind"
        return f"with {n:,} training images the CNN is {abs(gaps[n]):.1f} points {side} the ViT"

    first = lead(small)
    text = [first[0].upper() + first[1:] + ("." if small == large else f"; {lead(large)}.")]
    if small == large:
        text.append("With one training-set size in the grid, how the gap moves with data "
                    "cannot be read yet.")
    elif gaps[small] > 0 and gaps[large] < gaps[small] - 0.5:
        text.append("The CNN wins on little data and attention closes part of the gap as data "
                    "grows" + (" and overtakes it." if gaps[large] < 0 else
                               ", without overtaking it at this scale."))
    elif gaps[small] > 0:
        text.append("The CNN wins on little data, but the gap does not shrink with more data "
                    "here: the claim's second half is not borne out at this compute budget.")
    else:
        text.append("The CNN does not win on little data here: the claim's first half fails.")
    if "vit-local" in table:
        local = {n: 100 * statistics.mean(table["vit-local"][n]) for n in table["vit-local"]}
        shared = [n for n in sizes if n in local]
        between = sum(100 * statistics.mean(table["vit"][n]) <= local[n] for n in shared)
        text.append(f"Local attention (3x3 patches, a CNN's receptive field) beats global "
                    f"attention at {between} of {len(shared)} sizes"
                    + (": restricting attention to a neighbourhood is a prior that helps."
                       if 2 * between > len(shared) else "."))
    return " ".join(text)


def _targets(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for model, goal in (("cnn", 0.935), ("vit", 0.92)):
        full = [r for r in runs if r.get("model") == model and _size(r) == FULL_TRAIN
                and r.get("precision") != "32-true"]
        if not full:
            continue
        accs, secs = _acc(full), [r["train_seconds"] for r in full]
        met = min(accs) >= goal and max(secs) <= 600
        lines.append(f"- {model} at {FULL_TRAIN:,}: test acc {mean_sd(accs)} (goal >= "
                     f"{goal:.3f}) in {mean_sd(secs)} s of training (goal <= 600 s): "
                     f"**{'met' if met else 'missed'}**.")
    return lines


def _throughput_section(rows: list[dict[str, Any]]) -> list[str]:
    rate = {r["name"].removeprefix("throughput-"): r["samples_per_second"] for r in rows}
    arch = rows[0]["overrides"]
    lines = ["| model | precision | params | train images/s |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['precision']} | {r['params']:,} | "
              f"{r['samples_per_second']:.0f} |" for r in rows]
    ratio = rate["ours-bf16"] / rate["torchvision-bf16"]
    cls_ratio = rate["ours-cls-bf16"] / rate["torchvision-bf16"]
    bf16_gain = rate["ours-bf16"] / rate["ours-fp32"]
    best_peer = max(rate["torchvision-bf16"], rate["torchvision-fp32"])
    return ["", *lines, "",
            f"Our ViT trains at **{ratio:.2f}x** torchvision's VisionTransformer of the same "
            f"size in bf16-mixed ({cls_ratio:.2f}x with a class token, i.e. the same 50 tokens; "
            f"target >= 1.0x: **{'met' if min(ratio, cls_ratio) >= 1.0 else 'missed'}**); "
            f"against torchvision in whichever precision is faster for it, "
            f"**{rate['ours-bf16'] / best_peer:.2f}x**. "
            f"bf16-mixed runs our ViT **{bf16_gain:.2f}x** as fast as fp32 "
            f"(median of {arch['rounds']} interleaved rounds of {arch['steps']} steps, "
            f"batch {arch['batch_size']})."]


def _precision_accuracy(runs: list[dict[str, Any]]) -> list[str]:
    fp32 = [r for r in runs if r.get("precision") == "32-true" and r.get("model") == "vit"]
    if not fp32:
        return []
    size = _size(fp32[0])
    bf16 = [r for r in runs if r.get("model") == "vit" and _size(r) == size
            and r.get("precision") != "32-true"]
    diff = 100 * (statistics.mean(_acc(bf16)) - statistics.mean(_acc(fp32))) if bf16 else None
    speed = (statistics.mean(r["samples_per_second"] for r in bf16)
             / statistics.mean(r["samples_per_second"] for r in fp32)) if bf16 else None
    if diff is None:
        return []
    return [f"- bf16-mixed vs fp32, vit at {size:,} images, same config (fp32: seed 0): test acc "
            f"{mean_sd(_acc(bf16))} vs {mean_sd(_acc(fp32))} ({diff:+.2f} points); training "
            f"throughput {speed:.2f}x in the runs themselves."]


def _copy_maps(runs: list[dict[str, Any]], run_root: Path, out_dir: Path) -> list[str]:
    """Copy the largest-data seed-0 run's rollout of each attention model into the report."""
    lines = []
    for model in ("vit", "vit-local", "pixel"):
        candidates = [r for r in runs if r.get("model") == model and r.get("seed") == 0
                      and r.get("precision") != "32-true"]
        if not candidates:
            continue
        run = max(candidates, key=_size)
        source = run_root / run["name"] / "media" / "test_attention_rollout.png"
        if source.is_file():
            target = out_dir / f"attention_rollout_{model}.png"
            shutil.copyfile(source, target)
            lines.append(f"![{model} attention rollout]({target.name})")
    return lines


def analysis(results: dict[str, Any], out_dir: Path) -> str:
    """Markdown for the report: accuracy by model and size, the claim in words, the targets,
    the throughput peer and bf16 measurements (appended to results.json), attention maps."""
    quick = is_quick(results)
    name = results["experiment"]
    run_root = ROOT / "runs" / "vision" / (f"{name}-quick" if quick else name)
    runs = [r for r in results["runs"] if r.get("group") != "throughput"]
    table = _by_model_and_size(runs)
    sizes = sorted({n for by_size in table.values() for n in by_size})
    parts = ["Test accuracy (mean +- sd over seeds) by training-set size:", "",
             "| model | " + " | ".join(f"{n:,}" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for model, by_size in sorted(table.items()):
        parts.append(f"| {model} | " + " | ".join(mean_sd(by_size.get(n, [])) for n in sizes)
                     + " |")
    targets = _targets(runs) + _precision_accuracy(runs)
    parts += ["", _claim(table), "", "Targets:", "",
              *(targets or ["- no full-size or fp32 runs in this grid."])]
    bench = measure_throughput(quick=quick)
    parts += ["", "### Throughput: our ViT vs torchvision's, bf16 vs fp32",
              *_throughput_section(bench)]
    results_path = out_dir / "results.json"
    if results_path.is_file():
        stored = json.loads(results_path.read_text())
        stored["runs"] = [r for r in stored["runs"] if r.get("group") != "throughput"] + bench
        atomic_write_bytes(results_path, json.dumps(stored, indent=2).encode())
    maps = _copy_maps(runs, run_root, out_dir)
    if maps:
        parts += ["", "### Attention rollout (test images; brighter = more attended)", "", *maps]
    groups = ", ".join(f"{g} ({len(m)})" for g, m in grouped(runs).items())
    parts += ["", f"Runs (seeds): {groups}."]
    return "\n".join(parts)
