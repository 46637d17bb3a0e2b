"""Turn an experiment's results into ``reports/<name>/``: README.md (tables, plots, findings)
next to the fixed-format ``results.json``.

The README is a function of ``results.json`` and the experiment file's ``report:`` part alone,
so a committed report re-renders without the runs that made it (``python -m suite.report
NAME``). ``report:`` may declare

- ``metrics``: the runs table's columns (one row per run group, mean +- sd over seeds;
  ``test/*``: every test metric in one column); ``table: false`` leaves the table out;
- ``plots``: a metric against a field, under the table (``x``, ``y``, ``series``, ``logx``);
- ``charts``: ``package.module.function(results) -> {file name: matplotlib figure}``, drawings
  the analysis links to;
- ``analysis``: ``package.module.function(results) -> markdown``, the experiment's own
  sections (its findings in words, tables of its stages' rows);
- ``figures``: ``package.module.function(results) -> Figures``, media the runs logged
  (attention maps, confusion matrices), copied next to the README;
- ``notes``: text shown as is, last.
"""

from __future__ import annotations

import importlib
import json
import shutil
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite import paths
from suite.data import atomic_write_bytes
from suite.errors import UsageError
from suite.spec import load_spec, plan_runs, runs_folder


def mean_sd(values: list[float | None], scale: float = 1.0, decimals: int | None = None
            ) -> str:
    """``0.912 +- 0.004 (n=3)`` (4 significant digits); with ``decimals``, fixed point without
    the count (``scale=100, decimals=2``: ``78.12 +- 0.40``). ``None`` values are skipped; a
    single value prints alone, none as ``-``."""
    values = [scale * v for v in values if v is not None]
    if not values:
        return "-"
    if decimals is None:
        if len(values) == 1:
            return f"{values[0]:.4g}"
        return (f"{statistics.mean(values):.4g} +- {statistics.stdev(values):.2g} "
                f"(n={len(values)})")
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{statistics.mean(values):.{decimals}f} +- {statistics.stdev(values):.{decimals}f}"


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


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (reports run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as the reports' PNGs are saved, and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def line_plot(runs: list[dict[str, Any]], plot: dict[str, Any], out_dir: Path) -> str:
    """Mean (+- sd error bars) of ``y`` against ``x``, one line per ``series`` value."""
    points: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        x, y = value(run, plot["x"]), value(run, plot["y"])
        if x is not None and y is not None:
            points[str(value(run, plot.get("series", "model")))][float(x)].append(float(y))
    fig, ax = pyplot().subplots(figsize=(6, 4))
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
    save_figure(fig, out_dir / name)
    return f"![{plot['y']} vs {plot['x']}]({name})"


@dataclass(frozen=True)
class Figure:
    """A file a run logged (``runs/<head>/<experiment>/<run>/media/<media>``), shown in the
    report as ``name`` with ``alt`` text and, if given, a bold ``caption`` above it."""

    run: str
    media: str
    name: str
    alt: str
    caption: str | None = None


@dataclass(frozen=True)
class Figures:
    """A report section of run media: its heading, a line on how to read them, the figures."""

    title: str
    figures: list[Figure]
    text: str = ""


def copy_figures(section: Figures, results: dict[str, Any], out_dir: Path, runs_root: Path
                 ) -> list[str]:
    """Markdown for ``section``; each figure is copied from its run's media next to the
    README. A figure whose run folder is gone keeps the copy already there (a re-rendered
    committed report); one found in neither place is left out, and so is the figure of a run
    the results do not hold (its old copy is deleted: it would show a run the report is not
    about)."""
    heads = {row["name"]: row.get("head") for row in results["runs"]}
    experiment = runs_folder(results["experiment"], is_quick(results))
    lines = []
    for figure in section.figures:
        if figure.run not in heads:
            (out_dir / figure.name).unlink(missing_ok=True)
            continue
        source = runs_root / str(heads.get(figure.run)) / experiment / figure.run / "media"
        if (source / figure.media).is_file():
            shutil.copyfile(source / figure.media, out_dir / figure.name)
        if (out_dir / figure.name).is_file():
            image = figure.name.endswith((".png", ".jpg", ".svg", ".gif"))
            # anything else (audio) is a link, one list item each
            link = (f"![{figure.alt}]({figure.name})" if image
                    else f"- [{figure.alt}]({figure.name})")
            lines.append(f"**{figure.caption}**\n\n{link}\n" if figure.caption else link)
    if not lines:
        return []
    return [f"### {section.title}", "", *([section.text, ""] if section.text else []), *lines,
            ""]


def load_function(path: str) -> Any:
    """``package.module.function`` named in an experiment file -> the function."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"{path} (named in an experiment file) cannot be loaded: {err}") from err


def is_quick(results: dict[str, Any]) -> bool:
    """Whether ``results`` come from ``suite experiment NAME --quick`` (the reduced grid)."""
    return "--quick" in results["command"].split()


def training_rows(spec: dict[str, Any], results: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the experiment's training runs; the others came from its stages."""
    planned = {run["name"] for run in plan_runs(spec, is_quick(results))}
    return [row for row in results["runs"] if "stage" not in row and row["name"] in planned]


def _groups(rows: list[dict[str, Any]], names: list[str]) -> str:
    """The groups of the rows named ``names``: ``a (2 seeds), b``."""
    counts: dict[str, int] = {}
    for row in rows:
        if row["name"] in names:
            counts[row["group"]] = counts.get(row["group"], 0) + 1
    return ", ".join(g if n == 1 else f"{g} ({n} seeds)" for g, n in counts.items())


def _header(spec: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Title, question, how to reproduce, and how the rows were measured."""
    hw = results["hardware"]
    threads = f"{hw['threads']} thread" + ("" if hw["threads"] == 1 else "s")
    parts = [f"# {spec.get('report', {}).get('title', spec['name'])}", "",
             spec.get("description", "").strip(), "",
             f"Reproduce: `{results['command']}` (generated {results['generated']}, "
             f"git {str(results['git_sha'])[:10]}, {hw['cpu']}, {threads}, "
             f"GPU: {hw['gpu'] or 'none'}).", ""]
    if results.get("jobs"):
        parts += [f"Runs trained {results['jobs']} at a time side by side (`--jobs "
                  f"{results['jobs']}`), each on its share of the threads: their train times "
                  "are those of a shared CPU.", ""]
    if results.get("carried_over"):
        carried = _groups(results["runs"], results["carried_over"])
        parts += [f"{len(results['carried_over'])} of the {len(results['runs'])} result rows "
                  "(training runs and stage measurements) were "
                  "measured by earlier invocations with the same configuration and carried over "
                  f"from the previous results.json ({carried}); their "
                  "times come from the machine of that invocation, so compare times only "
                  "within one data set's rows measured together.", ""]
    if results.get("left_out"):
        parts += [f"**Partial report**: {len(results['left_out'])} planned runs are not in it "
                  f"({', '.join(results['left_out'])}); `suite experiment {spec['name']}"
                  f"{' --quick' if is_quick(results) else ''}` "
                  "runs them (finished runs are kept).", ""]
    return parts


def write_report(spec: dict[str, Any], results: dict[str, Any], out_dir: Path,
                 runs_root: Path | None = None) -> Path:
    """Write ``out_dir/README.md`` for ``results`` (plots and figures next to it); run media
    are looked up under ``runs_root`` (default ``runs/``)."""
    report = spec.get("report", {})
    runs_root = paths.ROOT / "runs" if runs_root is None else runs_root
    parts = _header(spec, results)
    runs = training_rows(spec, results)
    if runs and report.get("table", True):
        parts += ["## Results", "", runs_table(runs, report.get("metrics", [])), ""]
        for plot in report.get("plots", []):
            parts += [line_plot(runs, plot, out_dir), ""]
    if report.get("charts"):
        for name, fig in load_function(report["charts"])(results).items():
            save_figure(fig, out_dir / name)
    if report.get("analysis"):
        parts += [load_function(report["analysis"])(results), ""]
    if report.get("figures"):
        parts += copy_figures(load_function(report["figures"])(results), results, out_dir,
                              runs_root)
    if report.get("notes"):
        parts += ["## Notes", "", report["notes"].strip(), ""]
    path = out_dir / "README.md"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path


def render(name: str, out_dir: Path | None = None, runs_root: Path | None = None) -> Path:
    """Re-render experiment ``name``'s README from its committed ``results.json`` (into
    ``out_dir``, default the report folder itself) without running anything."""
    source = paths.report_dir(name)
    results = json.loads((source / "results.json").read_text())
    return write_report(load_spec(name), results, out_dir or source, runs_root)


if __name__ == "__main__":
    print(render(sys.argv[1]))
