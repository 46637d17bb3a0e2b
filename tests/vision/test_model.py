"""Vision models: forward shapes, the local-attention neighbourhood, attention rollout."""

import pytest
import torch

from suite.attention import AttentionMask
from tasks.vision.model import MODELS, build_model, local_patch_mask, torchvision_vit
from tasks.vision.module import attention_rollout

SMALL = {"dim": 16, "depth": 2, "num_heads": 2, "ffn_dim": 32, "cnn_widths": (8, 16)}


@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, image_size=28, in_channels=1, num_classes=10, **SMALL)
    logits, maps = model(torch.randn(3, 1, 28, 28), need_weights=True)
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    tokens = {"vit": 49, "vit-local": 49, "pixel": 196}.get(name)
    if tokens is None:
        assert maps == []
    else:
        assert [m.shape for m in maps] == [(3, 2, tokens, tokens)] * 2
        assert torch.allclose(maps[0].sum(-1), torch.ones(3, 2, tokens), atol=1e-5)


def test_colour_input_and_class_token() -> None:
    model = build_model("vit", image_size=32, in_channels=3, num_classes=7, pool="cls", **SMALL)
    logits, maps = model(torch.randn(2, 3, 32, 32), need_weights=True)
    assert logits.shape == (2, 7) and maps[0].shape == (2, 2, 65, 65)
    peer = torchvision_vit(28, 1, 10, patch_size=4, dim=16, depth=2, num_heads=2, ffn_dim=32)
    assert peer(torch.randn(2, 1, 28, 28))[0].shape == (2, 10)


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_cnns_run_channels_last_with_unchanged_outputs(name: str) -> None:
    """NHWC is a speed choice only: weights are stored channels-last and the logits equal
    those of the same network run in the default NCHW layout."""
    torch.manual_seed(0)
    model = build_model(name, image_size=28, in_channels=1, num_classes=10, **SMALL).eval()
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
    model = build_model("vit-local", 28, 1, 10, **{**SMALL, "depth": 1}).eval()
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


def test_unknown_model_is_named() -> None:
    with pytest.raises(ValueError, match="expected one of: vit"):
        build_model("mlp", 28, 1, 10)
