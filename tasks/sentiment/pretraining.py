"""Self-supervised pretraining of the sentiment encoder, and loading it into a classifier.

BERT (Devlin et al. 2019) hides some of the word tokens and trains the encoder to restore them
from the context on both sides - the masked language model (MLM). Of the chosen tokens 80%
become ``[MASK]``, 10% a random token and 10% stay as they are: the encoder cannot tell which
inputs are genuine, so it must build a useful representation of every token, not only of
``[MASK]`` (which fine-tuning never shows it). Unlabelled reviews teach the encoder English -
which words go together, what negation and intensifiers do - that ten thousand labelled
sentences cannot; fine-tuning then starts from those weights (:func:`load_encoder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from suite.checkpoint import load_checkpoint
from suite.errors import UsageError
from tasks.sentiment.glove import check_pretrained
from tasks.sentiment.tokenizer import MASK_ID, SPECIAL_TOKENS

MASK_PROBABILITY = 0.15
"""Share of the word tokens BERT chooses to predict."""
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1
"""Of the chosen tokens: replaced by ``[MASK]``, by a random token; the rest stay unchanged."""
IGNORE = -100
"""Target of a token not chosen (``F.cross_entropy``'s ``ignore_index``)."""
HEAD_PREFIXES = ("classifier.",)
"""Parameters a pretrained encoder does not carry over: the task's classifier."""


def window_starts(length: int, room: int) -> list[int]:
    """Where the windows of ``room`` tokens that cover a text of ``length`` tokens begin: every
    ``room`` tokens, the last one ending at the text's end (it overlaps the one before rather
    than leaving a scrap too short to mask); one window for a text that fits."""
    if length <= room:
        return [0]
    return [*range(0, length - room, room), length - room]


def mask_tokens(tokens: Tensor, lengths: Tensor, vocab_size: int,
                probability: float = MASK_PROBABILITY,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masking rule on a batch ``tokens`` ``(B, T)`` of lengths ``(B,)``.

    Only word tokens are chosen (never ``[CLS]``, padding or another special token), each with
    ``probability``; random replacements are word tokens too. Returns the encoder's ``inputs``
    ``(B, T)`` and the ``targets`` ``(B, T)``: the original id where a token was chosen,
    :data:`IGNORE` elsewhere. ``generator`` (on ``tokens``' device) makes it repeatable.
    """
    def uniform() -> Tensor:
        return torch.rand(tokens.shape, generator=generator, device=tokens.device)

    valid = torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths[:, None]
    words = valid & (tokens >= len(SPECIAL_TOKENS))  # (B, T)
    chosen = words & (uniform() < probability)
    roll = uniform()
    to_mask = chosen & (roll < MASK_SHARE)
    to_random = chosen & (roll >= MASK_SHARE) & (roll < MASK_SHARE + RANDOM_SHARE)
    random_ids = torch.randint(len(SPECIAL_TOKENS), vocab_size, tokens.shape,
                               generator=generator, device=tokens.device)
    inputs = torch.where(to_random, random_ids, tokens.masked_fill(to_mask, MASK_ID))
    return inputs, tokens.masked_fill(~chosen, IGNORE)


def encoder_state(checkpoint: dict[str, Any]) -> dict[str, Tensor]:
    """The checkpoint's :class:`~tasks.sentiment.model.SentimentTransformer` weights without
    the classifier, keyed as the model's own ``state_dict``."""
    prefix = "model."
    return {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items()
            if key.startswith(prefix) and not key[len(prefix):].startswith(HEAD_PREFIXES)}


def load_encoder(model: nn.Module, path: str | Path, word_vectors: str | None = None) -> None:
    """Load a pretrained encoder (every weight but the classifier) into ``model``, strictly:
    the same keys with the same shapes, else one :class:`UsageError` naming the differences
    (a checkpoint of another size, or not of the sentiment head); one too when the checkpoint
    was pretrained with other ``word_vectors`` (:func:`tasks.sentiment.glove.check_pretrained`)."""
    checkpoint = load_checkpoint(path, "sentiment")
    check_pretrained(checkpoint, path, word_vectors)
    weights = encoder_state(checkpoint)
    wanted = {key: value for key, value in model.state_dict().items()
              if not key.startswith(HEAD_PREFIXES)}
    missing = sorted(set(wanted) - set(weights))
    unexpected = sorted(set(weights) - set(wanted))
    shapes = sorted(f"{key} {tuple(weights[key].shape)} vs {tuple(wanted[key].shape)}"
                    for key in set(wanted) & set(weights)
                    if weights[key].shape != wanted[key].shape)
    problems = [f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for name, keys in (("missing", missing), ("unexpected", unexpected),
                                   ("shape (checkpoint vs model)", shapes)) if keys]
    if problems:
        raise UsageError(f"{path}: its encoder does not fit this model ({'; '.join(problems)}); "
                         "fine-tune with the encoder settings it was pretrained with")
    model.load_state_dict(weights, strict=False)
