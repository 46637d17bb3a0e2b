"""The sentiment head's subword tokenizer: BPE learned from training text, special tokens at
fixed ids, and the tokenizer of a pretrained checkpoint.

The tokenizer travels inside checkpoints as a JSON string (``Tokenizer.to_str()``), so a
checkpoint reads text exactly as its training did.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from suite.checkpoint import load_checkpoint
from suite.errors import DataError, UsageError

# Fixed ids: the model can size its embedding and mask padding before any tokenizer exists.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
REQUIRED_SPECIALS = 4
"""Tokenizers from before masked-LM pretraining lack ``[MASK]``; the first four are in all."""


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """Learn a BPE vocabulary of at most ``vocab_size`` tokens (specials first) from ``texts``.

    BERT normalisation (lower-casing, accent stripping, control-character removal) and
    pre-tokenisation (whitespace and punctuation) come from the library. BPE rather than
    WordPiece, because the tokenizers WordPiece trainer gives a different vocabulary from one
    process to the next, and a run must be reproducible from its seed.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[UNK_ID]))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.get_vocab_size() > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the training alphabet plus "
                         f"special tokens ({tokenizer.get_vocab_size()})")
    return tokenizer


def load_tokenizer(serialized: str) -> Tokenizer:
    """Rebuild a tokenizer from ``Tokenizer.to_str()`` output, checking the special-token ids."""
    tokenizer = Tokenizer.from_str(serialized)
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    if (ids[:REQUIRED_SPECIALS] != list(range(REQUIRED_SPECIALS))
            or ids[MASK_ID] not in (None, MASK_ID)):
        raise DataError(f"tokenizer special tokens {list(SPECIAL_TOKENS)} have ids {ids}, "
                        f"expected {list(range(len(SPECIAL_TOKENS)))}")
    return tokenizer


def pretrained_tokenizer(path: str) -> tuple[Tokenizer, int]:
    """The tokenizer and embedding size of a pretrained sentiment checkpoint: fine-tuning
    must read text exactly as pretraining did, so it takes both instead of learning its own."""
    checkpoint = load_checkpoint(path, "sentiment")
    serialized = checkpoint.get("sentiment_tokenizer")
    if serialized is None:
        raise UsageError(f"{path}: this checkpoint carries no tokenizer; expected one written "
                         "by suite train sentiment")
    return load_tokenizer(serialized), int(checkpoint["hyper_parameters"]["vocab_size"])


