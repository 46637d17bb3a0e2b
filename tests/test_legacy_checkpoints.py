"""Runs saved before issue 18's layout still predict and test.

Before issue 18 a module's init arguments were flat (``dim``, ``beam_size``, ``patch_size``,
``channels_last`` ...). For each head a run is trained for two steps by today's code on
test_pinned's tiny data, then copied with its checkpoint's hyper-parameters and its
``config.yaml``'s model section replaced by what the code of commit a77690d saved for the same
run (:data:`OLD`, captured from that code). ``suite predict`` and ``suite test`` on the copy must
print and measure exactly what they do on the run as today's code saved it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from test_pinned import PINS, TRAIN

from suite.blocks import LayerConfig
from suite.cli import main
from tasks.vision.module import LEGACY_OPTIONS, VisionModule

OPTIMISER = {"betas": [0.9, 0.999], "schedule": "cosine", "warmup_fraction": 0.05,
             "min_lr_ratio": 0.01, "_instantiator": "lightning.pytorch.cli.instantiate_module"}
ESOL_INFO = {"task": "regression", "num_classes": 0, "num_node_features": 9,
             "atom_feature_dims": [119, 9, 11, 12, 9, 5, 8, 2, 2], "bond_feature_dims": [22, 6, 2],
             "pe_attr": "rw_pe", "num_graph_features": 0, "descriptor_mean": [],
             "descriptor_std": [], "dataset": "esol", "split": "random", "seed": 0,
             "pe": "random_walk", "pe_dim": 8, "spd": True, "spd_max": 20, "descriptors": False}
VISION = {"model": "vit", "dataset": "fashion-mnist", "image_size": None, "patch_size": 4,
          "dim": 96, "depth": 6, "num_heads": 4, "ffn_dim": 192, "dropout": 0.0, "pool": "mean",
          "local_kernel": 3, "pixel_grid": 14, "pixel_window": None, "cnn_widths": [32, 64, 128],
          "cnn_blocks": 1, "label_smoothing": 0.1, "channels_last": True, "lr": 0.002,
          "weight_decay": 0.05, "warmup_steps": 0, **OPTIMISER}
OLD = {
    "asr": {"dim": 144, "depth": 6, "num_heads": 4, "ffn_dim": 576, "dropout": 0.1,
            "subsampling": 4, "conv_channels": 32, "window": [16, 16], "conv_kernel": 0,
            "utterance_norm": True, "beam_size": 8, "lm_order": 6, "lm_alpha": 0.5,
            "lm_beta": 1.0, "word_lm_order": 3, "word_beam": 200, "word_lm_weight": 1.0,
            "word_score": -1.0, "stream_chunk": 64, "model": "ctc-w16-16", "lr": 0.004,
            "weight_decay": 0.05, "warmup_steps": 600, **OPTIMISER},
    "graph": {"model": "edge", "dim": 64, "depth": 4, "num_heads": 4, "ffn_dim": 128,
              "dropout": 0.1, "attention_dropout": 0.0, "input_dropout": 0.0,
              "structure_lr_scale": 1.0, "readout": "sum", "propagation_steps": 0,
              "teleport": 0.1, "attention_impl": "auto", "bond_messages": None,
              "show_smiles": None, "threads": 1, "data_info": ESOL_INFO, "lr": 0.002,
              "weight_decay": 0.01, "warmup_steps": 0, **OPTIMISER},
    "sentiment": {"model": "transformer-cls", "classes": 2, "vocab_size": 8000, "max_length": 64,
                  "dim": 128, "depth": 2, "num_heads": 4, "ffn_dim": 256, "dropout": 0.1,
                  "attention_dropout": 0.1, "word_dropout": 0.1, "pool": "cls",
                  "positions": "sinusoidal", "label_smoothing": 0.1, "mlm_weight": 0.0,
                  "mlm_probability": 0.15, "lexicon": False, "lr": 0.001, "weight_decay": 0.1,
                  "warmup_steps": 0, **OPTIMISER},
    "seq2seq": {"dim": 64, "depth": 2, "num_heads": 4, "ffn_dim": 256, "dropout": 0.1,
                "lr": 0.002, "weight_decay": 0.05, "warmup_steps": 0, **OPTIMISER},
    "vision": VISION,
}
"""Each head's checkpoint hyper-parameters as a77690d's code saved them for this run
(``configs/<head>/default.yaml`` and test_pinned's data)."""
SET_BY_THE_MODULE = {"asr": "model", "graph": "data_info"}
"""The argument the module fills in itself: null in the old ``config.yaml``."""
OLD_MODEL_ARGS = {"asr": ("--model.units=char", "--model.subsampling=4", "--model.window=[16,16]",
                          "--model.encoder.dim=144", "--model.encoder.depth=6",
                          "--model.encoder.ffn_dim=576", "--model.encoder.dropout=0.1")}
"""What a run needs today to train the model an old checkpoint holds (the ASR head's default
has since moved to a larger encoder over word pieces at 8x subsampling)."""


def legacy_copy(run: Path, head: str, to: Path) -> Path:
    """``run`` copied to ``to`` with its settings in the layout of a77690d; its checkpoint."""
    shutil.copytree(run, to)
    ckpt = to / "checkpoints/last.ckpt"
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint["hyper_parameters"] = dict(OLD[head])
    torch.save(checkpoint, ckpt)
    config = yaml.safe_load((to / "config.yaml").read_text())
    config["model"] = {key: value for key, value in OLD[head].items() if key != "_instantiator"}
    if head in SET_BY_THE_MODULE:
        config["model"][SET_BY_THE_MODULE[head]] = None
    (to / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return ckpt


def predict_and_test(head: str, ckpt: Path, inputs: list[str], root: Path,
                     capsys: pytest.CaptureFixture) -> tuple[list[str], dict[str, float]]:
    """What ``suite predict`` prints for ``inputs`` and the metrics ``suite test`` writes."""
    capsys.readouterr()
    assert main(["predict", head, "--ckpt", str(ckpt), *inputs]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert main(["test", head, "--ckpt", str(ckpt), "--run.root", str(root)]) == 0
    summary = json.loads((root / head / "adhoc/pin/summary.json").read_text())
    return printed, summary["metrics"]


@pytest.mark.parametrize("head", sorted(OLD))
def test_a_run_saved_in_the_old_layout_predicts_and_tests_as_before(
        head: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: set[Path],
        capsys: pytest.CaptureFixture) -> None:
    pin = PINS[head]
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path / "cache"))
    if pin.write_data is not None:
        pin.write_data(tmp_path / "cache")
        planted.update(path for path in (tmp_path / "cache").rglob("*") if path.is_file())
    steps = [arg for arg in (*TRAIN, *pin.args, *OLD_MODEL_ARGS.get(head, ()))
             if not arg.startswith("--trainer.max_steps")]
    assert main(["train", head, *steps, "--trainer.max_steps=2",
                 "--run.root", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / head / "adhoc" / "pin"
    inputs = pin.inputs(tmp_path)
    want = predict_and_test(head, run / "checkpoints/last.ckpt", inputs, tmp_path / "now",
                            capsys)
    ckpt = legacy_copy(run, head, tmp_path / "legacy")
    assert predict_and_test(head, ckpt, inputs, tmp_path / "then", capsys) == want


@pytest.mark.parametrize("variant", sorted(LEGACY_OPTIONS))
def test_each_vision_variant_keeps_only_the_options_it_read(variant: str) -> None:
    """The old defaults of every variant build today's default model of that variant: ``vit``
    ignored ``local_kernel``, the CNN took ``dropout`` and ``cnn_*``, no one ``pixel_*``."""
    settings = VisionModule.upgrade_settings({**VISION, "model": variant})
    assert "channels_last" not in settings
    images = torch.rand(2, 1, 28, 28)
    outputs = []
    for kwargs in (settings, {"model": variant}):
        kwargs = {key: value for key, value in kwargs.items() if not key.startswith("_")}
        if "encoder" in kwargs:
            kwargs["encoder"] = LayerConfig(**kwargs["encoder"])
        torch.manual_seed(0)
        module = VisionModule(**kwargs).eval()
        with torch.no_grad():
            outputs.append(module(images)[0])
    torch.testing.assert_close(*outputs, rtol=0, atol=0)
