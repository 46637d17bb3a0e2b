"""Free-running synthesis: the decoder feeds itself, one step (r frames) at a time.

Each step reuses the keys/values of earlier steps through the decoder's KV cache, so a step
costs O(steps so far) rather than re-running the prefix. Teacher forcing never shows the model
its own mistakes; here they compound, and attention is what fails: it skips a phone, repeats
one, or never reaches the end. Two guards are offered (Tachibana et al. 2017 use the first):

- a monotonic window on the monitored (guided) heads: keys outside
  ``[peak - behind, peak + ahead]`` of the previous step's peak are masked, the peak never
  moves back, and a peak stuck on one token for ``max_stall`` steps is pushed one token on;
- stopping when the stop logit fires *or* (windowed) the peak reaches the last token (EOS),
  and in any case at ``max_length_ratio`` times the expected length. Windowed, a fired stop
  counts only once the peak is within the last :data:`END_TOKENS` tokens: most training
  items are one sentence, so the stop logit half-learns "a sentence-final pause" and could
  end a longer text at its first full stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from suite.attention import AttentionMask
from suite.data import pad_sequences
from tasks.tts.alignment import head_maps
from tasks.tts.model import Generated, TransformerTTS

END_TOKENS = 3
"""The last tokens (final phone, pause, EOS) within which a windowed stop is accepted."""


@dataclass(frozen=True)
class Synthesis:
    """How free-running synthesis runs (``--model.synthesis.*``).

    Attributes:
        windowed: the monotonic window on the monitored heads (module docstring).
        window: ``[behind, ahead]`` tokens around the previous peak that stay visible.
        max_stall: steps the peak may stay on one token before it is pushed on (windowed).
        max_length_ratio: cap on an item's frames, as a multiple of its expected length.
        stop_threshold: stop probability at which generation ends.
        griffin_lim_iters: Griffin-Lim iterations of the vocoder.
        by_phrase: synthesise a text one phrase at a time, cut at its inner pauses, and join
            the audio (:func:`generate_by_phrase`), as long-form TTS systems do; attention
            then never has to carry across a sentence's end.
    """

    windowed: bool = True
    window: tuple[int, int] = (1, 3)
    max_stall: int = 12
    max_length_ratio: float = 2.0
    stop_threshold: float = 0.5
    griffin_lim_iters: int = 32
    by_phrase: bool = False


def window_masks(peak: Tensor, token_lengths: Tensor, heads: dict[int, list[int]],
                 num_layers: int, num_heads: int, tokens: int, window: Sequence[int]
                 ) -> list[AttentionMask]:
    """One cross-attention mask per decoder layer for a single step: the monitored heads of
    ``heads`` (layer -> head indices) see only ``[peak - behind, peak + ahead]``; every other
    head sees all valid tokens. ``peak`` ``(B,)``."""
    behind, ahead = window
    position = torch.arange(tokens, device=peak.device)
    near = ((position >= (peak - behind)[:, None])
            & (position <= (peak + ahead)[:, None]))  # (B, N)
    masks = []
    for layer in range(num_layers):
        if layer not in heads:
            masks.append(AttentionMask(key_lengths=token_lengths))
            continue
        allowed = torch.ones(len(peak), num_heads, 1, tokens, dtype=torch.bool,
                             device=peak.device)
        allowed[:, heads[layer], 0] = near[:, None]
        masks.append(AttentionMask(key_lengths=token_lengths, allowed=allowed))
    return masks


def next_peak(attention: Tensor, peak: Tensor, stall: Tensor, token_lengths: Tensor,
              max_stall: int) -> tuple[Tensor, Tensor]:
    """The monitored heads' new peak ``(B,)`` (never behind the previous one) and the updated
    stall counts; a peak that stayed put for more than ``max_stall`` steps moves one token on."""
    new = torch.maximum(attention.argmax(-1), peak)
    stall = torch.where(new == peak, stall + 1, torch.zeros_like(stall))
    stuck = stall > max_stall
    new = torch.where(stuck, torch.minimum(peak + 1, token_lengths - 1), new)
    return new, torch.where(stuck, torch.zeros_like(stall), stall)


@torch.no_grad()
def generate(model: TransformerTTS, tokens: Tensor, token_lengths: Tensor,
             expected_frames: Tensor, heads: dict[int, list[int]], synthesis: Synthesis,
             generators: Sequence[torch.Generator] | None = None) -> Generated:
    """Synthesise a batch of token sequences ``(B, N)`` free-running.

    ``expected_frames`` ``(B,)`` sets each item's cap; ``heads`` (layer -> head indices) are
    the heads whose mean attention is tracked, windowed and returned as the alignment.
    """
    memory, memory_mask = model.encoder(tokens, token_lengths)
    batch, tokens_n = tokens.shape
    r, layers = model.reduction, model.decoder.layers
    cap_steps = torch.ceil(expected_frames.float() * synthesis.max_length_ratio / r).long()
    cap_steps = cap_steps.clamp(min=1).to(tokens.device)
    cache = model.decoder.new_cache()
    frame = memory.new_zeros(batch, 1, model.n_mels)
    peak = torch.zeros(batch, dtype=torch.long, device=tokens.device)
    stall = torch.zeros_like(peak)
    lengths, done = torch.zeros_like(peak), torch.zeros(batch, dtype=torch.bool,
                                                        device=tokens.device)
    capped = torch.zeros_like(done)
    frames, alignment = [], []
    for step in range(int(cap_steps.max())):
        masks = (window_masks(peak, token_lengths, heads, len(layers),
                              layers[0].cross_attention.num_heads, tokens_n, synthesis.window)
                 if synthesis.windowed else memory_mask)
        x = model.positions(model.prenet(frame, generators), offset=step)
        out, maps = model.decoder(x, memory, memory_mask=masks, need_weights=True, cache=cache)
        mel_step = model.mel_out(out).view(batch, r, model.n_mels)
        stop = torch.sigmoid(model.stop_out(out).float()).view(batch, r)
        attention = head_maps(maps, heads)[:, :, 0].mean(1)  # (B, N)
        peak, stall = next_peak(attention, peak, stall, token_lengths, synthesis.max_stall)
        frames.append(mel_step)
        alignment.append(attention)
        fires = stop > synthesis.stop_threshold  # (B, r)
        first_fire = torch.where(fires.any(-1), fires.float().argmax(-1) + 1, r)
        ended = fires.any(-1)
        if synthesis.windowed:
            ended = (ended & (peak >= token_lengths - END_TOKENS)) | (peak >= token_lengths - 1)
        hit_cap = step + 1 >= cap_steps
        newly = ~done & (ended | hit_cap)
        lengths = torch.where(newly, step * r + torch.where(ended, first_fire, r), lengths)
        capped |= newly & ~ended
        done |= newly
        frame = mel_step[:, -1:]
        if bool(done.all()):
            break
    mel = model.refine(torch.cat(frames, dim=1))
    valid = torch.arange(mel.shape[1], device=mel.device)[None] < lengths[:, None]
    return Generated(mel=mel * valid[..., None], lengths=lengths,
                     alignment=torch.stack(alignment, dim=1).float(), capped=capped,
                     steps=torch.div(lengths + r - 1, r, rounding_mode="floor"))


def utterance_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per utterance, seeded by it, for the prenet's inference dropout."""
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


def expected_frames(token_lengths: Tensor, frames_per_token: float) -> Tensor:
    """An item's expected length in frames from its token count (training-set rate)."""
    return (token_lengths.float() * frames_per_token).ceil().clamp(min=1)


def phrase_spans(tokens: Tensor, length: int, pauses: frozenset[int]) -> list[tuple[int, int]]:
    """``[start, end]`` (inclusive) token spans of one item's ``tokens`` ``(N,)``, EOS (its last
    valid token) left out, cut at every inner pause: each span ends on a pause and the next
    starts on it, so every phrase begins and ends with a pause, as a training sentence does."""
    last = length - 2  # the token before EOS
    cuts = [i for i in range(1, last) if int(tokens[i]) in pauses]
    starts, ends = [0, *cuts], [*cuts, last]
    return list(zip(starts, ends, strict=True))


def _stitch(chunks: Generated, spans: list[tuple[int, int]], first: int, tokens: int
            ) -> tuple[Tensor, Tensor, bool]:
    """One item's mel ``(frames, n_mels)``, alignment ``(steps, tokens)`` and capped flag
    from its phrases ``first .. first + len(spans) - 1`` of ``chunks``. A phrase's token j
    is the item's token ``start + j``; its EOS column is folded into its closing pause unless
    it is the item's last phrase (whose EOS is the item's)."""
    mels, maps = [], []
    for k, (start, end) in enumerate(spans):
        i, n = first + k, end - start + 2
        frames, steps = int(chunks.lengths[i]), int(chunks.steps[i])
        mels.append(chunks.mel[i, :frames])
        phrase = chunks.alignment[i, :steps, :n].clone()  # (steps, phrase tokens)
        if k < len(spans) - 1:
            phrase[:, n - 2] += phrase[:, n - 1]
            phrase = phrase[:, :n - 1]
        placed = phrase.new_zeros(steps, tokens)
        placed[:, start:start + phrase.shape[1]] = phrase
        maps.append(placed)
    return torch.cat(mels), torch.cat(maps), bool(chunks.capped[first:first + len(spans)].any())


@torch.no_grad()
def generate_by_phrase(model: TransformerTTS, tokens: Tensor, token_lengths: Tensor,
                       frames_per_token: float, heads: dict[int, list[int]],
                       synthesis: Synthesis, seeds: Sequence[int], pauses: frozenset[int],
                       eos: int) -> Generated:
    """:func:`generate` each item's phrases (:func:`phrase_spans`) as one batch and join each
    item's phrases back into one utterance; the alignment is placed over the item's tokens.
    Phrase k of an item is seeded ``seed * 1000 + k``, so an utterance always comes out the
    same."""
    spans = [phrase_spans(tokens[b], int(token_lengths[b]), pauses) for b in range(len(tokens))]
    batch, lengths = pad_sequences([torch.cat([tokens[b, start:end + 1], tokens.new_tensor([eos])])
                                    for b, item in enumerate(spans) for start, end in item])
    lengths = lengths.to(tokens.device)  # (phrases,)
    chunk_seeds = [seed * 1000 + k for seed, item in zip(seeds, spans, strict=True)
                   for k in range(len(item))]
    chunks = generate(model, batch, lengths, expected_frames(lengths, frames_per_token), heads,
                      synthesis, utterance_generators(chunk_seeds))
    items, first = [], 0
    for item in spans:
        items.append(_stitch(chunks, item, first, tokens.shape[1]))
        first += len(item)
    mel, frames = pad_sequences([m for m, _, _ in items])
    alignment, steps = pad_sequences([a for _, a, _ in items])
    capped = torch.tensor([c for _, _, c in items], device=tokens.device)
    return Generated(mel=mel, lengths=frames.to(tokens.device), alignment=alignment,
                     capped=capped, steps=steps.to(tokens.device))
