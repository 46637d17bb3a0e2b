"""The TTS model: teacher forcing, incremental decoding, and the monotonic window."""

import torch

from suite.blocks import LayerConfig
from tasks.tts.model import TransformerTTS
from tasks.tts.synthesis import (
    Synthesis,
    expected_frames,
    generate,
    generate_by_phrase,
    next_peak,
    phrase_spans,
    utterance_generators,
    window_masks,
)

SMALL = LayerConfig(dim=32, depth=2, num_heads=2, ffn_dim=64, dropout=0.0)


def _model(prenet_dropout: float = 0.0) -> TransformerTTS:
    torch.manual_seed(0)
    return TransformerTTS(12, SMALL, SMALL, n_mels=8, reduction=4, conv_layers=1,
                          postnet_layers=2, prenet_dropout=prenet_dropout).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tokens = torch.tensor([[3, 4, 5, 6, 1], [7, 8, 1, 0, 0]])
    return tokens, torch.tensor([5, 3]), torch.randn(2, 24, 8)


def test_decoder_inputs_feed_the_last_frame_of_the_previous_step() -> None:
    model = _model()
    mel = torch.arange(16.0).view(1, 16, 1).expand(1, 16, 8)
    fed = model.decoder_inputs(mel)[0, :, 0]
    assert fed.tolist() == [0.0, 3.0, 7.0, 11.0]  # frames r-1::r, shifted right, zero first


def test_shapes_of_a_teacher_forced_pass() -> None:
    tokens, lengths, mel = _batch()
    before, after, stop, maps = _model()(tokens, lengths, mel)
    assert before.shape == after.shape == (2, 24, 8)
    assert stop.shape == (2, 24)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 6, 5)
    assert maps[0].dtype == torch.float32
    # padded tokens get no attention
    assert float(maps[-1][1, :, :, 3:].abs().max()) == 0.0


def test_incremental_decoding_equals_teacher_forcing() -> None:
    """Feeding the true frames one step at a time through the KV cache gives the same
    outputs as the full teacher-forced pass."""
    model = _model()
    tokens, lengths, mel = _batch()
    with torch.no_grad():
        memory, memory_mask = model.encoder(tokens, lengths)
        full, full_stop, _ = model.decode(model.decoder_inputs(mel), memory, memory_mask)
        cache = model.decoder.new_cache()
        inputs = model.decoder_inputs(mel)
        steps = []
        for t in range(inputs.shape[1]):
            x = model.positions(model.prenet(inputs[:, t:t + 1]), offset=t)
            out, _ = model.decoder(x, memory, memory_mask=memory_mask, cache=cache)
            steps.append(model.mel_out(out).view(2, 4, 8))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_window_masks_limit_only_the_monitored_heads() -> None:
    peak, lengths = torch.tensor([2, 0]), torch.tensor([8, 8])
    masks = window_masks(peak, lengths, {1: [0]}, num_layers=2, num_heads=2, tokens=8,
                         window=(1, 3))
    assert masks[0].allowed is None  # layer 0 is not monitored
    allowed = masks[1].allowed  # (B, H, 1, N)
    assert allowed[0, 0, 0].nonzero().flatten().tolist() == [1, 2, 3, 4, 5]
    assert allowed[1, 0, 0].nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert bool(allowed[:, 1].all())  # the other head sees everything


def test_the_peak_never_moves_back_and_a_stall_is_pushed_on() -> None:
    lengths = torch.tensor([6])
    peak, stall = torch.tensor([3]), torch.tensor([0])
    backwards = torch.tensor([[0.1, 0.8, 0.05, 0.05, 0.0, 0.0]])  # argmax 1 < peak 3
    peak, stall = next_peak(backwards, peak, stall, lengths, max_stall=2)
    assert peak.tolist() == [3] and stall.tolist() == [1]
    for _ in range(2):
        peak, stall = next_peak(backwards, peak, stall, lengths, max_stall=2)
    assert peak.tolist() == [4] and stall.tolist() == [0]  # pushed one token on


def test_windowed_generation_is_monotonic_and_capped() -> None:
    """An untrained model never fires its stop reliably: generation must still end (the cap
    or the last token), and the tracked peak never moves back."""
    model = _model(prenet_dropout=0.5)
    tokens, lengths, _ = _batch()
    expected = torch.tensor([20.0, 12.0])
    synthesis = Synthesis(stop_threshold=1.1)  # never fires
    out = generate(model, tokens, lengths, expected, {1: [0, 1]}, synthesis,
                   [torch.Generator().manual_seed(s) for s in (0, 1)])
    assert (out.lengths <= torch.tensor([40, 24])).all()
    for item in range(2):
        steps = -(-int(out.lengths[item]) // 4)
        argmax = out.alignment[item, :steps].argmax(-1)
        running_peak = torch.cummax(argmax, 0).values
        # each step sees only [previous peak - 1, previous peak + 3]
        assert (argmax[1:] >= running_peak[:-1] - 1).all()
        assert (argmax[1:] <= running_peak[:-1] + 3).all()
    assert float(out.mel[1, int(out.lengths[1]):].abs().sum()) == 0.0


def test_seeded_prenet_makes_synthesis_repeatable() -> None:
    model = _model(prenet_dropout=0.5)
    tokens, lengths, _ = _batch()
    runs = [generate(model, tokens, lengths, torch.tensor([12.0, 8.0]), {1: [0]}, Synthesis(),
                     [torch.Generator().manual_seed(s) for s in (5, 6)]) for _ in range(2)]
    torch.testing.assert_close(runs[0].mel, runs[1].mel, atol=0, rtol=0)


def test_a_windowed_stop_waits_for_the_last_tokens() -> None:
    """A stop that fires at once ends unwindowed generation after one step; windowed, it only
    counts once the peak is near the end, so generation runs on (here to the cap)."""
    model = _model()
    torch.nn.init.constant_(model.stop_out.bias, 10.0)  # the stop fires at every frame
    tokens = torch.tensor([[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 2, 3, 4, 1]])
    lengths, expected = torch.tensor([14]), torch.tensor([40.0])
    free = generate(model, tokens, lengths, expected, {1: [0]}, Synthesis(windowed=False))
    assert free.lengths.tolist() == [1]
    windowed = generate(model, tokens, lengths, expected, {1: [0]}, Synthesis())
    # the peak moves at most 3 tokens a step: 11 of them take at least 4 steps (16 frames)
    assert int(windowed.lengths[0]) >= 13


def test_phrase_spans_cut_at_inner_pauses_and_share_them() -> None:
    pause, eos = 2, 1
    tokens = torch.tensor([pause, 5, 6, pause, 7, 8, 9, pause, eos, 0])
    assert phrase_spans(tokens, 9, frozenset({pause})) == [(0, 3), (3, 7)]
    assert phrase_spans(tokens[:3], 2, frozenset({pause})) == [(0, 0)]  # [pau, EOS]


def test_phrase_by_phrase_synthesis_joins_what_each_phrase_gives_alone() -> None:
    model = _model()
    pause, eos = 2, 1
    tokens = torch.tensor([[pause, 5, 6, pause, 7, 8, pause, eos],
                           [pause, 9, 10, pause, eos, 0, 0, 0]])
    lengths = torch.tensor([8, 5])
    # the stop never fires, so each phrase runs to its cap; no window, whose argmax over an
    # untrained model's near-uniform attention would flip on rounding between batch sizes
    synthesis = Synthesis(stop_threshold=1.1, windowed=False)
    out = generate_by_phrase(model, tokens, lengths, 3.0, {1: [0]}, synthesis, [4, 5],
                             frozenset({pause}), eos)
    alone = [generate(model, torch.tensor([phrase]), torch.tensor([len(phrase)]),
                      expected_frames(torch.tensor([len(phrase)]), 3.0), {1: [0]}, synthesis,
                      utterance_generators([seed]))
             for phrase, seed in (([pause, 5, 6, pause, eos], 4000),
                                  ([pause, 7, 8, pause, eos], 4001))]
    frames = [int(a.lengths[0]) for a in alone]
    assert int(out.lengths[0]) == sum(frames)
    joined = torch.cat([a.mel[0, :n] for a, n in zip(alone, frames, strict=True)])
    torch.testing.assert_close(out.mel[0, :sum(frames)], joined, atol=1e-5, rtol=1e-4)
    steps = [int(a.steps[0]) for a in alone]
    assert int(out.steps[0]) == sum(steps)
    first, second = out.alignment[0, :steps[0]], out.alignment[0, steps[0]:sum(steps)]
    assert first[:, 4:].abs().max() == 0  # phrase 1 reads tokens 0..3 (its EOS folded in)
    torch.testing.assert_close(first.sum(-1), torch.ones(steps[0]))
    assert second[:, :3].abs().max() == 0  # phrase 2 reads tokens 3..7, EOS the item's own
    assert int(out.lengths[1]) > 0 and int(out.steps[1]) == -(-int(out.lengths[1]) // 4)
