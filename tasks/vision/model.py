"""Image classifiers: patch and pixel self-attention from the shared core, and CNN peers.

The lecture's view of an image as a *set of vectors*:

- :class:`VisionTransformer` (``vit``): non-overlapping p x p patches, each flattened and
  projected to a ``dim``-vector (a convolution with kernel = stride = p), plus a 2-D position;
  every patch attends to every other one. Pooled by the mean of all tokens or a class token.
- ``vit-local``: the same network, but each patch attends only to its k x k neighbourhood of
  patches (:func:`local_patch_mask` as the core's ``allowed`` mask) - self-attention with a
  CNN's receptive field, which grows by k - 1 patches per layer as a CNN's does.
- :class:`PixelTransformer` (``pixel``): one token per pixel of a downsampled image; full
  attention would cost O((HW)^2), so a raster-order window (the core's ``window``, served by its
  banded path) lets each pixel see about one row above and below.
- :class:`ResidualCNN` (``cnn``): a small ResNet-style CNN - local weight-shared filters.
- :func:`resnet18_28` (``resnet18``): torchvision's ResNet-18 with a 3x3 stem and no max-pool.

Each name is a variant (timm style): a family and the keyword arguments that make it, in
:data:`VARIANTS`; :func:`create_model` builds one, a config's keywords overriding the variant's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from suite.attention import AttentionMask
from suite.blocks import LayerConfig, TransformerEncoder
from suite.positional import PatchPositionalEncoding2D

Pool = Literal["mean", "cls"]


def local_patch_mask(grid: tuple[int, int], kernel: int, cls_token: bool = False) -> Tensor:
    """Bool ``(T, T)``: patch (r, c) may attend to (r', c') iff |r - r'| and |c - c'| are both
    at most ``kernel // 2`` - a k x k neighbourhood, cut off at the image border.

    Tokens are the row-major patches, after a leading class token if ``cls_token``; the class
    token sees and is seen by every patch (it pools, it does not look locally).
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"local attention needs an odd kernel >= 1, got {kernel}")
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()  # (N,) each, row-major
    reach = kernel // 2
    allowed = (((rows[:, None] - rows[None, :]).abs() <= reach)
               & ((cols[:, None] - cols[None, :]).abs() <= reach))  # (N, N)
    if cls_token:
        allowed = F.pad(allowed, (1, 0, 1, 0), value=True)  # (N + 1, N + 1)
    return allowed


class VisionTransformer(nn.Module):
    """ViT: patch embedding -> 2-D positions -> Transformer encoder -> pool -> linear head.

    Args:
        image_size / in_channels / num_classes: the data's geometry.
        encoder: the Transformer encoder's size.
        patch_size: side p of the square patches; the image side must be a multiple of p.
        pool: ``mean`` of the patch tokens or a learned ``cls`` token.
        local_kernel: k for k x k local attention (``vit-local``); None attends globally.
        learned_positions: learned 2-D position table instead of the fixed sinusoidal one.
    """

    def __init__(self, image_size: int, in_channels: int, num_classes: int,
                 encoder: LayerConfig, patch_size: int = 4, pool: Pool = "mean",
                 local_kernel: int | None = None, learned_positions: bool = False) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of patch {patch_size}")
        side = image_size // patch_size
        self.grid = (side, side)
        dim = encoder.dim
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.positions = PatchPositionalEncoding2D(self.grid, dim, learned=learned_positions)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.encoder = TransformerEncoder(encoder)
        self.head = nn.Linear(dim, num_classes)
        allowed = None if local_kernel is None else local_patch_mask(
            self.grid, local_kernel, pool == "cls")
        self.register_buffer("allowed", allowed, persistent=False)
        self.apply(_init_weights)

    def tokens(self, images: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, T, dim)``: T = patches (+ 1 leading class token)."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, N, dim)
        x = self.positions(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1).to(x.dtype), x], dim=1)
        return x

    def forward(self, images: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Logits ``(B, classes)`` and, if asked, each layer's weights ``(B, heads, T, T)``."""
        mask = None if self.allowed is None else AttentionMask(allowed=self.allowed)
        x, maps = self.encoder(self.tokens(images), mask, need_weights)  # (B, T, dim)
        pooled = x[:, 0] if self.cls_token is not None else x.mean(dim=1)
        return self.head(pooled), maps


class PixelTransformer(nn.Module):
    """Self-attention over the pixels of an average-pooled image, each pixel one token.

    The image is pooled to ``grid x grid`` pixels; each pixel's channel vector is projected to
    ``encoder.dim`` and given its 2-D position. Attention is a raster-order window of +- ``window``
    tokens (default ``grid``: the pixel directly above and below and everything in between), so
    cost grows as O(HW * window) rather than O((HW)^2). Mean-pooled, then a linear head.
    """

    def __init__(self, image_size: int, in_channels: int, num_classes: int,
                 encoder: LayerConfig, grid: int = 14, window: int | None = None) -> None:
        super().__init__()
        if image_size % grid:
            raise ValueError(f"image size {image_size} is not a multiple of the grid {grid}")
        self.pool = image_size // grid
        self.window = window or grid
        self.embed = nn.Linear(in_channels, encoder.dim)
        self.positions = PatchPositionalEncoding2D((grid, grid), encoder.dim)
        self.encoder = TransformerEncoder(encoder)
        self.head = nn.Linear(encoder.dim, num_classes)
        self.apply(_init_weights)

    def forward(self, images: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Logits ``(B, classes)`` and, if asked, each layer's weights ``(B, heads, T, T)``."""
        pixels = F.avg_pool2d(images, self.pool).flatten(2).transpose(1, 2)  # (B, grid^2, C)
        x = self.positions(self.embed(pixels))  # (B, T, dim)
        mask = AttentionMask(window=(self.window, self.window))
        x, maps = self.encoder(x, mask, need_weights)
        return self.head(x.mean(dim=1)), maps


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the input (1x1 strided projection when shapes change)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.skip = nn.Identity() if stride == 1 and in_channels == out_channels else (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                          nn.BatchNorm2d(out_channels)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ResidualCNN(nn.Module):
    """A small ResNet: 3x3 stem, then one residual block per stage at ``widths`` channels
    (the spatial size halves at each stage after the first), global average pool, linear.

    Every filter sees a 3x3 window: the receptive field grows by 2 pixels per conv, the
    locality that :func:`local_patch_mask` gives self-attention. Weights and activations are
    kept channels-last (NHWC), which oneDNN's bf16 CPU convolutions run faster.
    """

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = (32, 64, 128),
                 blocks_per_stage: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        previous = widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks_per_stage):
                layers.append(ResidualBlock(previous, width, 2 if i > 0 and j == 0 else 1))
                previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(previous, num_classes))
        self.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Logits ``(B, classes)``; a CNN has no attention maps, so the list is empty."""
        images = images.contiguous(memory_format=torch.channels_last)
        features = self.features(images).mean(dim=(2, 3))  # (B, widths[-1])
        return self.head(features), []


class TorchvisionClassifier(nn.Module):
    """Wraps a torchvision classifier in the ``(logits, maps)`` interface of the others;
    ``channels_last`` runs a CNN in NHWC like :class:`ResidualCNN`."""

    def __init__(self, net: nn.Module, channels_last: bool = False) -> None:
        super().__init__()
        self.net = net
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, images: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        return self.net(images.contiguous(memory_format=self.memory_format)), []


def resnet18_28(in_channels: int, num_classes: int) -> TorchvisionClassifier:
    """torchvision ResNet-18 (random init) for small images: a 3x3 stride-1 stem and no
    max-pool, so a 28x28 input keeps 28x28 in the first stage instead of shrinking to 7x7."""
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return TorchvisionClassifier(net, channels_last=True)


def _init_weights(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) linear/conv weights and zero biases, as in ViT."""
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# name -> (family, the keyword arguments that make the variant).
VARIANTS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "vit": (VisionTransformer, {}),
    "vit-local": (VisionTransformer, {"local_kernel": 3}),
    "pixel": (PixelTransformer, {}),
    "cnn": (ResidualCNN, {}),
    "resnet18": (resnet18_28, {}),
}
CNNS = (ResidualCNN, resnet18_28)


def family_options(family: Callable[..., nn.Module]) -> list[str]:
    """A family's options: its keyword arguments with defaults (the geometry has none)."""
    return [p.name for p in inspect.signature(family).parameters.values()
            if p.default is not p.empty]


def create_model(name: str, image_size: int, in_channels: int, num_classes: int,
                 encoder: LayerConfig, **options: Any) -> nn.Module:
    """The variant ``name`` of :data:`VARIANTS` for the data's geometry, ``options`` overriding
    its keyword arguments. Attention families take ``encoder``; the CNNs have none and take
    any image size. Every model maps images to ``(logits, maps)``.

    Raises ValueError naming the valid choices for an unknown variant or option.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown vision model {name!r}; expected one of: {', '.join(VARIANTS)}")
    family, kwargs = VARIANTS[name]
    valid = family_options(family)
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise ValueError(f"{name} ({family.__name__}) takes no option {', '.join(unknown)}; "
                         f"its options: {', '.join(valid) or 'none'}")
    kwargs = {**kwargs, **options}
    if family in CNNS:
        return family(in_channels, num_classes, **kwargs)
    return family(image_size, in_channels, num_classes, encoder, **kwargs)
