"""The vision head through the `suite` command, in-process, on the tiny Fashion-MNIST fixture:
train (fast_dev_run and a 2-step run with a checkpoint), predict on a PNG, and the error exit."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from suite.cli import main
from tasks.vision import data as vd

TINY = ["--data.train_size=40", "--data.val_size=20", "--data.batch_size=8",
        "--model.encoder.dim=16", "--model.encoder.depth=1", "--model.encoder.num_heads=2",
        "--model.encoder.ffn_dim=32", "--model.options.patch_size=7", "--trainer.max_epochs=1"]

pytestmark = pytest.mark.usefixtures("fashion")


def train(tmp_path: Path, *args: str) -> int:
    return main(["train", "vision", "-c", "configs/vision/quick.yaml", *TINY, *args,
                 "--run.root", str(tmp_path / "runs"), "--run.name", "tiny"])


@pytest.mark.parametrize("model", ["vit-local", "cnn"])
def test_fast_dev_run_trains_through_the_cli(tmp_path: Path, model: str) -> None:
    options = ["--model.options=null"] if model == "cnn" else []  # the CNN has no patches
    assert train(tmp_path, f"--model.model={model}", *options, "--trainer.fast_dev_run=1") == 0
    summary = json.loads((tmp_path / "runs/vision/adhoc/tiny/summary.json").read_text())
    assert summary["model"] == model and summary["dataset"] == "fashion-mnist"
    assert "test/acc" in summary["metrics"] and "test/macro_f1" in summary["metrics"]
    media = tmp_path / "runs/vision/adhoc/tiny/media"
    assert (media / "test_confusion_matrix.png").is_file()
    assert (media / "test_attention_rollout.png").is_file() == (model == "vit-local")


def test_predict_prints_top3_and_rejects_a_non_image(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert train(tmp_path, "--trainer.max_steps=2", "--trainer.logger=false") == 0
    ckpt = tmp_path / "runs/vision/adhoc/tiny/checkpoints/last.ckpt"
    assert ckpt.is_file()
    picture = np.zeros((40, 30, 3), dtype=np.uint8)
    picture[5:35, 10:20] = 200
    Image.fromarray(picture).save(tmp_path / "shirt.png")
    Image.fromarray(picture[..., 0]).convert("P").save(tmp_path / "palette.png")
    capsys.readouterr()
    assert main(["predict", "vision", "--ckpt", str(ckpt), str(tmp_path / "shirt.png"),
                 str(tmp_path / "palette.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{tmp_path / 'shirt.png'}: ")
    ranked = lines[0].split(": ", 1)[1].split(", ")
    assert len(ranked) == 3 and all(r.rsplit(" ", 1)[0] in vd.DATASETS["fashion-mnist"]
                                    .class_names for r in ranked)
    assert sum(float(r.rsplit(" ", 1)[1]) for r in ranked) <= 1.0 + 1e-3

    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["predict", "vision", "--ckpt", str(ckpt), str(tmp_path / "shirt.png"),
                 str(tmp_path / "notes.txt")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "notes.txt: not an image file" in captured.err


def test_an_option_the_variant_does_not_take_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train(tmp_path, "--model.model=cnn", "--trainer.fast_dev_run=1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cnn (ResidualCNN) takes no option patch_size" in err[0]
    assert "its options: widths, blocks_per_stage, dropout" in err[0]


def test_the_model_is_built_for_the_images_the_data_serves(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``dataset`` and ``image_size`` are linked from the data module into the model (and its
    checkpoint); setting them on the model is a usage error."""
    assert train(tmp_path, "--data.image_size=14", "--trainer.max_steps=1",
                 "--run.test=false") == 0
    ckpt = tmp_path / "runs/vision/adhoc/tiny/checkpoints/last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]
    assert (saved["dataset"], saved["image_size"]) == ("fashion-mnist", 14)
    capsys.readouterr()
    assert train(tmp_path, "--model.image_size=14", "--trainer.fast_dev_run=1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.image_size is set by the data module" in err[0]
