"""Vision models: variants, forward shapes, the local-attention neighbourhood, rollout."""

from typing import Any

import pytest
import torch
from torch import nn

from suite.attention import AttentionMask
from suite.blocks import LayerConfig
from tasks.vision.model import (
    VARIANTS,
    PixelTransformer,
    ResidualCNN,
    VisionTransformer,
    create_model,
    local_patch_mask,
)
from tasks.vision.module import VisionModule, attention_rollout

SMALL = LayerConfig(dim=16, depth=2, num_heads=2, ffn_dim=32)


def small(name: str, image_size: int = 28, in_channels: int = 1, num_classes: int = 10,
          encoder: LayerConfig = SMALL, **options: Any) -> nn.Module:
    """A variant at test size (a 2-layer, 16-wide encoder; the CNN at 8 and 16 channels)."""
    if name == "cnn":
        options.setdefault("widths", (8, 16))
    return create_model(name, image_size, in_channels, num_classes, encoder, **options)


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = small(name)
    logits, maps = model(torch.randn(3, 1, 28, 28), need_weights=True)
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    tokens = {"vit": 49, "vit-local": 49, "pixel": 196}.get(name)
    if tokens is None:
        assert maps == []
    else:
        assert [m.shape for m in maps] == [(3, 2, tokens, tokens)] * 2
        assert torch.allclose(maps[0].sum(-1), torch.ones(3, 2, tokens), atol=1e-5)


def test_colour_input_and_class_token() -> None:
    model = small("vit", image_size=32, in_channels=3, num_classes=7, pool="cls")
    logits, maps = model(torch.randn(2, 3, 32, 32), need_weights=True)
    assert logits.shape == (2, 7) and maps[0].shape == (2, 2, 65, 65)


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_cnns_run_channels_last_with_unchanged_outputs(name: str) -> None:
    """NHWC is a speed choice only: weights are stored channels-last and the logits equal
    those of the same network run in the default NCHW layout."""
    torch.manual_seed(0)
    model = small(name).eval()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(2, 1, 28, 28)
    nhwc = model(images)[0]
    model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        nchw = model.net(images) if name == "resnet18" else model.head(
            model.features(images).mean(dim=(2, 3)))
    assert torch.allclose(nhwc, nchw, atol=1e-5)


def test_local_mask_neighbourhood_corner_and_centre() -> None:
    allowed = local_patch_mask((7, 7), kernel=3)
    assert allowed.shape == (49, 49) and torch.equal(allowed, allowed.T)

    def neighbours(row: int, col: int) -> set[tuple[int, int]]:
        return {divmod(j, 7) for j in allowed[row * 7 + col].nonzero().flatten().tolist()}

    assert neighbours(0, 0) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert neighbours(3, 3) == {(r, c) for r in (2, 3, 4) for c in (2, 3, 4)}
    assert neighbours(6, 3) == {(r, c) for r in (5, 6) for c in (2, 3, 4)}
    wide = local_patch_mask((7, 7), kernel=5, cls_token=True)
    assert wide.shape == (50, 50) and wide[0].all() and wide[:, 0].all()
    assert int(wide[1 + 3 * 7 + 3].sum()) == 1 + 25
    with pytest.raises(ValueError, match="odd kernel"):
        local_patch_mask((7, 7), kernel=2)


def test_local_vit_is_blind_beyond_its_neighbourhood() -> None:
    """One layer of 3x3-patch attention: the output at patch (0, 0) must not change when a far
    patch changes, and must change when a neighbouring patch does."""
    torch.manual_seed(0)
    model = small("vit-local", encoder=LayerConfig(dim=16, depth=1, num_heads=2, ffn_dim=32))
    model.eval()
    x = torch.randn(1, 1, 28, 28)
    mask = AttentionMask(allowed=model.allowed)

    def corner(images: torch.Tensor) -> torch.Tensor:  # encoder output at patch (0, 0)
        return model.encoder(model.tokens(images), mask)[0][0, 0]

    far, near = x.clone(), x.clone()
    far[..., 20:, 20:] += 1.0
    near[..., 4:8, 4:8] += 1.0
    assert torch.allclose(corner(far), corner(x))
    assert not torch.allclose(corner(near), corner(x))


def test_rollout_of_identity_attention_is_uniform() -> None:
    maps = [torch.eye(5).expand(2, 3, 5, 5)] * 2
    assert torch.allclose(attention_rollout(maps, cls_token=False), torch.full((2, 5), 0.2))
    cls = attention_rollout(maps, cls_token=True)
    assert cls.shape == (2, 4) and torch.allclose(cls, torch.zeros(2, 4))


def test_variants_are_keyword_sets_that_options_override() -> None:
    """vit-local is the ViT family with a 3x3 neighbourhood; a config's options override the
    variant's keywords and reach the family, and the CNNs take no encoder."""
    vit, local = small("vit"), small("vit-local")
    assert type(vit) is type(local) is VisionTransformer
    assert vit.allowed is None and torch.equal(local.allowed, local_patch_mask((7, 7), 3))
    wider = small("vit-local", local_kernel=5, patch_size=7)
    assert wider.grid == (4, 4) and torch.equal(wider.allowed, local_patch_mask((4, 4), 5))
    pixel = small("pixel", grid=7, window=3)
    assert isinstance(pixel, PixelTransformer) and (pixel.pool, pixel.window) == (4, 3)
    assert len(pixel.encoder.layers) == SMALL.depth
    cnn = small("cnn", widths=(4, 8, 16), blocks_per_stage=2)
    assert isinstance(cnn, ResidualCNN) and cnn.head[-1].in_features == 16
    with pytest.raises(ValueError, match="takes no option patch_sise; its options: patch_size"):
        small("vit", patch_sise=7)
    with pytest.raises(ValueError, match="resnet18 .* its options: none"):
        small("resnet18", widths=(8,))
    with pytest.raises(ValueError, match="expected one of: vit"):
        small("mlp")


def test_module_builds_its_variant_from_encoder_and_options() -> None:
    """The module's defaults are the default ViT; ``encoder`` sizes it, ``options`` reach the
    family, and the CNN ignores the encoder."""
    vit = VisionModule()
    assert isinstance(vit.model, VisionTransformer) and vit.model.grid == (7, 7)
    assert len(vit.model.encoder.layers) == 6 and vit.model.head.in_features == 96
    pixel = VisionModule(model="pixel", encoder=LayerConfig(dim=8, depth=1, num_heads=2),
                         options={"grid": 7})
    assert pixel.model.pool == 4 and pixel.model.head.in_features == 8
    cnn = VisionModule(model="cnn", encoder=LayerConfig(dim=8), options={"widths": [4, 8]})
    assert cnn.model.head[-1].in_features == 8
