"""Sentiment TaskModule: cross-entropy over classes, accuracy and macro-F1, and the media that
show what the encoder attends to.

The module carries its own tokenizer: it copies it from the data module in :meth:`setup` and
writes it (with the truncation length and class names) into every checkpoint, so
``suite predict sentiment --ckpt C "text"`` needs nothing but the checkpoint.

Optionally a masked-language-model loss is added while training (``mlm_weight > 0``): a
fraction of the word tokens is masked as BERT masks them and the encoder must recover them
from context as well as classify the sentence - self-supervision on the same training text, so
the model stays "from scratch" (no outside data or weights). With ``objective="mlm"`` that loss
is the only one: pretraining on unlabelled reviews, whose encoder a classifier then starts
from (``init_from``, :mod:`tasks.sentiment.pretraining`).

With ``--data.lexicon=true`` (linked to the model's ``lexicon``) each token's embedding also
gets its word's human-rated valence from the VADER lexicon: outside data, but ratings by people,
not pretrained weights. A word masked for the MLM loss keeps its valence, as a word-dropped one
does.

With ``--model.word_vectors glove-6b-50d`` each token's embedding also gets a learned map of its
word's frozen GloVe vector (:mod:`tasks.sentiment.glove`): pretrained word vectors, a
general-English prior. The vectors of the run's vocabulary are looked up when a fit starts and
then travel in the checkpoints, like the tokenizer.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from tokenizers import Encoding
from torch import Tensor

from suite.blocks import LayerConfig
from suite.errors import DataError, UsageError
from suite.logging import log_figure, log_table
from suite.module import ClassificationMetrics, Stage, TaskModule, tsv_field
from tasks.sentiment import glove
from tasks.sentiment.data import SentimentDataModule
from tasks.sentiment.model import (
    Pool,
    Positions,
    SentimentTransformer,
    pool_sequence,
)
from tasks.sentiment.pretraining import IGNORE, MASK_PROBABILITY, load_encoder, mask_tokens
from tasks.sentiment.ratings import CLASS_NAMES
from tasks.sentiment.tokenizer import PAD_ID, UNK_ID, load_tokenizer

Batch = dict[str, Tensor]
ENCODER = LayerConfig(dim=128, depth=2, ffn_dim=256, attention_dropout=0.1)
"""The sentiment head's default encoder size (``--model.encoder.*``)."""


def has_known_word(encoding: Encoding) -> bool:
    """Whether some word of a tokenised text is a single vocabulary token (not ``[UNK]``).

    A text without one reaches the model only as word pieces and unknown characters, so its
    label says little about its meaning even when a probability is printed for it.
    """
    pieces = Counter(w for w in encoding.word_ids if w is not None)  # word -> its token count
    return any(w is not None and pieces[w] == 1 and token != UNK_ID
               for w, token in zip(encoding.word_ids, encoding.ids, strict=True))


def cls_attention_figure(rows: list[tuple[list[str], list[float], str]]) -> Any:
    """Each sentence's tokens in a line, shaded by the attention [CLS] pays them.

    ``rows`` holds ``(tokens, weights, caption)`` per sentence; shading is relative to each
    sentence's largest weight (the [CLS] position itself is left out).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 0.62 * len(rows) + 0.4))
    ax.axis("off")
    ax.set_xlim(0, 1)
    ax.set_ylim(len(rows), 0)
    cmap = plt.get_cmap("Oranges")
    for r, (tokens, weights, caption) in enumerate(rows):
        ax.text(0, r + 0.28, caption, fontsize=7, color="dimgray", va="center")
        top = max(weights[1:], default=1.0) or 1.0
        x = 0.0
        for token, weight in zip(tokens[1:], weights[1:], strict=True):
            width = 0.0075 * (len(token) + 1)
            if x + width > 1:
                break
            ax.text(x, r + 0.68, token, fontsize=8, va="center", family="monospace",
                    bbox={"facecolor": cmap(0.85 * weight / top), "edgecolor": "none",
                          "pad": 1.2})
            x += width
    ax.set_title("attention from [CLS] (last layer, mean over heads)", fontsize=9)
    fig.tight_layout()
    return fig


def layer_level(name: str, depth: int) -> int:
    """A parameter's level for layer-wise learning rates: 0 for the embeddings, ``i + 1`` for
    encoder layer ``i``, ``depth + 1`` for what sits on top (final norm, classifier, MLM head)."""
    match = re.match(r"model\.encoder\.layers\.(\d+)\.", name)
    if match:
        return int(match[1]) + 1
    return 0 if name.startswith(("model.embedding", "model.glove_projection", "model.embed_norm",
                                 "model.positions")) else depth + 1


def read_document(path: str) -> str:
    """A whole text file (a review), for ``suite predict sentiment --documents``."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: no such file (--documents expects text files, each one "
                        f"review)")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 text file (byte {err.start}); --documents "
                        f"expects text files") from err


class SentimentModule(TaskModule):
    """Sentence classification with :class:`tasks.sentiment.model.SentimentTransformer`.

    ``classes``, ``vocab_size``, ``max_length``, ``head_tokens`` and ``lexicon`` are the data
    module's, linked (:data:`tasks.sentiment.HEAD`'s ``links``): a config sets them under
    ``data:`` only.

    Args:
        model: the variant's name in logs, run summaries and reports.
        classes: 2 (polarity) or 5 (rating bins).
        vocab_size: embedding rows (every token id is below it).
        max_length: longest input in tokens incl. [CLS].
        head_tokens: how a longer input was cut in training (the data module's
            ``head_tokens``: None keeps the first tokens, else head + tail), so ``predict`` cuts
            a user's long text the same way.
        encoder: the encoder's size and dropouts; its ``dropout`` also applies to the
            embeddings and before the classifier.
        word_dropout: probability of zeroing a word's embedding while training.
        pool: ``cls``, ``mean`` or ``meanmax``.
        positions: ``sinusoidal`` or ``learned``.
        label_smoothing: cross-entropy label smoothing.
        mlm_weight: weight of the auxiliary masked-LM loss (0 = off).
        mlm_probability: fraction of word tokens masked for it, and for pretraining.
        lexicon: add the VADER lexicon prior to the token embeddings.
        objective: ``classify``, or ``mlm`` - masked-LM pretraining on unlabelled text
            (:mod:`tasks.sentiment.pretraining`); linked from ``data.objective``.
        attention_window: None for full self-attention; else local attention over this many
            tokens on either side plus a global [CLS] (long reviews; see
            :class:`~tasks.sentiment.model.SentimentTransformer`).
        init_from: a pretrained sentiment checkpoint whose encoder (every weight but the
            classifier) starts the fit; linked from ``data.pretrained``, which also gives the
            data module that checkpoint's tokenizer.
        layer_decay: layer-wise learning-rate decay for fine-tuning (Sun et al. 2019; ELECTRA):
            the classifier learns at ``lr``, encoder layer ``i`` of ``L`` at
            ``lr * layer_decay ** (L - i)``, the embeddings at ``lr * layer_decay ** (L + 1)``,
            so the general features of the lower layers move least. 1 = one rate for all.
        word_vectors: ``glove-6b-50d`` adds frozen GloVe vectors through a learned map to the
            token embeddings (:mod:`tasks.sentiment.glove`); None for none. With ``init_from``
            the pretrained checkpoint must have been trained with the same setting.
        The optimiser arguments are :class:`suite.module.TaskModule`'s.
    """

    CURVES = ("val/acc", "val/mlm_loss", "val/mlm_acc")

    def __init__(self, model: str = "transformer", classes: int = 2, vocab_size: int = 8000,
                 max_length: int = 128, encoder: LayerConfig = ENCODER,
                 word_dropout: float = 0.1, pool: Pool = "cls",
                 positions: Positions = "sinusoidal", label_smoothing: float = 0.1,
                 mlm_weight: float = 0.0, mlm_probability: float = MASK_PROBABILITY,
                 lexicon: bool = False, objective: Literal["classify", "mlm"] = "classify",
                 init_from: str | None = None, attention_window: int | None = None,
                 head_tokens: int | None = None, layer_decay: float = 1.0,
                 word_vectors: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if classes not in CLASS_NAMES:
            raise ValueError(f"classes must be one of {sorted(CLASS_NAMES)}, got {classes}")
        if word_vectors not in (None, glove.NAME):
            raise UsageError(f"model.word_vectors must be {glove.NAME} or null (none), "
                             f"got {word_vectors!r}")
        self.model = SentimentTransformer(vocab_size, classes, encoder, pool=pool,
                                          positions=positions, max_length=max_length,
                                          word_dropout=word_dropout, pad_id=PAD_ID,
                                          lexicon=lexicon, window=attention_window,
                                          word_vectors=glove.DIM if word_vectors else 0)
        self.class_names = list(CLASS_NAMES[classes])
        self.tokenizer_json: str | None = None
        self.metrics = ClassificationMetrics(classes)
        self._test_predictions: list[Tensor] = []

    # ------------------------------------------------------------------ data and checkpoint
    def setup(self, stage: str) -> None:
        """Take over the data module's tokenizer (learned in its own ``setup``, after the links
        were applied, so it cannot be linked)."""
        data = getattr(self.trainer, "datamodule", None)
        if isinstance(data, SentimentDataModule) and data.tokenizer is not None:
            self.tokenizer_json = data.tokenizer.to_str()

        # A resumed fit restores the checkpoint's weights and word vectors after this.
        if stage == "fit" and self.hparams.init_from:
            # word vectors included, and checked to be the ones asked for
            load_encoder(self.model, self.hparams.init_from, self.hparams.word_vectors)
        elif stage == "fit" and self.hparams.word_vectors:
            self._fill_word_vectors()

    def _fill_word_vectors(self) -> None:
        """The ``glove`` buffer's rows from GloVe, one per entry of the tokenizer's vocabulary
        (rows past it stay zero)."""
        if self.tokenizer_json is None:
            raise DataError("model.word_vectors needs the sentiment data module's tokenizer, "
                            "and none was handed over")
        tokenizer = load_tokenizer(self.tokenizer_json)
        entries = [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]
        vectors, _ = glove.token_vectors(
            entries, getattr(tokenizer.model, "continuing_subword_prefix", None))
        with torch.no_grad():
            self.model.glove.zero_()
            self.model.glove[:len(entries)] = vectors

    def on_train_start(self) -> None:
        """Log how many vocabulary entries have a word vector (``word_vectors/found``) and
        their share of the vocabulary (``word_vectors/found_share``)."""
        if not self.hparams.word_vectors or self.tokenizer_json is None:
            return
        entries = load_tokenizer(self.tokenizer_json).get_vocab_size()
        found = int(self.model.glove[:entries].any(dim=1).sum())  # GloVe has no all-zero row
        self.log("word_vectors/found", float(found), on_epoch=True)
        self.log("word_vectors/found_share", found / entries, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sentiment_tokenizer"] = self.tokenizer_json

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokenizer_json = checkpoint.get("sentiment_tokenizer") or self.tokenizer_json

    def param_groups(self) -> list[dict[str, Any]]:
        """The base groups split by depth, each with its :attr:`layer_decay`-scaled ``lr``."""
        decay = self.hparams.layer_decay
        if decay == 1.0:
            return super().param_groups()
        depth = len(self.model.encoder.layers)
        scaled: list[dict[str, Any]] = []
        for group in super().param_groups():
            chosen = {id(p) for p in group["params"]}
            by_level: dict[int, list[Tensor]] = {}
            for name, param in self.named_parameters():
                if id(param) in chosen:
                    by_level.setdefault(layer_level(name, depth), []).append(param)
            scaled += [{**group, "params": params,
                        "lr": self.hparams.lr * decay ** (depth + 1 - level)}
                       for level, params in sorted(by_level.items())]
        return scaled

    # ------------------------------------------------------------------ steps
    def forward(self, tokens: Tensor, lengths: Tensor, need_weights: bool = False,
                valence: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """``(B, T)`` token ids and ``(B,)`` lengths (and, with the lexicon prior, ``(B, T)``
        valence) -> logits ``(B, classes)`` and maps."""
        return self.model(tokens, lengths, need_weights, valence)

    def _valence(self, batch: dict[str, Any]) -> Tensor | None:
        """The batch's ``(B, T)`` valence on this device when the model uses the lexicon."""
        return batch["valence"].to(self.device) if self.hparams.lexicon else None

    def batch_size(self, batch: Batch) -> int:
        return len(batch["labels"])

    def _mask(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """BERT's masking of the batch (:func:`tasks.sentiment.pretraining.mask_tokens`)."""
        return mask_tokens(tokens, lengths, self.hparams.vocab_size,
                           self.hparams.mlm_probability)

    def _mlm_loss(self, hidden: Tensor, targets: Tensor, stage: Stage, n: int) -> Tensor:
        """Cross-entropy of the masked positions' predictions; logs ``<stage>/mlm_loss`` and
        ``<stage>/mlm_acc`` (share of masked tokens restored)."""
        chosen = targets != IGNORE  # (B, T)
        logits = self.model.mlm_logits(hidden[chosen]).float()  # (N, vocab)
        loss = F.cross_entropy(logits, targets[chosen]) if chosen.any() else hidden.sum() * 0
        self.log(f"{stage}/mlm_loss", loss, batch_size=n, on_epoch=True,
                 on_step=stage == "train", prog_bar=True)
        if chosen.any():
            accuracy = (logits.argmax(-1) == targets[chosen]).float().mean()
            self.log(f"{stage}/mlm_acc", accuracy, batch_size=n, on_epoch=True, on_step=False)
        return loss

    def step(self, batch: Batch, stage: Stage) -> Tensor:
        tokens, lengths, labels = batch["tokens"], batch["lengths"], batch["labels"]
        n = self.batch_size(batch)
        if self.hparams.objective == "mlm":
            inputs, targets = self._mask(tokens, lengths)
            hidden, _ = self.model.encode(inputs, lengths, valence=self._valence(batch))
            return self._mlm_loss(hidden, targets, stage, n)
        use_mlm = stage == "train" and self.hparams.mlm_weight > 0
        if use_mlm:
            tokens, targets = self._mask(tokens, lengths)
        hidden, _ = self.model.encode(tokens, lengths, valence=self._valence(batch))  # (B, T, D)
        pooled = pool_sequence(hidden, lengths, self.model.pool)  # (B, D) or (B, 2D)
        logits = self.model.classifier(pooled)  # (B, classes)
        loss = F.cross_entropy(logits.float(), labels,
                               label_smoothing=self.hparams.label_smoothing)
        if use_mlm:
            loss = loss + self.hparams.mlm_weight * self._mlm_loss(hidden, targets, stage, n)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n, on_epoch=True,
                 on_step=stage == "train")
        self.metrics.log_batch(self, stage, logits, labels, n)
        if stage == "test":
            self._test_predictions.append(logits.detach().float().softmax(-1).cpu())
        return loss

    # ------------------------------------------------------------------ media
    def on_test_epoch_start(self) -> None:
        self._test_predictions = []

    def on_test_epoch_end(self) -> None:
        if self.hparams.objective == "mlm":
            return
        self.metrics.log_confusion(self, self.class_names)
        data = getattr(self.trainer, "datamodule", None)
        if not isinstance(data, SentimentDataModule) or not data.splits:
            return
        texts, labels = data.splits["test"]
        probs = torch.cat(self._test_predictions) if self._test_predictions else None
        if probs is not None and len(probs) == len(texts):  # one device, loader in file order
            self._log_misclassified(texts, labels, probs)
        per_class = -(-8 // len(self.class_names))  # about 8 samples, every class shown
        picks = [i for c in range(len(self.class_names))
                 for i in [j for j, y in enumerate(labels) if y == c][:per_class]]
        self._log_cls_attention(data, [texts[i] for i in picks], [labels[i] for i in picks])

    def _log_misclassified(self, texts: list[str], labels: list[int], probs: Tensor,
                           count: int = 50) -> None:
        """The ``count`` test sentences the model got wrong most confidently."""
        predicted = probs.argmax(-1)
        wrong = [i for i in range(len(texts)) if predicted[i] != labels[i]]
        wrong.sort(key=lambda i: -float(probs[i, predicted[i]]))
        rows = [[texts[i], self.class_names[labels[i]], self.class_names[int(predicted[i])],
                 round(float(probs[i, predicted[i]]), 3)] for i in wrong[:count]]
        log_table(self, "test/misclassified", ["text", "true", "predicted", "probability"],
                  rows)

    def _log_cls_attention(self, data: SentimentDataModule, texts: list[str],
                           labels: list[int]) -> None:
        """Last layer's [CLS] attention (head mean) drawn over each sample sentence's tokens."""
        batch = data.encode(texts)
        tokens, lengths = batch["tokens"].to(self.device), batch["lengths"].to(self.device)
        logits, maps = self(tokens, lengths, need_weights=True, valence=self._valence(batch))
        weights = maps[-1][:, :, 0].float().mean(dim=1).cpu()  # (B, T): [CLS] row, heads mean
        predicted = logits.float().softmax(-1).cpu()
        rows = []
        for i, length in enumerate(lengths.tolist()):
            pieces = [data.tokenizer.id_to_token(t) for t in tokens[i, :length].tolist()]
            label = int(predicted[i].argmax())
            rows.append((pieces, weights[i, :length].tolist(),
                         f"true {self.class_names[labels[i]]}, predicted "
                         f"{self.class_names[label]} ({float(predicted[i, label]):.2f})"))
        log_figure(self, "test/cls_attention", cls_attention_figure(rows))

    # ------------------------------------------------------------------ predict
    def predict_inputs(self, inputs: list[str], documents: bool = False) -> list[str]:
        """``label<TAB>probability<TAB>text`` per input, tabs and line breaks in the text
        escaped (:func:`suite.module.tsv_field`); with ``documents`` each input is a text file
        classified whole (a review) and its row names the file. A text with no tokens stops
        the run with one :class:`DataError`; a text longer than ``max_length`` tokens is cut as
        in training (its first tokens, or head + tail), and one with no word in the vocabulary
        (:func:`has_known_word`) is classified anyway, each with a notice on stderr."""
        if self.tokenizer_json is None:
            raise DataError("this checkpoint carries no tokenizer; it was not written by "
                            "suite train sentiment")
        hp = self.hparams
        encoder = SentimentDataModule(classes=hp.classes, vocab_size=hp.vocab_size,
                                      max_length=hp.max_length, lexicon=hp.lexicon,
                                      head_tokens=hp.head_tokens)
        encoder.load_state_dict({"tokenizer": self.tokenizer_json})
        names = list(inputs)
        if documents:
            inputs = [read_document(name) for name in names]
        batch = encoder.encode(list(inputs))
        kept = "its first" if hp.head_tokens is None else "its head and tail,"
        for i, cut in enumerate(batch["truncated"]):
            if cut:
                print(f"notice: input {i + 1} is longer than {hp.max_length - 1} tokens; "
                      f"classified on {kept} {hp.max_length - 1}", file=sys.stderr)
        for i, encoding in enumerate(encoder.tokenizer.encode_batch(list(inputs),
                                                                    add_special_tokens=False)):
            if not has_known_word(encoding):
                print(f"notice: no word of input {i + 1} is in the model's vocabulary (only "
                      "word pieces or unknown characters); classified anyway, the label may "
                      "mean little", file=sys.stderr)
        logits, _ = self(batch["tokens"].to(self.device), batch["lengths"].to(self.device),
                         valence=self._valence(batch))
        probs = logits.float().softmax(-1).cpu()  # (N, classes)
        confidence, label = probs.max(dim=-1)
        return [f"{self.class_names[c]}\t{p:.3f}\t{tsv_field(text)}" for text, c, p in
                zip(names, label.tolist(), confidence.tolist(), strict=True)]
