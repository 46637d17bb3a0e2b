"""Guided-attention priors and loss, alignment metrics, attention errors, DTW distances and the
bootstrap interval, on hand-made attention maps and sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from suite.errors import UsageError
from tasks.tts import alignment as align
from tasks.tts import corpus


def one_hot_map(tokens_per_step: list[int], tokens: int) -> torch.Tensor:
    """Attention ``(1, S, N)`` putting all weight on the given token at each step."""
    return torch.nn.functional.one_hot(torch.tensor([tokens_per_step]), tokens).float()


def test_diagonal_prior_matches_espnet_documented_mask() -> None:
    prior = align.diagonal_prior(torch.tensor([5]), torch.tensor([5]), 5, 5, sigma=0.4)
    expected_row = torch.tensor([0.0, 0.1175, 0.3935, 0.6753, 0.8647])
    assert torch.allclose(prior[0, 0], expected_row, atol=1e-4)
    assert torch.allclose(prior[0], prior[0].T)  # symmetric when T == N
    assert prior.dtype == torch.float32


def test_prior_and_mask_are_zero_outside_the_valid_region() -> None:
    tokens, steps = torch.tensor([3, 5]), torch.tensor([4, 6])
    mask = align.valid_mask(tokens, steps, 6, 5)
    assert mask.shape == (2, 6, 5)
    assert mask[0, :4, :3].all() and not mask[0, 4:].any() and not mask[0, :, 3:].any()
    assert mask[1].all()
    prior = align.diagonal_prior(tokens, steps, 6, 5)
    assert (prior[~mask] == 0).all() and (prior[0, 3, :3] > 0).all()


def test_guided_loss_ignores_padding() -> None:
    tokens, steps = torch.tensor([3, 5]), torch.tensor([4, 6])
    mask = align.valid_mask(tokens, steps, 6, 5)
    prior = align.diagonal_prior(tokens, steps, 6, 5)
    weights = torch.rand(2, 2, 6, 5).softmax(-1)  # (B, H, S, N)
    loss = align.guided_attention_loss(weights, prior, mask)
    changed = weights.clone()
    changed[0, :, ~mask[0]] = 0  # only item 0 is padded
    changed[0, 1, 5, 4] = float("nan")
    changed[0, 0, 4:, :] = 7.0
    assert torch.equal(align.guided_attention_loss(changed, prior, mask), loss)
    # By hand: the mean of W * A over the valid cells of both heads (ESPnet's masked mean).
    by_hand = sum((weights[b, :, mask[b]] * prior[b][mask[b]]).sum() for b in range(2))
    cells = mask.sum().item()
    assert loss.item() == pytest.approx(by_hand.item() / (2 * cells), rel=1e-6)


def test_diagonal_attention_has_lower_loss_than_uniform() -> None:
    tokens, steps = torch.tensor([8]), torch.tensor([8])
    mask = align.valid_mask(tokens, steps, 8, 8)
    prior = align.diagonal_prior(tokens, steps, 8, 8)
    diagonal = torch.eye(8)[None, None]  # (1, 1, 8, 8)
    uniform = torch.full((1, 1, 8, 8), 1 / 8)
    assert align.guided_attention_loss(diagonal, prior, mask) == 0
    # The mean over every cell of W * A: uniform attention (1/N a cell) gives mean(W) / N.
    uniform_loss = align.guided_attention_loss(uniform, prior, mask)
    assert uniform_loss.item() == pytest.approx(prior.mean().item() / 8, rel=1e-6)
    assert uniform_loss > 0.005


def test_loss_runs_in_fp32_for_bf16_attention() -> None:
    tokens, steps = torch.tensor([4]), torch.tensor([4])
    mask = align.valid_mask(tokens, steps, 4, 4)
    prior = align.diagonal_prior(tokens, steps, 4, 4)
    loss = align.guided_attention_loss(torch.full((1, 1, 4, 4), 0.25, dtype=torch.bfloat16),
                                       prior, mask)
    assert loss.dtype == torch.float32


def test_true_tokens_by_hand() -> None:
    # Ends (exclusive, 10 ms frames) 3, 6, 14, 16; r = 4 -> step centres 1.5, 5.5, 9.5, 13.5,
    # 17.5: tokens 0, 1, 2, 2, then past the last end -> clipped to the last token (3).
    ends = torch.tensor([[3, 6, 14, 16, 0, 0], [-1, -1, -1, -1, -1, -1]])
    true = align.true_tokens(ends, torch.tensor([4, 6]), torch.tensor([5, 3]), steps=6,
                             reduction=4)
    assert true.tolist() == [[0, 1, 2, 2, 3, -1], [-1] * 6]
    assert true.dtype == torch.long


def test_aligned_prior_is_zero_on_the_true_token() -> None:
    true = torch.tensor([[0, 1, 1, 3, -1]])
    prior = align.aligned_prior(true, torch.tensor([4]), torch.tensor([5]), tokens=4, sigma=0.2)
    assert prior.shape == (1, 5, 4)
    assert prior[0, torch.arange(4), true[0, :4]].eq(0).all()
    assert prior[0, 4].eq(0).all()  # unknown true token -> unguided step
    expected = 1 - math.exp(-((2 / 4) ** 2) / (2 * 0.2**2))  # two tokens off, N_b = 4
    assert prior[0, 1, 3].item() == pytest.approx(expected, rel=1e-6)


def test_accuracy_focus_and_entropy_on_one_hot_and_shifted_maps() -> None:
    true = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]])
    mask = align.valid_mask(torch.tensor([10]), torch.tensor([8]), 8, 10)
    exact = one_hot_map(true[0].tolist(), 10)
    shifted = one_hot_map([min(t + 3, 9) for t in true[0].tolist()], 10)
    assert align.alignment_accuracy(exact, true, mask).tolist() == [1.0]
    assert align.alignment_accuracy(shifted, true, mask).tolist() == [0.0]
    assert align.alignment_accuracy(shifted, true, mask, tolerance=3).tolist() == [1.0]
    assert align.focus_rate(exact, mask).tolist() == [1.0]
    assert align.attention_entropy(exact, mask).tolist() == [0.0]
    uniform = torch.full((1, 8, 10), 0.1)
    assert align.attention_entropy(uniform, mask).item() == pytest.approx(math.log(10), rel=1e-5)
    assert align.focus_rate(uniform, mask).item() == pytest.approx(0.1)


def test_metrics_skip_padding_and_unknown_steps() -> None:
    mask = align.valid_mask(torch.tensor([4, 4]), torch.tensor([4, 2]), 4, 4)
    weights = one_hot_map([0, 1, 2, 3], 4).repeat(2, 1, 1)
    weights[1, 2:] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # padding steps of item 1
    true = torch.tensor([[0, 1, -1, -1], [1, 1, -1, -1]])
    assert align.alignment_accuracy(weights, true, mask).tolist() == [1.0, 1.0]
    assert align.alignment_accuracy(weights, torch.full((2, 4), -1), mask).isnan().all()
    prior = align.diagonal_prior(torch.tensor([4, 4]), torch.tensor([4, 2]), 4, 4)
    diag = align.diagonality(weights, prior, mask)
    assert diag[0].item() == 0.0
    # Item 1 has two steps (T_b = 2): step 1 attends token 1 where W = 1 - exp(-(1/4 - 1/2)^2/.08)
    expected = (1 - math.exp(-(0.25**2) / 0.08)) / 2
    assert diag[1].item() == pytest.approx(expected, rel=1e-5)


def test_most_focused_head() -> None:
    mask = align.valid_mask(torch.tensor([6]), torch.tensor([6]), 6, 6)
    weights = torch.full((1, 3, 6, 6), 1 / 6)
    weights[0, 2] = torch.eye(6) * 0.8 + 0.2 / 6
    assert align.most_focused_head(align.head_focus_rates(weights, mask)) == 2


@pytest.mark.parametrize(("peaks", "num_tokens", "capped", "expected"), [
    ([0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9], 10, False, set()),
    ([0, 1, 2, 6, 7, 8, 9], 10, False, {"skip"}),
    ([0, 1, 2, 3, 5, 6, 7, 8, 9], 10, False, {"skip"}),  # token 4 never read
    ([0, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9], 10, False, {"repeat"}),
    ([0, 1, 2, 3, 4, 5, 6], 10, False, {"early_stop"}),
    ([0, 1, 2, 3, 4, 5, 6, 7], 10, False, set()),  # token 7 is one of the last three
    ([0, 1, 2, 3, 4, 4, 4, 4], 10, True, {"overrun"}),
    ([0, 1, 1, 2, 3], 4, False, set()),
])
def test_attention_errors(peaks: list[int], num_tokens: int, capped: bool,
                          expected: set[str]) -> None:
    weights = one_hot_map(peaks, num_tokens + 2)[0] * 0.7 + 0.3 / (num_tokens + 2)
    weights[:, num_tokens:] = 1.0  # padding tokens never count as the peak
    errors = align.attention_errors(weights, num_tokens, capped)
    assert set(errors) == {"skip", "repeat", "early_stop", "overrun"}
    assert {name for name, hit in errors.items() if hit} == expected


def test_a_token_read_within_a_step_is_not_a_skip() -> None:
    """At r frames a step a short phone can be read alongside its neighbour without ever
    being the peak: that is not a skip."""
    weights = one_hot_map([0, 1, 2, 3, 5, 6, 7, 8, 9], 10)[0] * 0.7 + 0.03 / 10
    weights[4, 4] = 0.25  # the step that moves from 3 to 5 also reads token 4
    errors = align.attention_errors(weights, 10, False)
    assert not any(errors.values())


def test_a_pause_never_read_is_not_a_skip_but_a_phone_is() -> None:
    """The leading pause is often spoken before attention settles on any token."""
    weights = one_hot_map([1, 1, 2, 3, 4, 5, 6, 7, 8, 9], 10)[0] * 0.95 + 0.005 / 10
    pause = torch.zeros(10, dtype=torch.bool)
    assert align.attention_errors(weights, 10, False, pause)["skip"]
    pause[0] = True
    assert not any(align.attention_errors(weights, 10, False, pause).values())


def test_silent_ids_are_the_pause_and_the_word_space() -> None:
    assert [corpus.vocabulary("phones")[i] for i in corpus.silent_ids("phones")] == ["pau"]
    assert [corpus.vocabulary("chars")[i] for i in corpus.silent_ids("chars")] == [" "]


def test_attention_errors_rejects_bad_token_count() -> None:
    with pytest.raises(UsageError, match="num_tokens"):
        align.attention_errors(torch.rand(4, 3), 5, False)


def test_dtw_identical_and_frame_repeated() -> None:
    rng = np.random.default_rng(0)
    mel = torch.from_numpy(rng.normal(size=(50, 80))).float()
    idx_a, idx_b = align.dtw_path(mel, mel)
    assert np.array_equal(idx_a, np.arange(50)) and np.array_equal(idx_b, np.arange(50))
    assert align.mel_l1_dtw(mel, mel) == 0.0
    slow = mel.repeat_interleave(2, dim=0)  # the same sounds, spoken twice as slowly
    assert align.mel_l1_dtw(slow, mel) == pytest.approx(0.0, abs=1e-6)
    assert align.mel_l1_dtw(mel + 1.0, mel) == pytest.approx(1.0, abs=1e-6)


def test_dtw_path_is_optimal_on_small_sequences() -> None:
    rng = np.random.default_rng(1)
    for ta, tb in [(1, 1), (1, 6), (7, 3), (13, 17)]:
        a, b = rng.normal(size=(ta, 3)), rng.normal(size=(tb, 3))
        cost = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
        best = np.full((ta + 1, tb + 1), np.inf)
        best[0, 0] = 0.0
        for i in range(1, ta + 1):
            for j in range(1, tb + 1):
                best[i, j] = cost[i - 1, j - 1] + min(best[i - 1, j - 1], best[i - 1, j],
                                                      best[i, j - 1])
        idx_a, idx_b = align.dtw_path(a, b)
        assert (idx_a[0], idx_b[0], idx_a[-1], idx_b[-1]) == (0, 0, ta - 1, tb - 1)
        steps = np.stack([np.diff(idx_a), np.diff(idx_b)], 1)
        assert {tuple(s) for s in steps} <= {(1, 1), (1, 0), (0, 1)}
        assert cost[idx_a, idx_b].sum() == pytest.approx(best[-1, -1])


def test_mel_cepstral_distance() -> None:
    rng = np.random.default_rng(3)
    mel = torch.from_numpy(rng.normal(size=(40, 80))).float()
    assert align.mel_cepstral_distance(mel, mel) == 0.0
    # A constant offset changes only c0, which MCD leaves out.
    assert align.mel_cepstral_distance(mel + 2.0, mel) == pytest.approx(0.0, abs=1e-4)
    assert align.mel_cepstral_distance(mel.flip(1), mel) > 1.0
    with pytest.raises(UsageError, match="80 mel bins"):
        align.mel_cepstral_distance(mel[:, :40], mel[:, :40])


def test_mel_cepstral_distance_uses_the_real_cepstrums_scale() -> None:
    """log|X(w)| = 2 c1 cos(w) has the single cepstral coefficient c1: against a flat spectrum
    the MCD is 10 / ln 10 * sqrt(2) * c1."""
    c1 = 0.1
    bins = (torch.arange(80) + 0.5) * math.pi / 80
    log_power = (4 * c1 * torch.cos(bins)).expand(10, 80)  # twice the log amplitude
    expected = 10 / math.log(10) * math.sqrt(2) * c1
    assert align.mel_cepstral_distance(log_power, torch.zeros(10, 80)) == pytest.approx(
        expected, rel=1e-3)


def test_bootstrap_ci_contains_the_mean() -> None:
    values = np.random.default_rng(4).normal(loc=3.0, size=100).tolist()
    low, high = align.bootstrap_ci(values)
    assert low < float(np.mean(values)) < high
    assert high - low < 1.0
    assert align.bootstrap_ci(values, seed=0) == (low, high)
    narrow = align.bootstrap_ci(values, confidence=0.5)
    assert low < narrow[0] < narrow[1] < high
    with pytest.raises(UsageError, match="non-empty"):
        align.bootstrap_ci([])


def test_head_maps_picks_each_layers_chosen_heads_in_order() -> None:
    maps = [torch.arange(2 * 3 * 4.0).view(1, 2, 3, 4) + 100 * layer for layer in range(3)]
    picked = align.head_maps(maps, {1: [1], 2: [0, 1]})
    assert picked.shape == (1, 3, 3, 4)
    assert torch.equal(picked[0], torch.stack([maps[1][0, 1], maps[2][0, 0], maps[2][0, 1]]))
