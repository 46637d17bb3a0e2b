"""The vision head through the `suite` command, in-process, on a tiny Fashion-MNIST written here:
train (fast_dev_run and a 2-step run with a checkpoint), predict on a PNG, and the error exit."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from suite.cli import main
from tasks.vision import data as vd

TINY = ["--data.train_size=40", "--data.val_size=20", "--data.batch_size=8",
        "--model.dim=16", "--model.depth=1", "--model.num_heads=2", "--model.ffn_dim=32",
        "--model.patch_size=7", "--trainer.max_epochs=1"]


@pytest.fixture(autouse=True)
def tiny_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 random train and 50 test images in the cache layout the data module reads."""
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for part, n in (("train", 200), ("test", 50)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        for name, array in zip(vd.IDX_NAMES[part], (images, labels), strict=True):
            path = vd.FASHION_FILES[name].local
            path.parent.mkdir(parents=True, exist_ok=True)
            # IDX: zero, zero, type 0x08 (uint8), rank, big-endian sizes, then the bytes.
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I",
                                                                   *array.shape)
            path.write_bytes(header + array.tobytes())


def train(tmp_path: Path, *args: str) -> int:
    return main(["train", "vision", "-c", "configs/vision/quick.yaml", *TINY, *args,
                 "--run.root", str(tmp_path / "runs"), "--run.name", "tiny"])


@pytest.mark.parametrize("model", ["vit-local", "cnn"])
def test_fast_dev_run_trains_through_the_cli(tmp_path: Path, model: str) -> None:
    assert train(tmp_path, f"--model.model={model}", "--trainer.fast_dev_run=1") == 0
    summary = json.loads((tmp_path / "runs/vision/adhoc/tiny/summary.json").read_text())
    assert summary["model"] == model and summary["dataset"] == "fashion-mnist"
    assert "test/acc" in summary["metrics"] and "test/f1" in summary["metrics"]
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


def test_data_that_does_not_fit_the_model_is_a_usage_error(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    assert train(tmp_path, "--data.image_size=14", "--trainer.fast_dev_run=1") == 2
    assert "built for fashion-mnist at 28px but the data is fashion-mnist at 14px" in (
        capsys.readouterr().err)
