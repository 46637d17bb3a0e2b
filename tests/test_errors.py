"""Every bad input a user can give is one line on stderr, the right exit code and no leftovers.

A table of cases (bad checkpoints, arguments, settings and inputs, per head): each runs
``suite.cli.main`` and must return its exit code (2: a usage error, 1: bad data or input),
print exactly one line on stderr holding the expected words and no traceback, and leave no
run directory behind. Checkpoints are trained for one step on test_pinned's tiny data, once
per head and only for the heads a selected case needs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_pinned import PINS, TRAIN

from suite.checkpoint import HEAD_KEY
from suite.cli import main
from suite.errors import DataError


class Workspace:
    """Tiny data, checkpoints trained on demand, bad files, and a run root that must stay
    empty."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.planted: set[Path] = set()  # tiny data in place of the real files (conftest)
        self.fresh = root / "fresh-runs"  # every failing train/test case is pointed here
        self._ckpts: dict[str, Path] = {}
        (root / "text.ckpt").write_text("not a checkpoint\n")
        (root / "empty.ckpt").write_bytes(b"")
        (root / "binary.yaml").write_bytes(bytes(range(256)) * 8)
        (root / "binary.txt").write_bytes(b"a film\n\xff\xfe\x00\x80\n")
        (root / "notes.txt").write_text("not an image")
        (root / "notes.wav").write_text("not audio at all\n" * 40)
        audio = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)
        audio[100:103] = np.nan
        sf.write(root / "nan.wav", audio, 16_000, subtype="FLOAT")

    def ckpt(self, head: str) -> str:
        """``last.ckpt`` of a one-step run of ``head`` on test_pinned's tiny data."""
        if head not in self._ckpts:
            pin = PINS[head]
            if pin.write_data is not None:
                pin.write_data(self.root / "cache")
                self.planted.update(p for p in (self.root / "cache").rglob("*") if p.is_file())
            runs = self.root / "trained"
            assert main(["train", head, *TRAIN, *pin.args, "--trainer.max_steps=1",
                         "--run.root", str(runs)]) == 0
            self._ckpts[head] = runs / head / "adhoc" / "pin" / "checkpoints" / "last.ckpt"
        return str(self._ckpts[head])

    def truncated(self) -> str:
        """The seq2seq checkpoint cut to half its length."""
        whole = Path(self.ckpt("seq2seq")).read_bytes()
        path = self.root / "truncated.ckpt"
        path.write_bytes(whole[: len(whole) // 2])
        return str(path)

    def __truediv__(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The workspace, for this module's tests: its data cache takes the planted files as
    verified, as conftest's ``planted`` does for one test."""
    from suite import cache

    root = tmp_path_factory.mktemp("errors")
    workspace = Workspace(root)
    real = cache.check

    def check(path: Path, sha256: str | None = None, inputs: dict | None = None
              ) -> cache.Verdict:
        if Path(path) in workspace.planted:
            return cache.Verdict(cache.State.READY)
        return real(path, sha256, inputs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUITE_DATA_DIR", str(root / "cache"))
        patch.setenv("SUITE_WANDB", "disabled")
        patch.delenv("SUITE_DEBUG", raising=False)
        patch.setattr(cache, "check", check)
        yield workspace


@dataclass(frozen=True)
class Case:
    """One bad invocation: its arguments (given the workspace), exit code and words."""

    argv: Callable[[Workspace], list[str]]
    code: int
    says: str


def train(*args: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["train", "seq2seq", "--run.name=fresh", "--run.root", str(ws.fresh),
                       *[a.format(ws=ws) for a in args]]


def evaluate(head: str, ckpt: Callable[[Workspace], str]) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["test", head, "--ckpt", ckpt(ws), "--run.root", str(ws.fresh)]


def predict(head: str, *inputs: str, ckpt: Callable[[Workspace], str] | None = None
            ) -> Callable[[Workspace], list[str]]:
    def argv(ws: Workspace) -> list[str]:
        path = ckpt(ws) if ckpt else ws.ckpt(head)
        return ["predict", head, "--ckpt", path, *[i.format(ws=ws) for i in inputs]]
    return argv


def prepare(head: str, *args: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["data", "prepare", head, *args]


def seq2seq_ckpt(ws: Workspace) -> str:
    return ws.ckpt("seq2seq")


CASES = {
    # a checkpoint that is not one, or is another head's
    "predict-text-checkpoint": Case(predict("seq2seq", "1", ckpt=lambda ws: ws / "text.ckpt"),
                                    1, "is not a checkpoint"),
    "predict-empty-checkpoint": Case(predict("seq2seq", "1", ckpt=lambda ws: ws / "empty.ckpt"),
                                     1, "is empty"),
    "predict-truncated-checkpoint": Case(predict("seq2seq", "1",
                                                 ckpt=lambda ws: ws.truncated()),
                                         1, "is truncated"),
    "predict-other-heads-checkpoint": Case(predict("sentiment", "good", ckpt=seq2seq_ckpt),
                                           2, "is a seq2seq checkpoint, not a sentiment one"),
    "predict-missing-checkpoint": Case(predict("seq2seq", "1", ckpt=lambda ws: ws / "no.ckpt"),
                                       2, "does not exist"),
    "test-text-checkpoint": Case(evaluate("seq2seq", lambda ws: ws / "text.ckpt"),
                                 1, "is not a checkpoint"),
    "test-empty-checkpoint": Case(evaluate("seq2seq", lambda ws: ws / "empty.ckpt"), 1, "is empty"),
    "test-truncated-checkpoint": Case(evaluate("seq2seq", lambda ws: ws.truncated()),
                                      1, "is truncated"),
    "test-other-heads-checkpoint": Case(evaluate("vision", seq2seq_ckpt),
                                        2, "is a seq2seq checkpoint, not a vision one"),
    # the command line
    "test-ckpt-without-value": Case(lambda ws: ["test", "seq2seq", "--ckpt"],
                                    2, "--ckpt needs a value"),
    "predict-ckpt-without-value": Case(lambda ws: ["predict", "seq2seq", "1", "--ckpt"],
                                       2, "--ckpt: expected one argument"),
    "test-ckpt-equals-path": Case(lambda ws: ["test", "seq2seq", f"--ckpt={ws / 'text.ckpt'}",
                                              "--run.root", str(ws.fresh)],
                                  1, "is not a checkpoint"),
    "binary-config": Case(train("-c", "{ws.root}/binary.yaml"), 2, "is not a text (YAML) file"),
    **{f"prepare-unknown-{head}-dataset": Case(prepare(head, "--dataset", "foo"),
                                               2, f"unknown {shown} data set 'foo'")
       for head, shown in (("graph", "graph"), ("vision", "vision"), ("asr", "ASR"),
                           ("sentiment", "sentiment"), ("seq2seq", "seq2seq"))},
    "resume-missing-checkpoint": Case(train("--run.resume", "/missing.ckpt"),
                                      2, "/missing.ckpt does not exist"),
    "resume-text-checkpoint": Case(train("--run.resume", "{ws.root}/text.ckpt"),
                                   1, "is not a checkpoint"),
    # settings the model or data cannot take
    "heads-not-dividing-dim": Case(train("--model.encoder.num_heads=3"),
                                   2, "not divisible by num_heads 3"),
    "batch-size-0": Case(train("--data.batch_size=0"), 2, "--data.batch_size=0: must be at "),
    "train-size-0": Case(train("--data.train_size=0"), 2, "--data.train_size=0: must be at "),
    # inputs to predict
    "seq2seq-superscript-digit": Case(predict("seq2seq", "3²1"), 1, "'3²1'"),
    "seq2seq-not-digits": Case(predict("seq2seq", "12x"), 1, "'12x'"),
    "seq2seq-stream": Case(predict("seq2seq", "--stream", "1"),
                           2, "unrecognized arguments: --stream"),
    "sentiment-binary-file": Case(predict("sentiment", "--file", "{ws.root}/binary.txt"),
                                  1, "binary.txt: not a UTF-8 text file"),
    "sentiment-missing-file": Case(predict("sentiment", "--file", "{ws.root}/none.txt"),
                                   1, "none.txt: no such file"),
    "sentiment-empty-text": Case(predict("sentiment", "good", ""), 1, "empty or blank"),
    "vision-not-an-image": Case(predict("vision", "{ws.root}/notes.txt"),
                                1, "notes.txt: not an image file"),
    "graph-invalid-smiles": Case(predict("graph", "CCO", "C1CC"), 1, "invalid SMILES 'C1CC'"),
    "asr-not-audio": Case(predict("asr", "{ws.root}/notes.wav"), 1, "notes.wav"),
    "asr-non-finite-audio": Case(predict("asr", "{ws.root}/nan.wav"),
                                 1, "3 of 16000 samples are NaN or infinite"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_input_is_one_line_with_its_exit_code_and_leaves_nothing(
        name: str, ws: Workspace, capsys: pytest.CaptureFixture) -> None:
    case = CASES[name]
    argv = case.argv(ws)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == case.code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and case.says in lines[0], lines
    assert not ws.fresh.exists(), sorted(ws.fresh.rglob("*"))
    shutil.rmtree(ws.fresh, ignore_errors=True)


def test_data_found_bad_once_training_starts_leaves_no_run_directory(
        tmp_path: Path, data_cache: Path, planted: set[Path],
        capsys: pytest.CaptureFixture) -> None:
    """The ratings file is read in the data module's ``setup``, after Lightning has made the
    loggers' directory: the failed run's directory is removed again."""
    ratings = data_cache / "sentiment/movieReviewSnippets_GroundTruth.txt"
    ratings.parent.mkdir(parents=True)
    ratings.write_text("0_1\t0.5\ta fine film\nnot a rating line\n")
    planted.add(ratings)
    runs = tmp_path / "runs"
    assert main(["train", "sentiment", *TRAIN, "--run.root", str(runs)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "movieReviewSnippets_GroundTruth.txt:2: expected" in line
    assert not (runs / "sentiment" / "adhoc" / "pin").exists()


def test_suite_debug_shows_the_traceback(ws: Workspace, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("SUITE_DEBUG", "1")
    with pytest.raises(DataError, match="is not a checkpoint"):
        main(["predict", "seq2seq", "--ckpt", ws / "text.ckpt", "1"])


def test_checkpoints_name_their_head_and_load_with_weights_only(ws: Workspace) -> None:
    checkpoint = torch.load(ws.ckpt("seq2seq"), weights_only=True)
    assert checkpoint[HEAD_KEY] == "seq2seq"


def test_a_module_built_in_python_saves_a_checkpoint_that_loads_with_weights_only(
        tmp_path: Path) -> None:
    """Built in Python, a module's hyper-parameters hold a :class:`LayerConfig` object, not a
    dict: that class is on torch's list of safe globals."""
    import lightning

    from tasks.seq2seq.module import Seq2SeqModule

    module = Seq2SeqModule()
    path = tmp_path / "python.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__, HEAD_KEY: "seq2seq"}, path)
    restored = Seq2SeqModule.from_checkpoint(path)
    assert restored.hparams.encoder == module.hparams.encoder


def test_an_old_checkpoint_without_its_head_is_placed_by_its_settings(
        ws: Workspace, capsys: pytest.CaptureFixture) -> None:
    """Before checkpoints named their head, their saved settings still tell: a graph
    checkpoint's ``data_info`` is no vision module's argument."""
    checkpoint = torch.load(ws.ckpt("graph"), weights_only=True)
    del checkpoint[HEAD_KEY]
    old = ws.root / "old-graph.ckpt"
    torch.save(checkpoint, old)
    assert main(["predict", "graph", "--ckpt", str(old), "CCO"]) == 0
    capsys.readouterr()
    assert main(["predict", "vision", "--ckpt", str(old), ws / "notes.txt"]) == 2
    assert "is a graph checkpoint, not a vision one" in capsys.readouterr().err


def test_test_takes_ckpt_equals_path(ws: Workspace) -> None:
    runs = ws.root / "tested"
    assert main(["test", "seq2seq", f"--ckpt={ws.ckpt('seq2seq')}", "--run.root", str(runs),
                 "--run.name=t", "--trainer.limit_test_batches=1",
                 "--trainer.enable_progress_bar=false"]) == 0
    assert (runs / "seq2seq" / "adhoc" / "t" / "summary.json").is_file()
