"""Every committed report is a function of its committed ``results.json``: re-rendering it,
without the runs that made it, gives the committed README (the description and notes, quoted
from the experiment file, aside) and every figure it links."""

import re
import shutil
from pathlib import Path

import pytest

from suite import paths
from suite.report import render

REPORTS = sorted(p.parent.name for p in (paths.ROOT / "reports").glob("*/results.json"))


def _results_part(readme: str) -> str:
    """The README less what the experiment file states: its description (the paragraph under
    the title) and its notes."""
    lines = readme.split("\n")
    return "\n".join(lines[:2] + lines[3:]).split("\n## Notes\n")[0]


def test_every_experiment_with_a_report_is_covered():
    assert {"attention_core", "graph_attention", "sentiment", "truncated_attention",
            "vit_vs_cnn"} <= set(REPORTS)


@pytest.mark.parametrize("name", REPORTS)
def test_committed_report_rerenders_from_its_results(name: str, tmp_path: Path):
    out = tmp_path / name
    shutil.copytree(paths.report_dir(name), out)  # committed figures stay where runs are gone
    (out / "README.md").unlink()
    readme = render(name, out_dir=out, runs_root=tmp_path / "no-runs").read_text()
    committed = (paths.report_dir(name) / "README.md").read_text()
    assert _results_part(readme) == _results_part(committed)
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        assert (out / link).is_file(), link


def test_run_media_are_copied_and_audio_is_linked_not_shown(tmp_path: Path):
    from suite.report import Figure, Figures, copy_figures

    media = tmp_path / "runs" / "tts" / "demo" / "r-s0" / "media"
    media.mkdir(parents=True)
    (media / "map.png").write_bytes(b"png")
    (media / "voice.wav").write_bytes(b"wav")
    out = tmp_path / "report"
    out.mkdir()
    results = {"experiment": "demo", "command": "suite experiment demo",
               "runs": [{"name": "r-s0", "head": "tts"}]}
    section = Figures("media", [Figure("r-s0", "map.png", "map.png", "a map"),
                                Figure("r-s0", "voice.wav", "voice.wav", "listen")])
    lines = copy_figures(section, results, out, tmp_path / "runs")
    assert "![a map](map.png)" in lines and "- [listen](voice.wav)" in lines
    assert (out / "voice.wav").read_bytes() == b"wav"


@pytest.mark.parametrize(("threads", "said"), [(1, "1 thread,"), (2, "2 threads,")])
def test_header_counts_threads_in_words(threads: int, said: str):
    from suite.report import _header

    results = {"command": "suite experiment demo", "generated": "today", "git_sha": "abc",
               "hardware": {"cpu": "CPU", "threads": threads, "gpu": None}, "runs": []}
    assert said in "\n".join(_header({"name": "demo"}, results))
