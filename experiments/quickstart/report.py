"""The ``quickstart`` report: one picture per head from its quick run, and where each head's
real results are - the committed full report's title, headline figure and command."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from suite import paths
from suite.report import Figure, Figures, is_quick

PICTURES = {
    "seq2seq": ("test_cross_attention.png", "decoder cross-attention over the input digits"),
    "vision": ("test_attention_rollout.png", "attention rollout over test images"),
    "sentiment": ("test_cls_attention.png", "what the classification token attends to"),
    "graph": ("test_molecule_attention.png", "attention drawn on a test molecule"),
    "asr": ("test_ctc_alignment_real.png", "CTC posteriors and alignment of real speech"),
    "tts": ("test_example_short.png", "true and synthesised mel of a held-out sentence, and "
            "the decoder's attention over its phones"),
}
"""Per head: the media file of its quick run shown here, and what it shows."""


@dataclass(frozen=True)
class FullReport:
    """A committed ``reports/<name>/``: what its README leads with."""

    name: str
    heads: list[str]
    title: str
    figure: str | None  # the README's first image, relative to the report folder


def full_reports(root: Path | None = None) -> list[FullReport]:
    """The committed reports under ``root`` (default ``reports/``) that trained a head."""
    root = paths.ROOT / "reports" if root is None else root
    found = []
    for results_path in sorted(root.glob("*/results.json")):
        heads = sorted({row["head"] for row in json.loads(results_path.read_text())["runs"]
                        if row.get("head")})
        readme = results_path.with_name("README.md")
        text = readme.read_text() if readme.is_file() else ""
        title = re.search(r"^# (.+)$", text, re.MULTILINE)
        image = re.search(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
        if heads:
            found.append(FullReport(results_path.parent.name, heads,
                                    title.group(1) if title else results_path.parent.name,
                                    image.group(1) if image else None))
    return found


def experiments_of(head: str) -> list[str]:
    """The experiment files (``configs/experiments/``) that train ``head`` alone."""
    return [path.stem for path in sorted((paths.CONFIGS / "experiments").glob("*.yaml"))
            if (yaml.safe_load(path.read_text()) or {}).get("head") == head]


def _quick_metrics(row: dict[str, Any]) -> str:
    metrics = row.get("metrics", {})
    return ", ".join(f"{k[5:]} {v:.4g}" for k, v in sorted(metrics.items())
                     if k.startswith("test/") and k != "test/loss") or "-"


def analysis(results: dict[str, Any], reports_root: Path | None = None) -> str:
    """Per head: the quick run's test metrics and how to repeat it, beside the full report
    (title, headline figure, command) that holds its real numbers."""
    reports_root = paths.ROOT / "reports" if reports_root is None else reports_root
    page = paths.report_dir(results["experiment"], is_quick(results))
    by_head: dict[str, list[FullReport]] = {}
    for report in full_reports(reports_root):
        for head in report.heads:
            by_head.setdefault(head, []).append(report)
    lines = ["## Where the real results are", "",
             "The quick runs only show that every head trains and writes its media; each "
             "head's committed full report holds its real figures.", "",
             "| head | quick run (test) | repeat it | full report | headline figure | "
             "reproduce it |", "|---|---|---|---|---|---|"]
    for row in results["runs"]:
        head = row.get("head")
        if head is None or "stage" in row:
            continue
        quick = f"`suite train {head} -c {row['config']}`" if row.get("config") else "-"
        reports = by_head.get(head, [])
        if not reports:
            make = ", ".join(f"`suite experiment {name}`" for name in experiments_of(head))
            lines.append(f"| {head} | {_quick_metrics(row)} | {quick} | none committed yet "
                         f"| - | {make or '-'} |")
        for report in reports:
            folder = Path(os.path.relpath(reports_root / report.name, page))
            figure = (f"![{report.name}]({(folder / report.figure).as_posix()})"
                      if report.figure else "-")
            lines.append(f"| {head} | {_quick_metrics(row)} | {quick} | "
                         f"[{report.title}]({(folder / 'README.md').as_posix()}) | {figure} | "
                         f"`suite experiment {report.name}` |")
    return "\n".join(lines)


def figures(results: dict[str, Any]) -> Figures:
    """One picture per head, from its quick run's media."""
    shown = [Figure(row["name"], PICTURES[row["head"]][0], f"{row['head']}.png",
                    f"{row['head']}: {PICTURES[row['head']][1]}",
                    f"{row['head']}: {PICTURES[row['head']][1]}")
             for row in results["runs"] if row.get("head") in PICTURES and "stage" not in row]
    return Figures("One picture per head (these quick runs)", shown)
