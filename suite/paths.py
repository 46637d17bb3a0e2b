"""Where the repository's own folders are: configs, committed reports, quick-run reports."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def report_dir(experiment: str, quick: bool = False) -> Path:
    """``reports/<experiment>/``; a ``--quick`` run's report goes to ``runs/quick-reports/``
    instead, so a smoke run never overwrites the committed reference results."""
    return ROOT / ("runs/quick-reports" if quick else "reports") / experiment
