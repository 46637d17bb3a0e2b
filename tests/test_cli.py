"""The `suite` command, end to end on the small seq2seq head."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from suite.cli import main

TINY = ["--data.train_size=64", "--data.val_size=32", "--data.test_size=32",
        "--data.batch_size=32", "--model.encoder.dim=32", "--model.encoder.ffn_dim=64",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unknown_head_is_one_line_and_exit_2(capsys):
    assert main(["train", "no-such-head"]) == 2
    line = one_error_line(capsys)
    assert "unknown head 'no-such-head'" in line and "seq2seq" in line


def test_unknown_key_names_the_valid_ones(capsys, tmp_path):
    assert main(["train", "seq2seq", "--model.depthh=3", "--run.root", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert "--model.depthh" in line and "valid --model.* keys: encoder, lr," in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  train_sise: 3\n")
    assert main(["train", "seq2seq", "-c", str(bad), "--run.root", str(tmp_path)]) == 2
    assert "train_sise" in one_error_line(capsys)


def test_missing_config_and_unknown_command(capsys, tmp_path):
    assert main(["train", "seq2seq", "-c", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in one_error_line(capsys)
    assert main(["fly"]) == 2
    assert "unknown command" in one_error_line(capsys)


def head_help(capsys: pytest.CaptureFixture, command: str, head: str) -> str:
    """A head's own --help, which exits 0 through argparse; returns what it printed."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, head, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_and_list(capsys):
    assert main(["--help"]) == 0
    assert "experiment" in capsys.readouterr().out
    assert main(["train", "--help"]) == 0
    assert "seq2seq" in capsys.readouterr().out
    assert "--model.encoder.depth" in head_help(capsys, "train", "seq2seq")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "seq2seq" in out and "experiments:" in out


def test_a_command_missing_its_argument_prints_its_usage_and_exits_2(capsys):
    for argv, shown in (([], "commands:"), (["train"], "heads: asr"),
                        (["test"], "usage: suite test <head>"), (["predict"], "--ckpt PATH")):
        assert main(argv) == 2
        assert shown in capsys.readouterr().out


@pytest.fixture
def head_in_progress(monkeypatch):
    """A ``diarization`` head declared before any of its code exists."""
    import tasks
    from suite.head import Head

    monkeypatch.setitem(tasks.HEADS, "diarization", Head(
        name="diarization", summary="who spoke when",
        module="tasks.diarization.module:DiarizationModule",
        datamodule="tasks.diarization.data:DiarizationDataModule",
        data="tasks.diarization.data",
        monitor=("val/loss", "min"), status="in progress"))
    return tasks.HEADS


def test_list_shows_a_head_still_being_built(capsys, head_in_progress):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "diarization [in progress] who spoke when" in out and "cannot import" in out
    assert head_in_progress["seq2seq"].summary in out


def test_data_prepare_reads_the_contract(capsys, head_in_progress, monkeypatch):
    assert main(["data", "prepare", "seq2seq"]) == 0
    assert "preparing seq2seq" in capsys.readouterr().out
    assert main(["data", "prepare", "no-such-head"]) == 2
    assert "unknown head 'no-such-head'" in one_error_line(capsys)
    for name in ("asr", "graph", "sentiment", "tts", "vision"):  # they would fetch data
        monkeypatch.delitem(head_in_progress, name)
    assert main(["data", "prepare", "all"]) == 0  # every head that is ready: not diarization
    assert capsys.readouterr().out.splitlines() == ["preparing seq2seq"]


def test_predict_refuses_an_option_the_head_does_not_declare(capsys):
    """--stream is asr's; seq2seq declares no predict options."""
    assert main(["predict", "seq2seq", "--ckpt", "nope.ckpt", "--stream", "1 2"]) == 2
    line = one_error_line(capsys)
    assert "--stream" in line and "seq2seq's own predict options: none" in line


def test_predict_help_shows_the_heads_own_options(capsys):
    assert main(["predict", "--help"]) == 0
    assert "seq2seq" in capsys.readouterr().out
    assert "--stream" in head_help(capsys, "predict", "asr")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    code = main(["train", "seq2seq", *TINY, "--trainer.max_steps=3", "--run.root", str(root),
                 "--run.name", "tiny"])
    assert code == 0
    return root / "seq2seq" / "adhoc" / "tiny"


def test_train_writes_the_run_directory(trained):
    assert (trained / "config.yaml").is_file() and (trained / "metrics.csv").is_file()
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert (trained / "checkpoints" / "best.ckpt").is_file()
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["head"] == "seq2seq" and summary["steps"] == 3
    assert summary["params"] > 0 and summary["samples_per_second"] > 0
    assert {"test/loss", "test/exact_match", "val/loss"} <= set(summary["metrics"])
    assert summary["precision"] in ("bf16-mixed", "32-true")
    assert (trained / "media" / "test_cross_attention.png").is_file()


def test_predict_and_bad_input(trained, capsys):
    ckpt = str(trained / "checkpoints" / "last.ckpt")
    assert main(["predict", "seq2seq", "--ckpt", ckpt, "3 1 2", "907"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("3 1 2 ->") and lines[1].startswith("907 ->")
    assert main(["predict", "seq2seq", "--ckpt", ckpt, "12x"]) == 1
    assert "'12x'" in one_error_line(capsys)
    assert main(["predict", "seq2seq", "--ckpt", "nope.ckpt", "1"]) == 2


def test_test_and_resume(trained, capsys):
    ckpt = str(trained / "checkpoints" / "last.ckpt")
    assert main(["test", "seq2seq", "--ckpt", ckpt, "--run.root", str(trained.parent.parent.parent),
                 "--run.name", "tested", "--trainer.enable_progress_bar=false"]) == 0
    tested = json.loads((trained.parent / "tested" / "summary.json").read_text())
    assert "test/exact_match" in tested["metrics"]
    root = str(trained.parent.parent.parent)
    assert main(["train", "seq2seq", *TINY, "--trainer.max_steps=5", "--run.root", root,
                 "--run.name", "tiny", "--run.resume", "last", "--run.test=false"]) == 0
    assert json.loads((trained / "summary.json").read_text())["steps"] == 5


@pytest.mark.slow  # two fresh interpreters, each importing torch and Lightning
def test_two_process_ddp_through_suite_train(tmp_path):
    """Lightning's own DDP (gloo on CPU) launched by the same `suite train` entry point."""
    command = [sys.executable, "-m", "suite.cli", "train", "seq2seq", *TINY,
               "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
               "--trainer.max_steps=2", "--run.root", str(tmp_path), "--run.name", "ddp",
               "--run.wandb", "disabled"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "seq2seq" / "adhoc" / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    assert "test/loss" in summary["metrics"]


def test_checkpoint_monitor_needs_a_mode_for_another_metric():
    from suite.errors import UsageError
    from suite.runner import checkpoint_monitor

    head = ("val/loss", "min")
    assert checkpoint_monitor(None, None, head) == head
    assert checkpoint_monitor("val/loss", None, head) == head
    assert checkpoint_monitor("val/acc", "max", head) == ("val/acc", "max")
    with pytest.raises(UsageError, match="--run.monitor_mode"):
        checkpoint_monitor("val/acc", None, head)
    assert checkpoint_monitor(None, "min", head) == head


def test_checkpoint_monitor_refuses_the_opposite_mode_for_the_heads_metric():
    """--run.monitor_mode=max alone would keep the checkpoint with the highest val/loss."""
    from suite.errors import UsageError
    from suite.runner import checkpoint_monitor

    with pytest.raises(UsageError, match="val/loss is best min"):
        checkpoint_monitor(None, "max", ("val/loss", "min"))
