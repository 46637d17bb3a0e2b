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

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from suite.logging import confusion_figure, log_figure
from suite.module import Stage, TaskModule
from tasks.vision.data import DATASETS, DatasetName, load_image_file
from tasks.vision.model import MODELS, Pool, build_model

ATTENTION_MODELS = ("vit", "vit-local", "pixel")


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
    """Image classification with any of :data:`tasks.vision.model.MODELS`.

    Args:
        model: ``vit``, ``vit-local``, ``pixel``, ``cnn`` or ``resnet18``.
        dataset: the data set the model is built for (classes, channels, image size); must
            match ``--data.dataset``.
        image_size: input side in pixels; None: the data set's own (28, or 32 for cifar10).
        patch_size / dim / depth / num_heads / ffn_dim / dropout / pool: the Transformer
            models' size (``pixel`` uses dim, depth, heads, ffn_dim and dropout).
        local_kernel: the k of ``vit-local``'s k x k patch neighbourhood.
        pixel_grid / pixel_window: ``pixel``'s downsampled side and raster window (None: grid).
        cnn_widths / cnn_blocks: ``cnn``'s channels per stage and residual blocks per stage.
        label_smoothing: cross-entropy label smoothing.
        channels_last: NHWC memory layout for the convolutional models (faster oneDNN kernels).
        The optimiser arguments are :class:`suite.module.TaskModule`'s.
    """

    monitor = ("val/acc", "max")

    def __init__(self, model: str = "vit", dataset: DatasetName = "fashion-mnist",
                 image_size: int | None = None, patch_size: int = 4, dim: int = 96,
                 depth: int = 6, num_heads: int = 4, ffn_dim: int = 192, dropout: float = 0.0,
                 pool: Pool = "mean", local_kernel: int = 3, pixel_grid: int = 14,
                 pixel_window: int | None = None, cnn_widths: tuple[int, ...] = (32, 64, 128),
                 cnn_blocks: int = 1, label_smoothing: float = 0.1, channels_last: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if model not in MODELS:
            raise ValueError(f"unknown vision model {model!r}; expected one of: "
                             f"{', '.join(MODELS)}")
        info = DATASETS[dataset]
        self.image_size = image_size or info.image_size
        self.data_info = {"dataset": dataset, "class_names": list(info.class_names),
                          "mean": list(info.mean), "std": list(info.std),
                          "in_channels": info.in_channels, "image_size": self.image_size}
        num_classes = len(info.class_names)
        self.model = build_model(model, self.image_size, info.in_channels, num_classes,
                                 patch_size, dim, depth, num_heads, ffn_dim, dropout, pool,
                                 local_kernel, pixel_grid, pixel_window, cnn_widths, cnn_blocks)
        self.channels_last = channels_last and model in ("cnn", "resnet18")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # ModuleDict keys may not shadow nn.Module attributes ("train"), hence "<stage>_".
        self.metrics = nn.ModuleDict({f"{stage}_": MetricCollection(
            {"acc": MulticlassAccuracy(num_classes, average="micro"),
             "f1": MulticlassF1Score(num_classes, average="macro")}, prefix=f"{stage}/")
            for stage in ("train", "val", "test")})
        self.confusion = MulticlassConfusionMatrix(num_classes)

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vision_data"] = dict(self.data_info)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_info = dict(checkpoint.get("vision_data", self.data_info))

    def setup(self, stage: str) -> None:
        """Refuse a data module whose images are not the ones the model was built for."""
        data = getattr(self.trainer, "datamodule", None)
        if data is None:
            return
        ours = (self.data_info["dataset"], self.image_size)
        if (data.dataset, data.image_size) != ours:
            from suite.cli import UsageError

            raise UsageError(f"the model is built for {ours[0]} at {ours[1]}px but the data is "
                             f"{data.dataset} at {data.image_size}px; set --model.dataset and "
                             f"--model.image_size to match --data.*")

    # ------------------------------------------------------------------ steps
    def forward(self, images: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """``(B, C, H, W)`` normalised images -> logits ``(B, classes)`` and attention maps."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
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
        metrics = self.metrics[f"{stage}_"]
        metrics.update(logits.detach(), labels)
        self.log_dict(metrics, prog_bar=stage != "train", batch_size=n, on_epoch=True,
                      on_step=False)
        if stage == "test":
            self.confusion.update(logits.detach(), labels)
        return loss

    # ------------------------------------------------------------------ media
    def on_test_epoch_end(self) -> None:
        self._log_confusion()
        if self.hparams.model in ATTENTION_MODELS:
            self._log_rollout()

    def _log_confusion(self) -> None:
        matrix = self.confusion.compute().cpu()  # (true, predicted)
        self.confusion.reset()
        figure = confusion_figure(matrix, self.data_info["class_names"], str(self.hparams.model))
        log_figure(self, "test/confusion_matrix", figure)

    def _log_rollout(self, count: int = 8) -> None:
        """Attention rollout over the first ``count`` test images, drawn over the images, and
        the last layer's raw per-head maps of the first image."""
        import matplotlib.pyplot as plt

        images, labels = next(iter(self.trainer.datamodule.test_dataloader()))
        images, labels = images[:count].to(self.device), labels[:count]
        logits, maps = self(images, need_weights=True)
        cls_token = self.hparams.model != "pixel" and self.hparams.pool == "cls"
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
    def predict_inputs(self, inputs: list[str], **options: Any) -> list[str]:
        """Top-3 classes with probabilities for each image file; every file is read before any
        prediction, so a file that is not an image stops the run with one
        :class:`suite.data.DataError` naming it (raised by ``load_image_file``)."""
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
