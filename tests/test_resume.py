"""Exact resume: a run stopped after a checkpoint and continued with ``--run.resume last`` ends
bit-identical to the unbroken run of the same seed (weights and test metrics), its
``metrics.csv`` continues the earlier rows and its ``train_seconds`` sums the pieces."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import suite.runner
from suite.cli import main
from suite.paths import CONFIGS, ROOT
from suite.resume import RandomState

# Small enough for seconds per epoch; shuffling and dropout (0.1) both draw random numbers.
SMALL = ["-c", str(CONFIGS / "seq2seq" / "quick.yaml"), "--data.train_size=128",
         "--data.val_size=32", "--data.test_size=32", "--data.batch_size=32",
         "--model.encoder.dim=32", "--model.encoder.ffn_dim=64", "--model.encoder.depth=1",
         "--trainer.precision=32-true", "--trainer.max_epochs=3",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def rows(run_dir: Path) -> list[dict[str, str]]:
    """``metrics.csv`` without the wall-clock columns (throughput, memory), which no two runs
    share, and without the rows that held only those."""
    with open(run_dir / "metrics.csv", newline="") as f:
        kept = [{k: v for k, v in row.items() if not k.startswith("perf/")}
                for row in csv.DictReader(f)]
    return [row for row in kept if any(v for k, v in row.items() if k not in ("epoch", "step"))]


def assert_same_run(resumed: Path, unbroken: Path) -> dict:
    """Same final weights and test metrics, bit for bit, and the same logged rows."""
    a, b = weights(resumed), weights(unbroken)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "weights differ from the unbroken run"
    summary = json.loads((resumed / "summary.json").read_text())
    expected = json.loads((unbroken / "summary.json").read_text())
    assert summary["steps"] == expected["steps"]
    test = {k: v for k, v in summary["metrics"].items() if k.startswith("test")}
    assert test and test == {k: v for k, v in expected["metrics"].items() if k.startswith("test")}
    assert rows(resumed) == rows(unbroken)
    epochs = [row["epoch"] for row in rows(resumed) if row.get("val/loss")]
    assert epochs == ["0", "1", "2"]  # one validation row per epoch: none lost, none twice
    return summary


class StopAfterFirstEpoch(RandomState):
    """:class:`RandomState` that ends the fit after epoch 0 (its checkpoint is written by then),
    as if the process had been stopped there."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_a_stopped_and_resumed_run_equals_the_unbroken_run(tmp_path, monkeypatch):
    root = ["--run.root", str(tmp_path)]
    assert main(["train", "seq2seq", *SMALL, *root, "--run.name", "unbroken"]) == 0
    with monkeypatch.context() as patch:
        patch.setattr(suite.runner, "RandomState", StopAfterFirstEpoch)
        assert main(["train", "seq2seq", *SMALL, *root, "--run.name", "pieces",
                     "--run.test=false"]) == 0
    runs = tmp_path / "seq2seq" / "adhoc"
    first = json.loads((runs / "pieces" / "summary.json").read_text())
    assert first["steps"] == 4  # one epoch of 128 / 32
    torch.manual_seed(123)  # whatever this process drew since, resuming restores the states
    assert main(["train", "seq2seq", *SMALL, *root, "--run.resume", "last"]) == 0  # the latest
    summary = assert_same_run(runs / "pieces", runs / "unbroken")
    assert summary["train_seconds"] > first["train_seconds"]
    # resuming a finished run only tests it again: its test row replaces the earlier one
    assert main(["train", "seq2seq", *SMALL, *root, "--run.name", "pieces",
                 "--run.resume", "last"]) == 0
    assert_same_run(runs / "pieces", runs / "unbroken")


def test_run_names_are_not_reused_without_resume_or_overwrite(tmp_path, capsys):
    root = ["--run.root", str(tmp_path)]
    assert main(["train", "seq2seq", *root, "--run.resume", "last"]) == 2
    assert "no run under" in capsys.readouterr().err
    assert not (tmp_path / "seq2seq").exists()
    run = tmp_path / "seq2seq" / "adhoc" / "taken"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"seed": 7, "command": "old"}))
    args = ["train", "seq2seq", *SMALL, *root, "--run.name", "taken", "--trainer.max_steps=1",
            "--data.train_size=32", "--run.test=false"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run.overwrite" in err[0]
    assert main(["train", "seq2seq", *root, "--run.name", "taken", "--run.resume", "last"]) == 2
    assert "has no checkpoints/last.ckpt" in capsys.readouterr().err
    assert main([*args, "--run.overwrite=true", "--seed_everything=3"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seed"] == 3 and "old" not in summary["command"]


@pytest.mark.slow  # three interpreters, each importing torch and Lightning
def test_a_killed_and_resumed_run_equals_the_unbroken_run(tmp_path):
    """A real ``kill -9`` of ``suite train`` as soon as its first checkpoint is written."""
    command = [sys.executable, "-m", "suite.cli", "train", "seq2seq", *SMALL,
               "--run.root", str(tmp_path), "--run.wandb", "disabled"]
    runs = tmp_path / "seq2seq" / "adhoc"
    env = {**os.environ, "SUITE_WANDB": "disabled"}
    unbroken = subprocess.Popen([*command, "--run.name", "unbroken"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = subprocess.Popen([*command, "--run.name", "killed"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = runs / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    steps_at_kill = torch.load(last, weights_only=True)["global_step"]
    assert steps_at_kill < 12 and not (runs / "killed" / "summary.json").exists()
    resumed = subprocess.run([*command, "--run.name", "killed", "--run.resume", "last"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert unbroken.wait(timeout=600) == 0
    assert_same_run(runs / "killed", runs / "unbroken")


def test_a_resumed_run_keeps_its_wandb_run(tmp_path):
    """The W&B id is stored in the run directory when training starts and reused, so W&B
    shows one run."""
    from suite.logging import make_loggers, remember_wandb_id, wandb_sync_hint

    def loggers() -> list:  # no W&B run is started: that happens on first use
        return make_loggers(tmp_path, experiment="e", name="n", tags=[], mode="offline")

    first = loggers()
    assert not any(tmp_path.iterdir())  # nothing written before training starts
    remember_wandb_id(tmp_path, first)
    assert loggers()[1].version == first[1].version == (tmp_path / "wandb-id").read_text()
    assert make_loggers(tmp_path / "other", experiment="e", name="n", tags=[],
                        mode="offline")[1].version != first[1].version
    for piece in ("offline-run-1-x", "offline-run-2-x"):
        (tmp_path / "wandb" / piece).mkdir(parents=True)
    assert wandb_sync_hint(tmp_path) == (f"wandb sync {tmp_path}/wandb/offline-run-1-x "
                                         f"{tmp_path}/wandb/offline-run-2-x")


def test_an_unnamed_run_gets_a_timestamp_and_a_suffix_when_it_is_taken(tmp_path, monkeypatch):
    import datetime as dt

    import suite.resume

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 2, 10, 0, 0)

    monkeypatch.setattr(suite.resume.dt, "datetime", Frozen)
    run = {"root": str(tmp_path), "experiment": "adhoc", "name": None, "resume": None}
    first = suite.resume.run_directory(run, "seq2seq")
    assert first.name == "20261202-100000"
    first.mkdir(parents=True)
    assert suite.resume.run_directory(run, "seq2seq").name == "20261202-100000-1"
