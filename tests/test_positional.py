"""Positional encodings: the properties the lecture and the papers rely on."""

import torch

from suite.positional import (
    LearnedPositionalEmbedding,
    PatchPositionalEncoding2D,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_2d,
    sinusoidal_table,
)


def test_sinusoidal_shift_is_a_fixed_linear_map():
    """PE(pos + k) = PE(pos) M_k with one M_k for every pos: a 2x2 rotation by k * w_i on each
    (sin, cos) pair, which is why relative offsets are easy for attention to read."""
    dim, k = 32, 7
    table = sinusoidal_table(300, dim)
    inv_freq = 10000 ** (-torch.arange(0, dim, 2) / dim)
    rotation = torch.zeros(dim, dim)
    for i, w in enumerate(inv_freq.tolist()):
        c, s = torch.cos(torch.tensor(k * w)), torch.sin(torch.tensor(k * w))
        # [sin(a+b), cos(a+b)] = [sin a, cos a] @ [[cos b, -sin b], [sin b, cos b]]
        rotation[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, -s], [s, c]])
    torch.testing.assert_close(table[:-k] @ rotation, table[k:], atol=1e-4, rtol=0)


def test_sinusoidal_values_match_the_paper():
    table = sinusoidal_table(10, 8)
    pos, i = 3, 1
    assert abs(table[pos, 2 * i] - torch.sin(torch.tensor(pos / 10000 ** (2 * i / 8)))) < 1e-6
    assert abs(table[pos, 2 * i + 1] - torch.cos(torch.tensor(pos / 10000 ** (2 * i / 8)))) < 1e-6


def test_sinusoidal_module_offset_and_growth():
    pe = SinusoidalPositionalEncoding(16, max_len=8)
    x = torch.zeros(1, 20, 16)
    full = pe(x)  # grows past max_len
    torch.testing.assert_close(pe(x[:, 5:9], offset=5), full[:, 5:9])


def test_learned_embedding_limits_length():
    pe = LearnedPositionalEmbedding(8, max_len=4)
    assert pe(torch.zeros(2, 4, 8)).shape == (2, 4, 8)
    try:
        pe(torch.zeros(1, 5, 8))
    except ValueError as err:
        assert "exceeds" in str(err)
    else:
        raise AssertionError("expected a ValueError")


def test_2d_encoding_separates_rows_and_columns():
    table = sinusoidal_2d(3, 4, 16).view(3, 4, 16)
    assert torch.equal(table[0, :, :8], table[0, :1, :8].expand(4, 8))  # same row, same half
    assert torch.equal(table[:, 2, 8:], table[:1, 2, 8:].expand(3, 8))  # same column
    assert PatchPositionalEncoding2D((3, 4), 16)(torch.zeros(2, 12, 16)).shape == (2, 12, 16)


def test_rotary_logits_depend_on_offset_only():
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    logits = [(rope(q, p) * rope(k, p + 5)).sum() for p in (0, 3, 40)]
    torch.testing.assert_close(torch.stack(logits), logits[0].expand(3), atol=1e-4, rtol=1e-4)


def test_relative_bias_shape_and_clipping():
    bias = RelativePositionBias(num_heads=2, max_distance=3)
    with torch.no_grad():
        bias.bias.weight.copy_(torch.arange(7.0)[:, None].expand(7, 2))
    out = bias(5, 9)
    assert out.shape == (1, 2, 5, 9)
    assert out[0, 0, 0, 8] == 6 and out[0, 0, 4, 0] == 0  # clipped at +-3
    assert out[0, 0, 2, 3] == 4  # offset +1
