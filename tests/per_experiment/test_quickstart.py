"""quickstart: the page pairs each head's quick run with its committed full report."""

import json
from pathlib import Path

from experiments.quickstart.report import PICTURES, analysis, figures, full_reports
from suite.report import write_report
from suite.spec import load_spec


def _row(head: str, metrics: dict) -> dict:
    return {"name": f"{head}-s0", "group": head, "head": head, "seed": 0, "model": "m",
            "dataset": "d", "config": f"configs/{head}/quick.yaml", "overrides": {},
            "params": 1, "metrics": metrics}


RESULTS = {"experiment": "quickstart", "command": "suite experiment quickstart --quick",
           "generated": "now", "git_sha": "0" * 40,
           "hardware": {"cpu": "cpu", "threads": 2, "gpu": None},
           "runs": [_row("vision", {"test/acc": 0.5, "test/loss": 1.0}),
                    _row("seq2seq", {"test/exact_match": 0.25})]}


def _committed(root: Path, name: str, head: str, readme: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps({"runs": [{"head": head}]}))
    (root / name / "README.md").write_text(readme)


def test_full_reports_read_title_heads_and_first_image(tmp_path: Path) -> None:
    _committed(tmp_path, "vit_vs_cnn", "vision",
               "# ViT vs CNN\n\ntext\n\n![acc](acc.png)\n\n![later](later.png)\n")
    _committed(tmp_path, "bench", "", "# no head trained\n")
    (report,) = full_reports(tmp_path)
    assert (report.name, report.heads, report.title, report.figure) == (
        "vit_vs_cnn", ["vision"], "ViT vs CNN", "acc.png")


def test_analysis_puts_each_quick_run_beside_its_full_report(tmp_path: Path) -> None:
    _committed(tmp_path, "vit_vs_cnn", "vision", "# ViT vs CNN\n\n![acc](acc.png)\n")
    text = analysis(RESULTS, reports_root=tmp_path)
    vision = next(line for line in text.splitlines() if line.startswith("| vision"))
    assert "acc 0.5 |" in vision and "loss" not in vision  # test metrics, loss left out
    assert "`suite train vision -c configs/vision/quick.yaml`" in vision
    assert "[ViT vs CNN](" in vision and "vit_vs_cnn/acc.png)" in vision
    assert "`suite experiment vit_vs_cnn`" in vision
    seq2seq = next(line for line in text.splitlines() if line.startswith("| seq2seq"))
    assert "none committed yet" in seq2seq and "`suite experiment seq2seq_demo`" in seq2seq


def test_committed_reports_cover_the_trained_heads() -> None:
    heads = {head for report in full_reports() for head in report.heads}
    assert {"vision", "sentiment", "graph", "asr"} <= heads
    assert all(report.figure for report in full_reports())


def test_page_shows_one_picture_per_head_from_the_quick_runs(tmp_path: Path) -> None:
    assert [f.name for f in figures(RESULTS).figures] == ["vision.png", "seq2seq.png"]
    media = tmp_path / "runs" / "vision" / "quickstart-quick" / "vision-s0" / "media"
    media.mkdir(parents=True)
    (media / PICTURES["vision"][0]).write_bytes(b"png")
    out = tmp_path / "page"
    out.mkdir()
    page = write_report(load_spec("quickstart"), RESULTS, out, tmp_path / "runs").read_text()
    assert (out / "vision.png").read_bytes() == b"png" and not (out / "seq2seq.png").exists()
    assert "![vision: attention rollout over test images](vision.png)" in page
    assert "## Where the real results are" in page
