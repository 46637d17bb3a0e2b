"""vit_vs_cnn: the report states the lecture's claim from whatever grid it is given; the
throughput stage's torchvision peer takes our encoder's size, and the stage returns one row per
model and precision."""

import torch

from experiments.vit_vs_cnn.report import _claim, figures
from experiments.vit_vs_cnn.throughput import rows, torchvision_vit
from suite.blocks import LayerConfig


def test_claim_with_one_size_does_not_read_a_trend():
    text = _claim({"cnn": {55000: [0.93]}, "vit": {55000: [0.88]},
                   "vit-local": {55000: [0.881]}})
    assert "5.0 points ahead" in text and "cannot be read yet" in text
    assert "1 of 1 sizes: restricting" in text


def test_claim_reads_the_gap_closing_with_data():
    text = _claim({"cnn": {1000: [0.80], 55000: [0.93]}, "vit": {1000: [0.70], 55000: [0.91]},
                   "vit-local": {1000: [0.69], 55000: [0.90]}})
    assert "closes part of the gap" in text and "0 of 2 sizes." in text


def test_rollouts_come_from_each_attention_models_largest_seed0_run():
    def row(name, model, size, seed=0, precision="bf16-mixed"):
        return {"name": name, "model": model, "seed": seed, "precision": precision,
                "overrides": {"data.train_size": size}}

    results = {"runs": [row("vit-1k-s0", "vit", 1000), row("vit-5k-s0", "vit", 5000),
                        row("vit-5k-s1", "vit", 5000, seed=1),
                        row("vit-1k-fp32-s0", "vit", 9000, precision="32-true"),
                        row("cnn-5k-s0", "cnn", 5000)]}
    [shown] = figures(results).figures
    assert (shown.run, shown.name) == ("vit-5k-s0", "attention_rollout_vit.png")


def test_the_torchvision_peer_takes_our_size_and_images():
    encoder = LayerConfig(dim=16, depth=2, num_heads=2, ffn_dim=32)
    peer = torchvision_vit(28, 1, 10, encoder, patch_size=4)
    assert len(peer.net.encoder.layers) == 2 and peer.net.hidden_dim == 16
    assert peer(torch.randn(2, 1, 28, 28))[0].shape == (2, 10)


def test_throughput_stage_rows():
    rows_ = rows(steps=1, rounds=1, batch_size=4)
    assert [r["name"] for r in rows_] == [
        f"throughput-{m}-{p}" for m in ("ours", "ours-cls", "torchvision")
        for p in ("bf16", "fp32")]
    assert all(r["group"] == "throughput" and r["samples_per_second"] > 0 for r in rows_)
    assert rows_[0]["overrides"] == {"batch_size": 4, "steps": 1, "rounds": 1}
