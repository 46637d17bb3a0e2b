"""Alignment maths for the TTS head: guided attention, alignment metrics, DTW distances.

The decoder predicts ``r`` mel frames per step; its cross-attention ``A[t, n]`` says which
text token step ``t`` reads. Guided attention (Tachibana et al. 2017, DC-TTS; ESPnet's
``GuidedAttentionLoss``) adds ``lambda * mean(W * A)`` to the loss, where the prior ``W`` is
near 0 on the expected alignment and grows to 1 away from it: the diagonal ``n / N = t / T``,
or - for "pre-aligned guidance" - flite's true token per step. Everything here is computed in fp32,
whatever the dtype of the attention (bf16 under autocast), and ignores padding: ``mask``
``(B, S, N)`` is true on a valid (step, token) pair.

Naming: ``B`` batch, ``H`` heads, ``S`` decoder steps, ``N`` tokens; ``T_b``/``N_b`` are one
item's valid steps/tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torchaudio
from torch import Tensor

from suite.errors import UsageError


def head_maps(maps: Sequence[Tensor], heads: dict[int, list[int]]) -> Tensor:
    """The chosen heads' cross-attention ``(B, n, S, N)``, from each decoder layer's maps
    ``(B, H, S, N)``; ``heads`` maps a layer to its head indices."""
    return torch.stack([maps[layer][:, head] for layer, chosen in heads.items()
                        for head in chosen], dim=1)


def valid_mask(token_lengths: Tensor, step_lengths: Tensor, steps: int, tokens: int) -> Tensor:
    """``(B, S, N)`` bool: step ``t < T_b`` and token ``n < N_b``."""
    device = token_lengths.device
    step_ok = torch.arange(steps, device=device) < step_lengths[:, None]  # (B, S)
    token_ok = torch.arange(tokens, device=device) < token_lengths[:, None]  # (B, N)
    return step_ok[:, :, None] & token_ok[:, None, :]


def _gauss_penalty(offset: Tensor, sigma: float) -> Tensor:
    """``1 - exp(-offset^2 / (2 sigma^2))``: 0 on the expected alignment, -> 1 away from it."""
    return 1.0 - torch.exp(-offset.square() / (2.0 * sigma**2))


def diagonal_prior(token_lengths: Tensor, step_lengths: Tensor, steps: int, tokens: int,
                   sigma: float = 0.2) -> Tensor:
    """The guided-attention weight ``W[b, t, n] = 1 - exp(-(n/N_b - t/T_b)^2 / (2 sigma^2))``,
    ``(B, S, N)`` float32, 0 outside the valid region (as ESPnet's mask)."""
    device = token_lengths.device
    n = torch.arange(tokens, device=device, dtype=torch.float32)
    t = torch.arange(steps, device=device, dtype=torch.float32)
    n_b = token_lengths.float().clamp(min=1)[:, None, None]  # (B, 1, 1)
    t_b = step_lengths.float().clamp(min=1)[:, None, None]
    prior = _gauss_penalty(n[None, None, :] / n_b - t[None, :, None] / t_b, sigma)  # (B, S, N)
    return prior * valid_mask(token_lengths, step_lengths, steps, tokens)


def true_tokens(token_ends: Tensor, token_lengths: Tensor, step_lengths: Tensor, steps: int,
                reduction: int) -> Tensor:
    """The token spoken at each decoder step, ``(B, S)`` long.

    ``token_ends`` ``(B, N)`` holds each token's end frame (10 ms frames, exclusive). Step ``t``
    covers frames ``t*r .. t*r + r - 1``; its token is the first whose end frame is past the
    step's centre frame ``t*r + (r - 1)/2``, clipped to the item's last valid token (frames after
    the last end belong to it). -1 on padding steps, and on every step of an item whose ends
    are unknown (any valid end < 0, as for character input).
    """
    valid_token = (torch.arange(token_ends.shape[1], device=token_ends.device)
                   < token_lengths[:, None])  # (B, N)
    ends = token_ends.float()
    centre = (torch.arange(steps, device=ends.device, dtype=torch.float32) * reduction
              + (reduction - 1) / 2)  # (S,)
    past = (ends[:, None, :] > centre[None, :, None]) & valid_token[:, None, :]  # (B, S, N)
    last = (token_lengths - 1).clamp(min=0)[:, None]  # (B, 1)
    first_past = past.int().argmax(-1)  # (B, S); 0 when no token is past the centre
    token = torch.where(past.any(-1), first_past, last).minimum(last)
    unknown = ((ends < 0) & valid_token).any(-1)  # (B,)
    padding = torch.arange(steps, device=ends.device) >= step_lengths[:, None]  # (B, S)
    return token.long().masked_fill(padding | unknown[:, None], -1)


def aligned_prior(true_token: Tensor, token_lengths: Tensor, step_lengths: Tensor, tokens: int,
                  sigma: float = 0.2) -> Tensor:
    """Pre-aligned guidance: ``W = 1 - exp(-((n - true_token[t]) / N_b)^2 / (2 sigma^2))``,
    ``(B, S, N)`` float32: the diagonal prior's penalty centred on the true alignment. 0 outside
    the valid region and on steps whose true token is unknown (-1), which are thus unguided."""
    steps = true_token.shape[1]
    n = torch.arange(tokens, device=true_token.device, dtype=torch.float32)
    n_b = token_lengths.float().clamp(min=1)[:, None, None]  # (B, 1, 1)
    prior = _gauss_penalty((n[None, None, :] - true_token.float()[:, :, None]) / n_b, sigma)
    known = (true_token >= 0)[:, :, None]  # (B, S, 1)
    return prior * (valid_mask(token_lengths, step_lengths, steps, tokens) & known)


def guided_attention_loss(weights: Tensor, prior: Tensor, mask: Tensor) -> Tensor:
    """``mean(W * A)`` over every valid (head, step, token) cell of the batch: fp32 scalar.

    The cell mean of Tachibana et al. and ESPnet, so lambda means what it means there. A
    step's weights sum to 1, so this is the per-step expected penalty ``sum_n A W`` divided
    by the text length: the prior pulls hardest while attention is spread out, and lets a
    head that has found the alignment deviate from the exact diagonal where the speech does
    (a long leading pause, a slow word) at a cost that shrinks with the text's length.

    ``weights`` ``(B, H, S, N)`` are the guided heads' attention; padding never contributes,
    whatever it holds (``where``, not a product, so NaN there cannot leak in).
    """
    mask = mask[:, None]  # (B, 1, S, N)
    terms = torch.where(mask, weights.float() * prior.float()[:, None], 0.0)
    cells = mask.sum() * weights.shape[1]  # valid (head, step, token) cells
    return terms.sum() / cells.clamp(min=1)


def _step_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` ``(B, S)`` over each item's ``valid`` steps -> ``(B,)``; NaN if none."""
    total = torch.where(valid, values, 0.0).sum(-1)
    return total / valid.sum(-1)


def _valid_weights(weights: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """fp32 attention zeroed outside ``mask`` ``(B, S, N)``; which steps are valid ``(B, S)``."""
    return torch.where(mask, weights.float(), 0.0), mask.any(-1)


def alignment_accuracy(weights: Tensor, true_token: Tensor, mask: Tensor,
                       tolerance: int = 1) -> Tensor:
    """Share of steps whose attention peak is within ``tolerance`` tokens of the true token,
    ``(B,)``; steps with an unknown true token (-1) are left out (NaN for an item with none)."""
    peak = torch.where(mask, weights.float(), -math.inf).argmax(-1)  # (B, S)
    hit = ((peak - true_token).abs() <= tolerance).float()
    return _step_mean(hit, mask.any(-1) & (true_token >= 0))


def focus_rate(weights: Tensor, mask: Tensor) -> Tensor:
    """FastSpeech's focus rate: mean over steps of the largest attention weight, ``(B,)``; 1 for
    a one-hot (sharp) alignment, ``1/N_b`` for uniform attention."""
    attention, steps = _valid_weights(weights, mask)
    return _step_mean(attention.amax(-1), steps)


def diagonality(weights: Tensor, prior: Tensor, mask: Tensor) -> Tensor:
    """Mean expected guided-attention penalty ``sum_n A[t, n] W[t, n]`` per step, ``(B,)``; 0 when
    all attention lies where the prior ``W`` is 0 (on the diagonal)."""
    attention, steps = _valid_weights(weights, mask)
    return _step_mean((attention * prior.float()).sum(-1), steps)


def attention_entropy(weights: Tensor, mask: Tensor) -> Tensor:
    """Mean entropy of each step's attention in nats, ``(B,)``: 0 one-hot, ``log N_b`` uniform."""
    attention, steps = _valid_weights(weights, mask)
    return _step_mean(-torch.special.xlogy(attention, attention).sum(-1), steps)


def head_focus_rates(weights: Tensor, mask: Tensor) -> Tensor:
    """Each head's focus rate on each item, ``(H, B)``, of ``weights`` ``(B, H, S, N)``."""
    return torch.stack([focus_rate(weights[:, h], mask) for h in range(weights.shape[1])])


def most_focused_head(rates: Tensor) -> int:
    """Index of the head with the highest mean focus rate (``rates`` ``(H, B)`` from
    :func:`head_focus_rates`): the head to score when no head was guided (an unguided model
    aligns on a head of its choosing)."""
    return int(rates.nanmean(1).argmax())


ATTENDED = 0.1
"""The weight a token must get at some step to count as read (see :func:`attention_errors`)."""


def attention_errors(weights: Tensor, num_tokens: int, capped: bool,
                     silent: Tensor | None = None) -> dict[str, bool]:
    """Attention errors of one free-running item.

    ``weights`` ``(S, N)``; the first ``num_tokens`` tokens are real; ``silent`` ``(N,)`` bool
    marks pauses (and word spaces), which are never counted as skipped: speech may run over
    a pause, and the leading pause is often spoken before attention settles on any token.

    - ``skip``: a sounding token before the furthest peak that no step gave
      :data:`ATTENDED` of its weight: attention passed it by. (Not "the peak jumped": at r
      frames a step, a short phone is often read within a step, shared with its neighbour,
      without ever being the peak.)
    - ``repeat``: the peak (argmax) moves back by more than one token;
    - ``early_stop``: generation ended, not at the length cap, before the peak reached any of
      the last 3 tokens;
    - ``overrun``: generation hit the length cap (``capped``).
    """
    if weights.dim() != 2 or not 1 <= num_tokens <= weights.shape[1]:
        raise UsageError(f"attention_errors: expected weights (steps, tokens) with 1 <= "
                         f"num_tokens <= tokens, got shape {tuple(weights.shape)} and "
                         f"num_tokens {num_tokens}")
    real = weights[:, :num_tokens].float()
    peak = real.argmax(-1)  # (S,)
    furthest = int(peak.max()) if peak.numel() else 0
    passed_by = real[:, :furthest].amax(0) < ATTENDED if peak.numel() else real.new_zeros(0)
    if silent is not None:
        passed_by = passed_by & ~silent[:furthest].to(passed_by.device)
    reached_end = peak.numel() > 0 and furthest >= num_tokens - 3
    return {"skip": bool(passed_by.any()), "repeat": bool((peak.diff() < -1).any()),
            "early_stop": not capped and not reached_end, "overrun": bool(capped)}


def _as_frames(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    frames = np.asarray(x.detach().float().cpu() if isinstance(x, Tensor) else x,
                        dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise UsageError(f"{name}: expected a non-empty (frames, dims) array, got shape "
                         f"{frames.shape}")
    return frames


def _cost(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Frame-pair distances ``(Ta, Tb)``."""
    if metric == "euclidean":
        square = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.maximum(square, 0.0))
    if metric == "l1":
        return torch.cdist(torch.from_numpy(a), torch.from_numpy(b), p=1).numpy()
    raise UsageError(f"dtw_path: unknown metric {metric!r}; expected 'euclidean' or 'l1'")


def dtw_path(a: Tensor | np.ndarray, b: Tensor | np.ndarray,
             metric: Literal["euclidean", "l1"] = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping of ``a`` ``(Ta, D)`` onto ``b`` ``(Tb, D)``: the monotonic path from
    ``(0, 0)`` to ``(Ta-1, Tb-1)`` with moves (1, 1), (1, 0), (0, 1) of least summed frame
    distance. Returns the aligned index arrays ``(idx_a, idx_b)``, each ``(path,)`` int64.

    Cell ``(i, j)`` depends only on cells of the two previous anti-diagonals ``i + j``, so the
    accumulation runs one vectorised update per anti-diagonal. They are stored skewed,
    ``acc[k, i] = D[i, k - i]``, which makes each cell's three predecessors contiguous slices.
    """
    a, b = _as_frames(a, "dtw_path a"), _as_frames(b, "dtw_path b")
    if a.shape[1] != b.shape[1]:
        raise UsageError(f"dtw_path: frames differ in size ({a.shape[1]} vs {b.shape[1]})")
    ta, tb = len(a), len(b)
    diagonals = ta + tb - 1
    rows = np.arange(ta)[:, None]  # (Ta, 1)
    cost = np.full((diagonals, ta), np.inf)  # (K, Ta); row k holds anti-diagonal k
    cost[rows + np.arange(tb)[None, :], rows] = _cost(a, b, metric)
    acc = np.full((diagonals, ta), np.inf)
    acc[0, 0] = cost[0, 0]
    for k in range(1, diagonals):
        best = acc[k - 1].copy()  # from (i, j - 1)
        np.minimum(best[1:], acc[k - 1, :-1], out=best[1:])  # from (i - 1, j)
        if k >= 2:
            np.minimum(best[1:], acc[k - 2, :-1], out=best[1:])  # from (i - 1, j - 1)
        acc[k] = cost[k] + best
    path, i, j = [(ta - 1, tb - 1)], ta - 1, tb - 1
    while i > 0 or j > 0:
        k = i + j
        # Ties go to the diagonal move, so identical sequences align frame to frame.
        moves = ((acc[k - 2, i - 1] if i and j else np.inf, i - 1, j - 1),
                 (acc[k - 1, i - 1] if i else np.inf, i - 1, j),
                 (acc[k - 1, i] if j else np.inf, i, j - 1))
        _, i, j = min(moves, key=lambda move: move[0])
        path.append((i, j))
    idx = np.array(path[::-1], dtype=np.int64)
    return idx[:, 0], idx[:, 1]


def mel_l1_dtw(pred: Tensor, ref: Tensor) -> float:
    """Mean absolute log-mel difference over the DTW (L1 cost) alignment of ``pred`` ``(T1, 80)``
    and ``ref`` ``(T2, 80)``: a spectral error that does not punish a different speaking rate."""
    p, r = _as_frames(pred, "mel_l1_dtw pred"), _as_frames(ref, "mel_l1_dtw ref")
    idx_p, idx_r = dtw_path(p, r, metric="l1")
    return float(np.abs(p[idx_p] - r[idx_r]).mean())


def mel_cepstral_distance(pred: Tensor, ref: Tensor) -> float:
    """Mel-cepstral distance (MCD, dB) of two natural-log power mels ``(T, 80)`` after DTW.

    Cepstra describe the log *amplitude* spectrum as ``log|X(w)| = c_0 + 2 sum_k c_k cos(k w)``
    (the real cepstrum MCD is defined on): the DCT-II of half the log power mel over its 80
    bins, scaled by 1/80 - the orthonormal DCT of ``create_dct(13, 80, 'ortho')`` divided by
    sqrt(2 * 80). ``c0`` (overall level) is dropped. Frames are aligned by DTW on the cepstra
    (Euclidean), and each aligned pair scores ``10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)``;
    the MCD is their mean. Mel-filterbank cepstra are not SPTK's all-pass-warped mel-cepstra,
    so values compare between our runs, not with published MCDs.
    """
    dct = torchaudio.functional.create_dct(13, 80, "ortho").double().numpy()  # (80, 13)
    p = _as_frames(pred, "mel_cepstral_distance pred")
    r = _as_frames(ref, "mel_cepstral_distance ref")
    if p.shape[1] != 80 or r.shape[1] != 80:
        raise UsageError(f"mel_cepstral_distance: expected 80 mel bins, got {p.shape[1]} and "
                         f"{r.shape[1]}")
    scale = 0.5 / math.sqrt(2 * 80)  # power -> amplitude, orthonormal -> 1/N cepstrum
    cep_p, cep_r = (scale * (p @ dct))[:, 1:], (scale * (r @ dct))[:, 1:]  # (T, 12)
    idx_p, idx_r = dtw_path(cep_p, cep_r)
    per_frame = np.sqrt(2.0 * ((cep_p[idx_p] - cep_r[idx_r]) ** 2).sum(1))
    return float(10.0 / math.log(10.0) * per_frame.mean())


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``: resample them with
    replacement ``resamples`` times (seeded numpy Generator) and take the central
    ``confidence`` share of the resampled means."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0 or not 0.0 < confidence < 1.0:
        raise UsageError(f"bootstrap_ci: expected a non-empty list of numbers and 0 < confidence "
                         f"< 1, got {data.size} values and confidence {confidence}")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)
