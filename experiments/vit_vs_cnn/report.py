"""The ``vit_vs_cnn`` report: accuracy by model and training-set size, the lecture's claim
checked in words, the targets, the throughput stage's table and the attention rollouts."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from suite.report import Figure, Figures, grouped, mean_sd
from tasks.vision.data import DATASETS

# Fashion-MNIST's 60k training images less the default 5k validation carve-out.
FULL_TRAIN = 60000 - DATASETS["fashion-mnist"].val_size
ROLLOUT_MODELS = ("vit", "vit-local", "pixel")


def _size(run: dict[str, Any]) -> int:
    """The run's training-set size as configured (the grid's x axis)."""
    return int(run.get("overrides", {}).get("data.train_size") or FULL_TRAIN)


def _acc(runs: list[dict[str, Any]]) -> list[float]:
    return [r["metrics"]["test/acc"] for r in runs if "test/acc" in r.get("metrics", {})]


def _trained(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The training runs' rows (not the throughput stage's)."""
    return [r for r in results["runs"] if r.get("group") != "throughput"]


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
    return ["", "### Throughput: our ViT vs torchvision's, bf16 vs fp32", "", *lines, "",
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
    if not bf16:
        return []
    diff = 100 * (statistics.mean(_acc(bf16)) - statistics.mean(_acc(fp32)))
    speed = (statistics.mean(r["samples_per_second"] for r in bf16)
             / statistics.mean(r["samples_per_second"] for r in fp32))
    return [f"- bf16-mixed vs fp32, vit at {size:,} images, same config (fp32: seed 0): test acc "
            f"{mean_sd(_acc(bf16))} vs {mean_sd(_acc(fp32))} ({diff:+.2f} points); training "
            f"throughput {speed:.2f}x in the runs themselves."]


def analysis(results: dict[str, Any]) -> str:
    """Accuracy by model and size, the claim in words, the targets, the throughput stage."""
    runs = _trained(results)
    table = _by_model_and_size(runs)
    sizes = sorted({n for by_size in table.values() for n in by_size})
    parts = ["## What the numbers say", "",
             "Test accuracy (mean +- sd over seeds) by training-set size:", "",
             "| model | " + " | ".join(f"{n:,}" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for model, by_size in sorted(table.items()):
        parts.append(f"| {model} | " + " | ".join(mean_sd(by_size.get(n, [])) for n in sizes)
                     + " |")
    targets = _targets(runs) + _precision_accuracy(runs)
    parts += ["", _claim(table), "", "Targets:", "",
              *(targets or ["- no full-size or fp32 runs in this grid."])]
    bench = [r for r in results["runs"] if r.get("group") == "throughput"]
    if bench:
        parts += _throughput_section(bench)
    groups = ", ".join(f"{g} ({len(m)})" for g, m in grouped(runs).items())
    parts += ["", f"Runs (seeds): {groups}."]
    return "\n".join(parts)


def figures(results: dict[str, Any]) -> Figures:
    """The attention rollout of each attention model's largest-data seed-0 run."""
    runs = _trained(results)
    shown = []
    for model in ROLLOUT_MODELS:
        candidates = [r for r in runs if r.get("model") == model and r.get("seed") == 0
                      and r.get("precision") != "32-true"]
        if candidates:
            run = max(candidates, key=_size)
            shown.append(Figure(run["name"], "test_attention_rollout.png",
                                f"attention_rollout_{model}.png", f"{model} attention rollout"))
    return Figures("Attention rollout (test images; brighter = more attended)", shown)
