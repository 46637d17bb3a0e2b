"""Encoder/decoder blocks: norm placement, masks, and incremental decoding."""

from dataclasses import replace

import pytest
import torch

from suite.attention import AttentionMask
from suite.blocks import (
    DecoderLayer,
    EncoderLayer,
    LayerConfig,
    TransformerDecoder,
    TransformerEncoder,
)
from suite.positional import RotaryEmbedding

CONFIG = LayerConfig(dim=32, num_heads=4, ffn_dim=64, dropout=0.0)


@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("norm_first", [True, False])
def test_incremental_decoding_equals_full_decoding(norm_first, rotary):
    torch.manual_seed(0)
    config = LayerConfig(dim=32, num_heads=4, ffn_dim=64, dropout=0.0, norm_first=norm_first)
    decoder = TransformerDecoder(replace(config, depth=3),
                                 rotary=RotaryEmbedding(8) if rotary else None)
    decoder.eval()
    memory = torch.randn(2, 9, 32)
    memory_mask = AttentionMask(key_lengths=torch.tensor([9, 4]))
    x = torch.randn(2, 7, 32)
    full, _ = decoder(x, memory, memory_mask=memory_mask)
    cache = decoder.new_cache()
    steps = [decoder(x[:, t:t + 1], memory, memory_mask=memory_mask, cache=cache)[0]
             for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_decoder_cache_accepts_several_steps_at_once():
    torch.manual_seed(1)
    decoder = TransformerDecoder(replace(CONFIG, depth=2)).eval()
    memory, x = torch.randn(1, 5, 32), torch.randn(1, 6, 32)
    full, _ = decoder(x, memory)
    cache = decoder.new_cache()
    first, _ = decoder(x[:, :4], memory, cache=cache)
    rest, _ = decoder(x[:, 4:], memory, cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=1e-5)


def test_decoder_is_causal():
    torch.manual_seed(2)
    decoder = TransformerDecoder(replace(CONFIG, depth=2)).eval()
    memory, x = torch.randn(1, 5, 32), torch.randn(1, 6, 32)
    out, _ = decoder(x, memory)
    changed = x.clone()
    # random, not a constant shift: LayerNorm removes a shift of every feature, so a pre-norm
    # stack would map x + 1 to (almost) the same output and the check would rest on rounding
    changed[:, 4:] += torch.randn(1, 2, 32)
    out2, _ = decoder(changed, memory)
    torch.testing.assert_close(out[:, :4], out2[:, :4])
    assert not torch.allclose(out[:, 4:], out2[:, 4:])


def test_decoder_returns_cross_attention_maps():
    decoder = TransformerDecoder(replace(CONFIG, depth=2)).eval()
    _, maps = decoder(torch.randn(2, 3, 32), torch.randn(2, 5, 32), need_weights=True)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 3, 5)


def test_decoder_takes_one_memory_mask_per_layer():
    torch.manual_seed(8)
    decoder = TransformerDecoder(replace(CONFIG, depth=2)).eval()
    x, memory = torch.randn(1, 3, 32), torch.randn(1, 6, 32)
    first = AttentionMask(allowed=torch.tensor([[True, True, False, False, False, False]] * 3))
    everything = AttentionMask(key_lengths=torch.tensor([6]))
    out, maps = decoder(x, memory, memory_mask=[first, everything], need_weights=True)
    assert float(maps[0][..., 2:].abs().max()) == 0.0 and float(maps[1][..., 2:].min()) > 0
    h, _ = decoder.layers[0](x, memory, memory_mask=first)
    h, _ = decoder.layers[1](h, memory, memory_mask=everything)
    torch.testing.assert_close(out, decoder.norm(h))
    with pytest.raises(ValueError):
        decoder(x, memory, memory_mask=[first])


def test_pre_and_post_norm_differ_in_where_layernorm_sits():
    torch.manual_seed(3)
    x = torch.randn(2, 6, 32) * 5 + 3
    post = EncoderLayer(LayerConfig(dim=32, num_heads=4, ffn_dim=64, dropout=0.0,
                                    norm_first=False)).eval()
    out, _ = post(x)
    # Post-norm ends in LayerNorm: every position is normalised.
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
    pre = EncoderLayer(CONFIG).eval()
    out, _ = pre(x)
    assert out.mean(-1).abs().max() > 0.1  # pre-norm keeps the residual stream's scale


def test_encoder_padding_invariance_and_maps():
    torch.manual_seed(4)
    encoder = TransformerEncoder(replace(CONFIG, depth=2)).eval()
    x = torch.randn(2, 10, 32)
    mask = AttentionMask(key_lengths=torch.tensor([10, 6]), window=(2, 2))
    out, maps = encoder(x, mask, need_weights=True)
    alone, _ = encoder(x[1:, :6], AttentionMask(key_lengths=torch.tensor([6]), window=(2, 2)))
    torch.testing.assert_close(out[1:, :6], alone, atol=1e-5, rtol=1e-5)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 10, 10)
    assert (maps[0][:, :, 0, 3:] == 0).all()  # outside the (2, 2) window


class Recorder(torch.nn.Module):
    """A per-layer module that doubles its input and remembers what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Linear(1, 1)  # draws random numbers, as a real one would
        self.seen: list = []

    def forward(self, x, mask):
        self.seen.append((x, mask))
        return 2 * x


def test_per_layer_modules_run_after_each_layer_with_its_mask():
    torch.manual_seed(5)
    encoder = TransformerEncoder(replace(CONFIG, depth=2), extra=Recorder).eval()
    x, mask = torch.randn(2, 6, 32), AttentionMask(window=(1, 1))
    out, _ = encoder(x, mask)
    h, _ = encoder.layers[0](x, mask)
    (seen, seen_mask), = encoder.extras[0].seen
    torch.testing.assert_close(seen, h)
    assert seen_mask is mask
    h, _ = encoder.layers[1](2 * h, mask)
    torch.testing.assert_close(out, encoder.norm(2 * h))


def test_per_layer_modules_leave_the_layers_alone():
    """They are built and registered after every layer: the layers draw the same weights,
    and the parameters come in the same order, as in a stack without them."""
    torch.manual_seed(6)
    plain = TransformerEncoder(replace(CONFIG, depth=3))
    torch.manual_seed(6)
    with_extras = TransformerEncoder(replace(CONFIG, depth=3), extra=Recorder)
    names = [n for n, _ in with_extras.named_parameters()]
    layers = [n for n in names if not n.startswith("extras.")]
    assert layers == [n for n, _ in plain.named_parameters()]
    assert names == [*layers[:-2], *(n for n in names if n.startswith("extras.")), *layers[-2:]]
    assert all(torch.equal(v, plain.state_dict()[k])
               for k, v in with_extras.state_dict().items() if k in plain.state_dict())


def test_encoder_takes_one_mask_per_layer():
    torch.manual_seed(7)
    encoder = TransformerEncoder(replace(CONFIG, depth=2)).eval()
    x = torch.randn(1, 8, 32)
    narrow, wide = AttentionMask(window=(1, 1)), AttentionMask(window=(4, 4))
    out, _ = encoder(x, [narrow, wide])
    h, _ = encoder.layers[0](x, narrow)
    h, _ = encoder.layers[1](h, wide)
    torch.testing.assert_close(out, encoder.norm(h))
    with pytest.raises(ValueError):
        encoder(x, [narrow])


@pytest.mark.parametrize("layer,renames", [
    (EncoderLayer(CONFIG), {"norm1.": "attention_block.norm.", "norm2.": "ffn_block.norm."}),
    (DecoderLayer(CONFIG), {"norm1.": "self_block.norm.", "norm2.": "cross_block.norm.",
                            "norm3.": "ffn_block.norm."})])
def test_layers_load_checkpoints_with_the_former_norm_names(layer, renames):
    state = {k: torch.randn_like(v) for k, v in layer.state_dict().items()}
    former = {}
    for key, value in state.items():
        for new, old in renames.items():
            key = key.replace(new, old) if key.startswith(new) else key
        former[key] = value
    assert former.keys() != state.keys()
    wrapped = torch.nn.Sequential(layer)  # keys below a prefix, as inside a model
    wrapped.load_state_dict({f"0.{k}": v for k, v in former.items()})
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in state.items())


def test_run_layers_in_two_parts_is_the_whole_stack_without_the_norm() -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(LayerConfig(dim=16, depth=3, num_heads=2, ffn_dim=32,
                                             dropout=0.0)).eval()
    x = torch.randn(2, 5, 16)
    middle, _ = encoder.run_layers(x, stop=1)
    rest, _ = encoder.run_layers(middle, start=1)
    whole, _ = encoder(x)
    torch.testing.assert_close(encoder.norm(rest), whole)
    torch.testing.assert_close(middle, encoder.layers[0](x, None)[0])
