"""Vision TaskModule: cross-entropy, accuracy and macro-F1, confusion matrix, attention rollout.

The module knows its data set by name (``dataset``) and writes the class names and the
normalisation into every checkpoint, so ``suite predict vision --ckpt C img.png`` needs no data
module: each file is loaded as the data set's images were (grey/colour, size, normalisation)
and the top-3 classes are printed with their probabilities.

Attention rollout (Abnar & Zuidema, 2020) shows where a trained attention model looks: each
layer's head-averaged weights A are mixed with the identity for the residual path,
A' = (A + I) / 2 (rows renormalised), and multiplied through the layers; the pooled output's
row of the product is how much each input patch (or pixel) contributed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from suite.blocks import LayerConfig
from suite.errors import UsageError
from suite.logging import log_figure
from suite.module import ClassificationMetrics, Stage, TaskModule
from tasks.vision.data import DATASETS, DatasetName, load_image_file
from tasks.vision.model import PixelTransformer, VisionTransformer, create_model

ENCODER = LayerConfig(dim=96, depth=6, ffn_dim=192, dropout=0.0)
"""The vision head's default encoder size (``--model.encoder.*``; the CNNs have none)."""

LEGACY_FLAT = ("patch_size", "pool", "local_kernel", "pixel_grid", "pixel_window", "cnn_widths",
               "cnn_blocks", "channels_last")
"""Init arguments of the checkpoints written before ``options``: family options and a no-op."""
LEGACY_OPTIONS = {
    "vit": {"patch_size": "patch_size", "pool": "pool"},
    "vit-local": {"patch_size": "patch_size", "pool": "pool", "local_kernel": "local_kernel"},
    "pixel": {"pixel_grid": "grid", "pixel_window": "window"},
    "cnn": {"cnn_widths": "widths", "cnn_blocks": "blocks_per_stage", "dropout": "dropout"},
    "resnet18": {},
}
"""Of those (and ``dropout``), the ones each variant read, by their ``options`` name."""


def attention_rollout(maps: list[Tensor], cls_token: bool) -> Tensor:
    """Per-layer weights ``(B, heads, T, T)`` -> ``(B, N)``: each input token's share of the
    pooled output (the class token's row, or the mean of all rows for mean pooling)."""
    rollout = None
    for weights in maps:
        a = weights.float().mean(dim=1)  # (B, T, T), heads averaged
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    assert rollout is not None, "rollout needs at least one layer's weights"
    return rollout[:, 0, 1:] if cls_token else rollout.mean(dim=1)


class VisionModule(TaskModule):
    """Image classification with any variant of :data:`tasks.vision.model.VARIANTS`.

    Args:
        model: ``vit``, ``vit-local``, ``pixel``, ``cnn`` or ``resnet18``.
        dataset: the data set the model is built for (classes, channels, normalisation);
            linked from ``--data.dataset`` (:data:`tasks.vision.HEAD`'s ``links``).
        image_size: input side in pixels, linked from the data module's; None (a module
            built by hand): the data set's own (28, or 32 for cifar10).
        encoder: the attention models' Transformer size (the CNNs have none).
        options: keyword arguments of the variant's family, over the variant's own, e.g.
            ``{patch_size: 7}`` (:class:`~tasks.vision.model.VisionTransformer`),
            ``{grid: 14, window: 7}`` (``PixelTransformer``), ``{widths: [32, 64]}``
            (``ResidualCNN``).
        label_smoothing: cross-entropy label smoothing.
        The optimiser arguments are :class:`suite.module.TaskModule`'s.
    """

    def __init__(self, model: str = "vit", dataset: DatasetName = "fashion-mnist",
                 image_size: int | None = None, encoder: LayerConfig = ENCODER,
                 options: dict[str, Any] | None = None, label_smoothing: float = 0.1,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        info = DATASETS[dataset]
        self.image_size = image_size or info.image_size
        self.data_info = {"dataset": dataset, "class_names": list(info.class_names),
                          "mean": list(info.mean), "std": list(info.std),
                          "in_channels": info.in_channels, "image_size": self.image_size}
        num_classes = len(info.class_names)
        try:
            self.model = create_model(model, self.image_size, info.in_channels, num_classes,
                                      encoder, **(options or {}))
        except ValueError as err:  # a variant, option or size the images do not allow
            raise UsageError(f"--model: {err}") from err
        self.metrics = ClassificationMetrics(num_classes)

    @classmethod
    def legacy_renames(cls, settings: Mapping[str, Any]) -> dict[str, str | None]:
        """Family options were flat init arguments, each read only by the variants it applies
        to (:data:`LEGACY_OPTIONS`); the others, and ``channels_last``, are dropped."""
        used = LEGACY_OPTIONS.get(settings.get("model", "vit"), {})
        return ({old: None for old in LEGACY_FLAT}
                | {old: f"options.{new}" for old, new in used.items()})

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vision_data"] = dict(self.data_info)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_info = dict(checkpoint.get("vision_data", self.data_info))

    # ------------------------------------------------------------------ steps
    def forward(self, images: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """``(B, C, H, W)`` normalised images -> logits ``(B, classes)`` and attention maps."""
        return self.model(images, need_weights)

    def batch_size(self, batch: tuple[Tensor, Tensor]) -> int:
        return len(batch[1])

    def step(self, batch: tuple[Tensor, Tensor], stage: Stage) -> Tensor:
        images, labels = batch
        logits, _ = self(images)
        loss = F.cross_entropy(logits.float(), labels,
                               label_smoothing=self.hparams.label_smoothing)
        n = self.batch_size(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n, on_epoch=True,
                 on_step=stage == "train")
        self.metrics.log_batch(self, stage, logits, labels, n)
        return loss

    # ------------------------------------------------------------------ media
    def on_test_epoch_end(self) -> None:
        self.metrics.log_confusion(self, self.data_info["class_names"])
        if isinstance(self.model, VisionTransformer | PixelTransformer):
            self._log_rollout()

    def _log_rollout(self, count: int = 8) -> None:
        """Attention rollout over the first ``count`` test images, drawn over the images, and
        the last layer's raw per-head maps of the first image."""
        import matplotlib.pyplot as plt

        images, labels = next(iter(self.trainer.datamodule.test_dataloader()))
        images, labels = images[:count].to(self.device), labels[:count]
        logits, maps = self(images, need_weights=True)
        cls_token = getattr(self.model, "cls_token", None) is not None
        heat = attention_rollout(maps, cls_token)  # (B, N)
        side = int(heat.shape[-1] ** 0.5)
        heat = heat.view(-1, 1, side, side)
        heat = F.interpolate(heat, size=images.shape[-2:], mode="bilinear", align_corners=False)
        heat = heat / heat.amax(dim=(2, 3), keepdim=True)
        names = self.data_info["class_names"]
        predicted = logits.argmax(-1).cpu()
        fig, axes = plt.subplots(2, len(images), figsize=(1.6 * len(images), 3.6),
                                 squeeze=False)
        for i in range(len(images)):
            picture = images[i].float().mean(0).cpu()
            axes[0, i].imshow(picture.numpy(), cmap="gray")
            axes[0, i].set_title(f"{names[labels[i]]}\n-> {names[predicted[i]]}", fontsize=6)
            axes[1, i].imshow(picture.numpy(), cmap="gray")
            axes[1, i].imshow(heat[i, 0].cpu().numpy(), cmap="inferno", alpha=0.6)
            for ax in axes[:, i]:
                ax.axis("off")
        fig.suptitle(f"{self.hparams.model}: attention rollout (true -> predicted)", fontsize=8)
        fig.tight_layout()
        log_figure(self, "test/attention_rollout", fig)
        last = maps[-1][0]  # (heads, T, T)
        self.log_attention_maps(last, "test/attention_last_layer",
                                [f"last layer, head {h}" for h in range(len(last))])

    # ------------------------------------------------------------------ predict
    def predict_inputs(self, inputs: list[str]) -> list[str]:
        """Top-3 classes with probabilities for each image file; every file is read before any
        prediction, so a file that is not an image stops the run with one
        :class:`suite.errors.DataError` naming it (raised by ``load_image_file``)."""
        info = self.data_info
        images = torch.stack([load_image_file(Path(path), info["dataset"], info["image_size"])
                              for path in inputs])  # (N, C, H, W)
        logits, _ = self(images.to(self.device))
        top = logits.float().softmax(-1).topk(min(3, logits.shape[-1]), dim=-1)
        lines = []
        for path, probs, classes in zip(inputs, top.values.tolist(), top.indices.tolist(),
                                        strict=True):
            ranked = ", ".join(f"{info['class_names'][c]} {p:.3f}"
                               for p, c in zip(probs, classes, strict=True))
            lines.append(f"{path}: {ranked}")
        return lines
