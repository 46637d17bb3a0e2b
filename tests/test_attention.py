"""The attention core against a plain reference, across every mask kind and implementation."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from suite.attention import AttentionMask, MultiHeadAttention, attend, reference_attention
from suite.edge_list import EdgeList

B, H, T, D = 3, 2, 37, 8


def qkv(t: int = T, batch: int = B, seed: int = 0, grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, H, t, D, generator=g).requires_grad_(grad) for _ in range(3)]


def brute_mask(mask: AttentionMask, batch: int, tq: int, tk: int) -> torch.Tensor:
    """The allowed matrix from the definitions, one pair at a time."""
    out = torch.ones(batch, 1, tq, tk, dtype=torch.bool)
    for b in range(batch):
        for i in range(tq):
            p = i + mask.query_offset
            for j in range(tk):
                ok = True
                if mask.key_lengths is not None:
                    ok &= j < int(mask.key_lengths[b])
                if mask.causal:
                    ok &= j <= p
                if mask.window is not None:
                    ok &= p - mask.window[0] <= j <= p + mask.window[1]
                if mask.chunk is not None:
                    ok &= 0 <= p // mask.chunk - j // mask.chunk <= mask.chunk_history
                out[b, 0, i, j] = ok
    if mask.allowed is not None:
        out = out & mask.allowed.view(batch, 1, tq, tk)
    return out


LENGTHS = torch.tensor([37, 20, 1])
ADJ = torch.rand(B, T, T, generator=torch.Generator().manual_seed(3)) < 0.2
MASKS = {
    "none": AttentionMask(),
    "padding": AttentionMask(key_lengths=LENGTHS),
    "causal": AttentionMask(causal=True),
    "causal+padding": AttentionMask(causal=True, key_lengths=LENGTHS),
    "window": AttentionMask(window=(3, 2)),
    "window+padding": AttentionMask(window=(4, 4), key_lengths=LENGTHS),
    "window-left-only": AttentionMask(window=(5, 0)),
    "window+causal": AttentionMask(window=(6, 6), causal=True),
    "chunk": AttentionMask(chunk=8),
    "chunk+history": AttentionMask(chunk=5, chunk_history=2, key_lengths=LENGTHS),
    "chunk+window": AttentionMask(chunk=8, chunk_history=3, window=(10, 10)),
    "allowed": AttentionMask(allowed=ADJ),
    "allowed+padding": AttentionMask(allowed=ADJ, key_lengths=LENGTHS),
}


@pytest.mark.parametrize("name", MASKS)
@pytest.mark.parametrize("impl", ["fused", "explicit", "auto"])
def test_matches_reference_for_every_mask(name, impl):
    mask = MASKS[name]
    q, k, v = qkv()
    expected, _ = reference_attention(q, k, v, brute_mask(mask, B, T, T))
    out, _ = attend(q, k, v, mask, impl=impl)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", [n for n, m in MASKS.items() if m.is_banded and m.allowed is None])
def test_banded_path_equals_dense_band(name):
    mask = MASKS[name]
    q, k, v = qkv(t=T)
    dense, _ = attend(q, k, v, mask, impl="fused")
    banded, _ = attend(q, k, v, mask, impl="banded")
    torch.testing.assert_close(banded, dense, atol=1e-5, rtol=1e-5)


def test_banded_path_long_sequence_and_gradients():
    mask = AttentionMask(window=(32, 32), key_lengths=torch.tensor([300, 170]))
    q, k, v = qkv(t=300, batch=2, grad=True)
    banded, _ = attend(q, k, v, mask, impl="banded")
    grads_banded = torch.autograd.grad(banded.square().sum(), (q, k, v))
    dense, _ = attend(q, k, v, mask, impl="fused")
    grads_dense = torch.autograd.grad(dense.square().sum(), (q, k, v))
    torch.testing.assert_close(banded, dense, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_banded, grads_dense, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_auto_picks_banded_for_long_windows():
    from suite.attention import _choose

    assert _choose(AttentionMask(window=(8, 8)), 1000, 1000, False) == "banded"
    assert _choose(AttentionMask(window=(8, 8)), 20, 20, False) == "fused"
    assert _choose(AttentionMask(window=(8, 8)), 1000, 1000, True) == "explicit"


def test_additive_bias_matches_reference():
    q, k, v = qkv()
    bias = torch.randn(B, H, T, T)
    mask = AttentionMask(bias=bias, key_lengths=LENGTHS)
    expected, _ = reference_attention(q, k, v, brute_mask(mask, B, T, T), bias)
    for impl in ("fused", "explicit"):
        out, _ = attend(q, k, v, mask, impl=impl)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_explicit_path_returns_normalised_weights():
    q, k, v = qkv()
    _, weights = attend(q, k, v, MASKS["window+padding"], need_weights=True)
    sums = weights.sum(-1)
    has_key = brute_mask(MASKS["window+padding"], B, T, T).any(-1).expand_as(sums)
    torch.testing.assert_close(sums[has_key], torch.ones(int(has_key.sum())))
    assert (sums[~has_key] == 0).all()


@pytest.mark.parametrize("impl", ["fused", "banded", "explicit"])
def test_fully_masked_rows_are_zero_and_gradients_finite(impl):
    # Sequence 2 has one valid key: padded queries far from it have an empty window.
    mask = AttentionMask(window=(2, 2), key_lengths=torch.tensor([37, 20, 1]))
    q, k, v = qkv(grad=True)
    out, _ = attend(q, k, v, mask, impl=impl)
    assert torch.isfinite(out).all()
    assert (out[2, :, 5:] == 0).all()  # rows whose window holds no valid key
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)


def test_matches_torch_multihead_attention():
    torch.manual_seed(0)
    dim, heads = 16, 4
    ours = MultiHeadAttention(dim, heads)
    theirs = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight,
                                               ours.v_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias,
                                             ours.v_proj.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 11, dim)
    lengths = torch.tensor([11, 7])
    padding = torch.arange(11)[None] >= lengths[:, None]
    causal = torch.triu(torch.ones(11, 11, dtype=torch.bool), 1)
    out, weights = ours(x, mask=AttentionMask(key_lengths=lengths, causal=True), need_weights=True)
    ref, ref_weights = theirs(x, x, x, key_padding_mask=padding, attn_mask=causal,
                              average_attn_weights=False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)
    # Cross-attention to a memory of another length.
    memory = torch.randn(2, 5, dim)
    out, _ = ours(x, memory)
    ref, _ = theirs(x, memory, memory)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


PADDING_INVARIANCE_MASKS = {
    "full": lambda lengths: AttentionMask(key_lengths=lengths),
    "window": lambda lengths: AttentionMask(key_lengths=lengths, window=(3, 3)),
    "causal": lambda lengths: AttentionMask(key_lengths=lengths, causal=True),
    "chunk": lambda lengths: AttentionMask(key_lengths=lengths, chunk=4, chunk_history=1),
}


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 40), extra=st.integers(1, 30),
       kind=st.sampled_from(sorted(PADDING_INVARIANCE_MASKS)),
       impl=st.sampled_from(["auto", "fused", "explicit"]))
def test_padding_invariance(length, extra, kind, impl):
    """A sequence's outputs are the same alone or batched with a longer one."""
    torch.manual_seed(length)
    mha = MultiHeadAttention(16, 4).eval()
    alone = torch.randn(1, length, 16)
    other = torch.randn(1, length + extra, 16)
    batch = torch.cat([torch.nn.functional.pad(alone, (0, 0, 0, extra)), other])
    make = PADDING_INVARIANCE_MASKS[kind]
    out_alone, _ = mha(alone, mask=make(torch.tensor([length])), impl=impl)
    out_batch, _ = mha(batch, mask=make(torch.tensor([length, length + extra])), impl=impl)
    torch.testing.assert_close(out_batch[:1, :length], out_alone, atol=1e-5, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(nodes=st.lists(st.integers(1, 12), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_padding_invariance_graph_masks(nodes, seed):
    """Graphs of different sizes batched with adjacency masks give each graph's own result."""
    g = torch.Generator().manual_seed(seed)
    mha = MultiHeadAttention(16, 2).eval()
    n_max = max(nodes)
    feats = [torch.randn(1, n, 16, generator=g) for n in nodes]
    adjs = [(torch.rand(n, n, generator=g) < 0.4) | torch.eye(n, dtype=torch.bool)
            for n in nodes]
    batch = torch.cat([torch.nn.functional.pad(f, (0, 0, 0, n_max - f.shape[1])) for f in feats])
    allowed = torch.zeros(len(nodes), n_max, n_max, dtype=torch.bool)
    for i, (n, adj) in enumerate(zip(nodes, adjs, strict=True)):
        allowed[i, :n, :n] = adj
    out, _ = mha(batch, mask=AttentionMask(allowed=allowed))
    for i, (n, f, adj) in enumerate(zip(nodes, feats, adjs, strict=True)):
        alone, _ = mha(f, mask=AttentionMask(allowed=adj[None]))
        torch.testing.assert_close(out[i:i + 1, :n], alone, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_runs_every_path():
    q, k, v = qkv(t=200)
    mask = AttentionMask(window=(8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for impl in ("fused", "banded", "explicit"):
            out, _ = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, impl=impl)
            assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.parametrize("keys", [49, 300])
def test_bf16_on_cpu_attends_short_spans_in_fp32(keys, monkeypatch):
    # short spans go through the fp32 kernel (faster on CPU), long ones stay bf16; either
    # way the result is the fp32 reference to bf16 precision, in bf16, with gradients
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, *a, **kw: seen.append(q.dtype) or sdpa(q, *a, **kw))
    q, k, v = qkv(t=keys)
    bias = torch.randn(1, 1, keys, keys)
    for mask in (AttentionMask(), AttentionMask(bias=bias)):
        low = [t.bfloat16().requires_grad_() for t in (q, k, v)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = attend(*low, mask, impl="fused")
        out.float().sum().backward()
        expected, _ = reference_attention(q, k, v, None, mask.bias)
        assert out.dtype == torch.bfloat16 and low[0].grad is not None
        torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
    assert set(seen) == {torch.float32 if keys <= 256 else torch.bfloat16}


# A directed graph on 6 nodes: node 5 has no incoming edge, node 2 a self-loop.
EDGES = torch.tensor([[0, 1, 1, 2, 3, 4, 2, 0], [1, 0, 2, 3, 1, 0, 2, 4]])


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_edge_list_equals_dense_masked_attention(impl):
    """Query i sees key j iff j -> i: the edge list, with its per-edge bias, is the dense mask
    ``allowed = A^T`` with the bias on those pairs; a node without incoming edges gets 0."""
    n = 6
    q, k, v = qkv(t=n, batch=1, grad=True)
    bias = torch.randn(EDGES.shape[1], H)
    out, weights = attend(q, k, v, AttentionMask(edges=EdgeList(EDGES, bias)),
                          need_weights=True)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    allowed[EDGES[1], EDGES[0]] = True  # (query = target, key = source)
    dense_bias = torch.zeros(1, H, n, n)
    dense_bias[0, :, EDGES[1], EDGES[0]] = bias.T
    dense = [t.detach().requires_grad_() for t in (q, k, v)]
    expected, expected_weights = attend(*dense, AttentionMask(allowed=allowed, bias=dense_bias),
                                        need_weights=True, impl=impl)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert (out[0, :, 5] == 0).all()
    if impl == "explicit":
        torch.testing.assert_close(weights, expected_weights[0][:, EDGES[1], EDGES[0]].T)
    out.sum().backward()
    expected.sum().backward()
    for ours, theirs in zip((q, k, v), dense, strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-5, rtol=1e-5)


def test_edge_list_adds_each_edges_vector_to_its_key_and_value():
    """out_i = sum_j softmax_j(q_i . (k_j + e_ij) / sqrt(d) + b_ij) (v_j + e_ij), written out."""
    n = 6
    q, k, v = qkv(t=n, batch=1)
    bias, kv = torch.randn(EDGES.shape[1], H), torch.randn(EDGES.shape[1], H * D)
    out, weights = attend(q, k, v, AttentionMask(edges=EdgeList(EDGES, bias, kv)),
                          need_weights=True)
    e = kv.view(-1, H, D)
    for i in range(n):
        incoming = (EDGES[1] == i).nonzero().flatten()
        if len(incoming) == 0:
            assert (out[0, :, i] == 0).all()
            continue
        keys = k[0].transpose(0, 1)[EDGES[0, incoming]] + e[incoming]  # (in-degree, H, D)
        values = v[0].transpose(0, 1)[EDGES[0, incoming]] + e[incoming]
        logits = (q[0, :, i] * keys).sum(-1) / D**0.5 + bias[incoming]  # (in-degree, H)
        alpha = torch.softmax(logits, dim=0)
        torch.testing.assert_close(out[0, :, i], (alpha[..., None] * values).sum(0))
        torch.testing.assert_close(weights[incoming], alpha)


def test_edge_list_through_multi_head_attention_and_its_limits():
    attention = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 6, 8)
    mask = AttentionMask(edges=EdgeList(EDGES))
    out, weights = attention(x, mask=mask)
    assert out.shape == (1, 6, 8) and weights is None
    assert attention(x, mask=mask, need_weights=True)[1].shape == (EDGES.shape[1], 2)
    with pytest.raises(ValueError, match="whole mask"):
        attention(x, mask=AttentionMask(edges=EdgeList(EDGES), causal=True))
    with pytest.raises(ValueError, match="one implementation"):
        attention(x, mask=mask, impl="fused")
    with pytest.raises(ValueError, match="batch size 1"):
        attention(x.expand(2, -1, -1), mask=mask)


def test_asked_for_weights_are_fp32_under_autocast():
    """Weights feed losses and metrics (guided attention): computed and returned in fp32."""
    q, k, v = (torch.randn(1, 2, 5, 8, dtype=torch.bfloat16) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, weights = attend(q, k, v, need_weights=True)
    assert weights.dtype == torch.float32 and out.dtype == torch.bfloat16
    expected = torch.softmax(q.float() @ k.float().transpose(-2, -1) / 8 ** 0.5, dim=-1)
    torch.testing.assert_close(weights, expected)
