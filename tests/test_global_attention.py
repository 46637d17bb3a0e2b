"""Global tokens on a local window (the Longformer pattern) in every attention path."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import suite.attention as attention
from suite.attention import AttentionMask, KVCache, MultiHeadAttention, attend
from suite.edge_list import EdgeList

H, D = 2, 8


def qkv(t: int, batch: int = 3, seed: int = 0, grad: bool = False) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, H, t, D, generator=g).requires_grad_(grad) for _ in range(3)]


def brute_mask(window: tuple[int, int], n_global: int, lengths: list[int], t: int
               ) -> torch.Tensor:
    """(band OR key global OR query global) AND key padding, one pair at a time."""
    out = torch.zeros(len(lengths), 1, t, t, dtype=torch.bool)
    for b, length in enumerate(lengths):
        for i in range(t):
            for j in range(t):
                near = i - window[0] <= j <= i + window[1]
                out[b, 0, i, j] = (near or i < n_global or j < n_global) and j < length
    return out


def test_dense_mask_is_the_hand_built_one():
    mask = AttentionMask(window=(1, 1), global_tokens=1, key_lengths=torch.tensor([6, 4]))
    rows = ["111111",   # the global query sees every key
            "111000",   # the others see their band and the global key 0
            "111100",
            "101110",
            "100111",
            "100011"]
    full = torch.tensor([[c == "1" for c in row] for row in rows])
    expected = torch.stack([full, full & (torch.arange(6) < 4)])[:, None]  # (2, 1, 6, 6)
    assert torch.equal(mask.dense(2, 6, 6, torch.device("cpu")), expected)


@pytest.mark.parametrize("window", [(2, 1), (0, 3), (4, 0)])
@pytest.mark.parametrize("n_global", [1, 3])
def test_dense_mask_matches_the_definition(window, n_global):
    lengths = [11, 7, 2]
    mask = AttentionMask(window=window, global_tokens=n_global, key_lengths=torch.tensor(lengths))
    expected = brute_mask(window, n_global, lengths, 11)
    assert torch.equal(mask.dense(3, 11, 11, torch.device("cpu")), expected)


def test_allowed_still_narrows_global_pairs():
    allowed = torch.rand(9, 9, generator=torch.Generator().manual_seed(1)) < 0.5
    mask = AttentionMask(window=(1, 1), global_tokens=2, allowed=allowed)
    expected = brute_mask((1, 1), 2, [9], 9) & allowed
    assert torch.equal(mask.dense(1, 9, 9, torch.device("cpu")), expected)


@pytest.mark.parametrize("t", [1, 5, 16, 37, 100])
@pytest.mark.parametrize("window", [(3, 2), (6, 0), (0, 4)])
@pytest.mark.parametrize("n_global", [0, 1, 2])
@pytest.mark.parametrize("padded", [False, True])
def test_banded_equals_explicit(t, window, n_global, padded):
    lengths = [t, (t + 1) // 2, 1] if padded else [t] * 3
    mask = AttentionMask(window=window, global_tokens=n_global,
                         key_lengths=torch.tensor(lengths) if padded else None)
    q, k, v = qkv(t, seed=t)
    expected, _ = attention.reference_attention(q, k, v, brute_mask(window, n_global, lengths, t))
    for impl in ("banded", "explicit", "fused", "auto"):
        out, _ = attend(q, k, v, mask, impl=impl)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_banded_gradients_equal_explicit():
    mask = AttentionMask(window=(4, 4), global_tokens=2, key_lengths=torch.tensor([150, 90]))
    q, k, v = qkv(150, batch=2, grad=True)
    banded, _ = attend(q, k, v, mask, impl="banded")
    grads_banded = torch.autograd.grad(banded.square().sum(), (q, k, v))
    explicit, _ = attend(q, k, v, mask, impl="explicit")
    grads_explicit = torch.autograd.grad(explicit.square().sum(), (q, k, v))
    torch.testing.assert_close(banded, explicit, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_banded, grads_explicit, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_sequence_without_keys_gives_zeros_and_finite_gradients():
    mask = AttentionMask(window=(2, 2), global_tokens=1, key_lengths=torch.tensor([40, 0]))
    q, k, v = qkv(40, batch=2, grad=True)
    out, _ = attend(q, k, v, mask, impl="banded")
    assert (out[1] == 0).all() and torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(out.sum(), (q, k, v)))


class LargestStorage(TorchDispatchMode):
    """Records the largest storage (in elements) any op writes, forward or backward."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                size = t.untyped_storage().nbytes() // t.element_size()
                self.largest = max(self.largest, size)
        return out


def largest_storage(t: int, impl: str) -> int:
    mask = AttentionMask(window=(8, 8), global_tokens=2, key_lengths=torch.tensor([t - 3]))
    q, k, v = qkv(t, batch=1, grad=True)
    with LargestStorage() as probe:
        out, _ = attend(q, k, v, mask, impl=impl)
        out.sum().backward()
    return probe.largest


def test_banded_memory_is_linear_in_length():
    # the probe sees a (T, T) mask when there is one ...
    assert largest_storage(256, "fused") >= 256 * 256
    # ... and the banded path never makes one: its largest tensor grows as T, not T^2
    short, long = largest_storage(512, "banded"), largest_storage(2048, "banded")
    assert long < 2048 * 2048 // 16
    assert long <= 4 * short


def test_auto_picks_banded_for_long_sequences(monkeypatch):
    global_mask = AttentionMask(window=(8, 8), global_tokens=1)
    assert attention._choose(global_mask, 1000, 1000, False) == "banded"
    assert attention._choose(global_mask, 20, 20, False) == "fused"
    assert attention._choose(global_mask, 1000, 1000, True) == "explicit"
    calls = []
    banded = attention.banded_attention
    monkeypatch.setattr(attention, "banded_attention",
                        lambda *a, **kw: calls.append(1) or banded(*a, **kw))
    q, k, v = qkv(300, batch=1)
    out, _ = attend(q, k, v, global_mask)
    expected, _ = attend(q, k, v, global_mask, impl="explicit")
    assert calls and torch.allclose(out, expected, atol=1e-5)


def test_global_without_window_is_full_attention():
    lengths = torch.tensor([20, 9, 3])
    q, k, v = qkv(20)
    assert AttentionMask(global_tokens=2).is_empty
    out, _ = attend(q, k, v, AttentionMask(global_tokens=2, key_lengths=lengths))
    expected, _ = attend(q, k, v, AttentionMask(key_lengths=lengths), impl="explicit")
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_a_sequence_through_the_module():
    mha = MultiHeadAttention(16, 2).eval()
    torch.manual_seed(0)
    alone, other = torch.randn(1, 70, 16), torch.randn(1, 90, 16)
    batch = torch.cat([torch.nn.functional.pad(alone, (0, 0, 0, 20)), other])
    for impl in ("banded", "explicit"):
        mask = AttentionMask(window=(3, 3), global_tokens=2)
        out_alone, _ = mha(alone, mask=mask, impl=impl)
        batched = AttentionMask(window=(3, 3), global_tokens=2, key_lengths=torch.tensor([70, 90]))
        out_batch, _ = mha(batch, mask=batched, impl=impl)
        torch.testing.assert_close(out_batch[:1, :70], out_alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("fields", "message"), [
    ({"global_tokens": -1}, "int >= 0, got -1"),
    ({"global_tokens": 1.5}, "int >= 0, got 1.5"),
    ({"global_tokens": 1, "causal": True}, "not causal"),
    ({"global_tokens": 1, "window": (2, 2), "chunk": 4}, "not chunk"),
    ({"global_tokens": 1, "edges": EdgeList(torch.tensor([[0], [1]]))}, "not edges"),
    ({"global_tokens": 1, "window": (2, 2), "query_offset": 3}, "key/value cache"),
])
def test_invalid_global_tokens_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        AttentionMask(**fields)


def test_global_tokens_refused_when_decoding_with_a_cache():
    mha, cache = MultiHeadAttention(16, 2).eval(), KVCache()
    mask = AttentionMask(window=(2, 0), global_tokens=1)
    mha(torch.randn(1, 3, 16), mask=mask, cache=cache)
    with pytest.raises(ValueError, match="key/value cache"):
        mha(torch.randn(1, 1, 16), mask=mask, cache=cache)
