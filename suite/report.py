"""Turn an experiment's results into ``reports/<name>/``: README.md (tables, plots, findings)
next to the fixed-format ``results.json``.

Tables group runs by name across seeds and show mean +- sd. Plots are declared in the
experiment file (``report.plots``: x, y, series, log x). Benchmarks write their own tables
through their module's ``report(results, out_dir) -> markdown``; a training experiment may
name an ``analysis`` function (``package.module.function``) that reads the results and
states in words what they show.
"""

from __future__ import annotations

import importlib
import inspect
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from suite.data import atomic_write_bytes


def mean_sd(values: list[float]) -> str:
    """``0.912 +- 0.004 (n=3)``; a single value prints alone."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} +- {statistics.stdev(values):.2g} (n={len(values)})"


def grouped(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[run.get("group") or run["name"]].append(run)
    return dict(groups)


def value(run: dict[str, Any], key: str) -> Any:
    """A metric (``test/acc``) or a top-level field (``train_size``) of a results row."""
    return run["metrics"].get(key) if key in run.get("metrics", {}) else run.get(key)


def _test_metrics(members: list[dict[str, Any]]) -> str:
    """Every ``test/...`` metric of a group, for tables that mix heads with different metrics."""
    keys = sorted({k for r in members for k in r["metrics"] if k.startswith("test/")})
    return "; ".join(f"{k[5:]} {mean_sd([r['metrics'].get(k) for r in members])}" for k in keys)


def runs_table(runs: list[dict[str, Any]], metrics: list[str]) -> str:
    """Markdown table: one row per run group, metrics as mean +- sd over seeds (``test/*``:
    every test metric in one column)."""
    columns = ["run", "model", "data", "train size", *metrics, "params", "train s",
               "samples/s", "peak MB"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for group, members in grouped(runs).items():
        first = members[0]
        cells = [group, str(first.get("model")), str(first.get("dataset")),
                 str(first.get("train_size") or "-")]
        cells += [_test_metrics(members) if m == "test/*" else
                  mean_sd([value(r, m) for r in members]) for m in metrics]
        cells += [f"{first.get('params') or 0:,}",
                  mean_sd([r.get("train_seconds") for r in members]),
                  mean_sd([r.get("samples_per_second") for r in members]),
                  mean_sd([r.get("peak_memory_mb") for r in members])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def line_plot(runs: list[dict[str, Any]], plot: dict[str, Any], out_dir: Path) -> str:
    """Mean (+- sd error bars) of ``y`` against ``x``, one line per ``series`` value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        x, y = value(run, plot["x"]), value(run, plot["y"])
        if x is not None and y is not None:
            points[str(value(run, plot.get("series", "model")))][float(x)].append(float(y))
    fig, ax = plt.subplots(figsize=(6, 4))
    for series, by_x in sorted(points.items()):
        xs = sorted(by_x)
        means = [statistics.mean(by_x[x]) for x in xs]
        sds = [statistics.stdev(by_x[x]) if len(by_x[x]) > 1 else 0.0 for x in xs]
        ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=series)
    if plot.get("logx"):
        ax.set_xscale("log")
    ax.set_xlabel(plot.get("xlabel", plot["x"]))
    ax.set_ylabel(plot.get("ylabel", plot["y"]))
    ax.grid(alpha=0.3)
    ax.legend()
    name = plot.get("file", f"{plot['y'].replace('/', '_')}_vs_{plot['x']}.png")
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=120)
    plt.close(fig)
    return f"![{plot['y']} vs {plot['x']}]({name})"


def _call(path: str, results: dict[str, Any], out_dir: Path) -> str:
    """Call ``package.module.function`` with the results and the report folder (where it may
    save figures); a function that takes only the results gets only those."""
    module, _, name = path.rpartition(".")
    function = getattr(importlib.import_module(module), name)
    if len(inspect.signature(function).parameters) == 1:
        return function(results)
    return function(results, out_dir)


def is_quick(results: dict[str, Any]) -> bool:
    """Whether ``results`` come from ``suite experiment NAME --quick`` (the reduced grid)."""
    return "--quick" in results["command"].split()


def _groups(rows: list[dict[str, Any]], names: list[str]) -> str:
    """The groups of the rows named ``names``: ``a (2 seeds), b``."""
    counts: dict[str, int] = {}
    for row in rows:
        if row["name"] in names:
            counts[row["group"]] = counts.get(row["group"], 0) + 1
    return ", ".join(g if n == 1 else f"{g} ({n} seeds)" for g, n in counts.items())


def write_report(spec: dict[str, Any], results: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/README.md`` for ``results`` (plots next to it)."""
    report = spec.get("report", {})
    hw = results["hardware"]
    parts = [f"# {report.get('title', spec['name'])}", "", spec.get("description", "").strip(),
             "", f"Reproduce: `{results['command']}` (generated {results['generated']}, "
             f"git {str(results['git_sha'])[:10]}, {hw['cpu']}, {hw['threads']} threads, "
             f"GPU: {hw['gpu'] or 'none'}).", ""]
    if results.get("jobs"):
        parts += [f"Runs trained {results['jobs']} at a time side by side (`--jobs "
                  f"{results['jobs']}`), each on its share of the threads: their train times "
                  "are those of a shared CPU.", ""]
    if results.get("carried_over"):
        carried = _groups(results["runs"], results["carried_over"])
        parts += [f"{len(results['carried_over'])} of the {len(results['runs'])} runs were "
                  "measured by earlier invocations with the same configuration and carried over "
                  f"from the previous results.json ({carried}); their "
                  "times come from the machine of that invocation, so compare times only "
                  "within one data set's rows measured together.", ""]
    if results.get("left_out"):
        parts += [f"**Partial report**: {len(results['left_out'])} planned runs are not in it "
                  f"({', '.join(results['left_out'])}); `suite experiment {spec['name']}` "
                  "runs them (finished runs are kept).", ""]
    if "benchmark" in spec:
        parts += [_call(f"{spec['benchmark']}.report", results, out_dir), ""]
    else:
        parts += ["## Results", "", runs_table(results["runs"], report.get("metrics", [])), ""]
        for plot in report.get("plots", []):
            parts += [line_plot(results["runs"], plot, out_dir), ""]
        if report.get("analysis"):
            parts += ["## What the numbers say", "", _call(report["analysis"], results, out_dir),
                      ""]
    if report.get("notes"):
        parts += ["## Notes", "", report["notes"].strip(), ""]
    path = out_dir / "README.md"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path
