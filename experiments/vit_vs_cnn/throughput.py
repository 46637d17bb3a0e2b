"""Stage ``throughput``: training images/s of our ViT (mean-pooled and with a class token)
against ``torchvision.models.VisionTransformer`` of the same depth, width, heads and patch size,
each in bf16-mixed and fp32, on random batches of its images' size.

The models' training steps are interleaved round by round in one process
(:func:`suite.measure.interleaved_rates`), so load from other processes on a shared CPU falls
on all of them alike; the median round counts. Rows: ``metrics`` =
``bench/samples_per_second``, group ``throughput``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from suite.blocks import LayerConfig
from suite.measure import interleaved_rates
from suite.spec import build_module
from tasks.vision.model import TorchvisionClassifier

VIT_CONFIG = "configs/vision/vit.yaml"


def torchvision_vit(image_size: int, in_channels: int, num_classes: int, encoder: LayerConfig,
                    patch_size: int = 4) -> TorchvisionClassifier:
    """``torchvision.models.VisionTransformer`` of the given size (class token, learned 1-D
    positions, fused in-projection), with its stem taking ``in_channels``: the throughput peer."""
    net = torchvision.models.VisionTransformer(
        image_size=image_size, patch_size=patch_size, num_layers=encoder.depth,
        num_heads=encoder.num_heads, hidden_dim=encoder.dim, mlp_dim=encoder.ffn_dim,
        dropout=encoder.dropout, attention_dropout=encoder.attention_dropout,
        num_classes=num_classes)
    net.conv_proj = nn.Conv2d(in_channels, encoder.dim, patch_size, stride=patch_size)
    return TorchvisionClassifier(net)


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                labels: torch.Tensor, bf16: bool) -> None:
    """One AdamW step as Lightning runs it: autocast forward, fp32 loss, backward, update."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, _ = model(images)
    loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def rows(steps: int = 4, rounds: int = 5, batch_size: int = 128) -> list[dict[str, Any]]:
    """One results row per (model, precision): the median images/s of ``rounds`` interleaved
    rounds of ``steps`` training steps on batches of ``batch_size``."""
    vit = build_module("vision", VIT_CONFIG)  # the ViT of the grid, so the peer matches it
    encoder, options = vit.hparams["encoder"], dict(vit.hparams.get("options") or {})
    side, channels = vit.data_info["image_size"], vit.data_info["in_channels"]
    classes = len(vit.data_info["class_names"])
    patch_size = vit.model.patch_embed.kernel_size[0]
    torch.manual_seed(0)
    candidates = {
        "ours": lambda: build_module("vision", VIT_CONFIG).model,
        "ours-cls": lambda: build_module("vision", VIT_CONFIG,
                                         options={**options, "pool": "cls"}).model,
        "torchvision": lambda: torchvision_vit(side, channels, classes, encoder,
                                               patch_size=patch_size),
    }
    images = torch.randn(batch_size, channels, side, side)
    labels = torch.randint(0, classes, (batch_size,))
    models, train_steps = {}, {}
    for name, make in candidates.items():
        for bf16 in (True, False):
            model = make().train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            step = partial(_train_step, model, optimizer, images, labels, bf16)
            step()  # warm-up: the first step picks kernels
            models[(name, bf16)], train_steps[(name, bf16)] = model, step
    rates = interleaved_rates(train_steps, rounds, steps, batch_size)
    return [{"name": f"throughput-{name}-{'bf16' if bf16 else 'fp32'}",
             "group": "throughput", "head": "vision",
             "model": "torchvision-vit" if name == "torchvision" else f"vit ({name})",
             "dataset": f"synthetic {side}x{side}",
             "train_size": None, "seed": 0,
             "config": VIT_CONFIG, "overrides": {"batch_size": batch_size,
                                                 "steps": steps, "rounds": rounds},
             "precision": "bf16-mixed" if bf16 else "32-true",
             "params": sum(p.numel() for p in models[(name, bf16)].parameters()),
             "train_seconds": None, "samples_per_second": round(rate, 1),
             "peak_memory_mb": None, "metrics": {"bench/samples_per_second": rate}}
            for (name, bf16), rate in rates.items()]
