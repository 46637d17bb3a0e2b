"""ASR TaskModule: CTC loss, greedy / beam(+LM) decoding, WER/CER on both test sets, media,
and ``predict`` (offline or streaming) on a user's audio files.

The checkpoint carries everything predict needs without a data module: the training-set
feature mean/std (buffers), the output units' symbols (``vocab``, checked on load) and, for
word pieces, their tokenizer (``asr_tokenizer``), learned from the training transcripts.

Two training-only options of the recipe live here: intermediate CTC (``inter_ctc_layer``, the
loss ``(1 - w) * CTC_final + w * CTC_inter``) and, when the data module ramps SpecAugment in
(``data.spec_augment_ramp``), masking each padded batch at the width the global step gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.text import CharErrorRate, WordErrorRate

from suite.blocks import LayerConfig
from suite.errors import DataError, UsageError
from suite.logging import log_figure, log_table
from suite.module import Stage, TaskModule, tsv_field
from tasks.asr.decode import CharNGram, beam_decode, ctc_min_frames, greedy_decode
from tasks.asr.features import N_MELS, load_audio_file
from tasks.asr.model import ASREncoder
from tasks.asr.text import BLANK_ID
from tasks.asr.units import CHAR, CHAR_UNITS, OutputUnits, load_units, train_units, units_size
from tasks.asr.wordlm import WordDecoder

TEST_NAMES = {"all": ("unseen", "real"), "unseen_voices": ("unseen",), "asterisk": ("real",)}
"""Metric suffix of each test dataloader, by the data module's ``test_set``."""

ENCODER = LayerConfig(dim=192, ffn_dim=768)
"""The ASR head's default encoder size (``--model.encoder.*``)."""


@dataclass(frozen=True)
class Decoding:
    """How the test sets are decoded beside greedy CTC (``--model.decoding.*``); the language
    models are built from the training transcripts, beside one general English LM.

    Attributes:
        beam_size: > 0 also scores the test sets with prefix beam search (``*_beam`` metrics).
        lm_order: order of the character n-gram fused into the beam search; 0 for none.
        lm_alpha, lm_beta: LM weight and per-character bonus of the fusion.
        word_lm_order: > 0 (with ``beam_size``) also scores the test sets with lexicon beam
            search under a word n-gram of this order (:class:`tasks.asr.wordlm.WordDecoder`;
            ``*_word`` metrics).
        word_beam, word_lm_weight, word_score: its beam, LM weight and per-word bonus, picked
            on the validation set of the default run's checkpoint (a grid of weight x score).
        general_lm_order: > 0 (with ``beam_size``) also scores the test sets with the same
            search over pocketsphinx's general English words and LM of this order (2 or 3;
            :mod:`tasks.asr.general_lm`; ``*_general`` metrics); ``word_beam`` is its beam.
        general_lm_weight, general_word_score: its LM weight and per-word bonus.
    """

    beam_size: int = 0
    lm_order: int = 6
    lm_alpha: float = 0.5
    lm_beta: float = 1.0
    word_lm_order: int = 3
    word_beam: int = 200
    word_lm_weight: float = 1.0
    word_score: float = -1.0
    general_lm_order: int = 2
    general_lm_weight: float = 1.0
    general_word_score: float = -1.0


class ASRModule(TaskModule):
    """Conv subsampling + truncated-attention Transformer encoder + CTC over output units.

    Args:
        encoder: the Transformer encoder's size.
        units: the CTC outputs: ``char`` (characters), or ``bpe-N`` (N outputs: the blank and
            word pieces learned from the training transcripts, :mod:`tasks.asr.units`).
        subsampling: 1, 2, 4 or 8 (Conv2d stride-2 stack before the encoder); 8 needs word
            pieces, as speech has more characters than 8x encoder frames.
        conv_channels: channels of the subsampling convolutions.
        window: ``[left, right]`` attention span in encoder (post-subsampling) frames; null
            for full attention.
        conv_kernel: depthwise kernel of the Conformer convolution module after each layer
            (odd, in encoder frames); 0 for a plain Transformer encoder.
        utterance_norm: subtract each utterance's mean log-mel frame (cepstral mean
            normalisation) after the global normalisation.
        decoding: the test-time decoders beside greedy (:class:`Decoding`).
        stream_chunk: encoder frames per chunk for ``predict --stream``.
        inter_ctc_layer: intermediate CTC (InterCTC, Lee & Watanabe 2021) on the output of this
            encoder layer (1 to depth - 1), through the final norm and output projection (shared,
            :mod:`tasks.asr.model`); training only, logged as ``train/ctc_inter`` beside
            ``train/ctc_final``. Null for none.
        inter_ctc_weight: its weight ``w`` in the training loss
            ``(1 - w) * CTC_final + w * CTC_inter`` (used only with ``inter_ctc_layer``).
        model: the run's model name (default from the window and the convolution, e.g.
            ``ctc-w16-16``, ``conformer-ctc-full``).
    The optimiser arguments are :class:`suite.module.TaskModule`'s.
    """

    def __init__(self, encoder: LayerConfig = ENCODER, units: str = CHAR, subsampling: int = 4,
                 conv_channels: int = 64, window: list[int] | None = (16, 16),
                 conv_kernel: int = 0, utterance_norm: bool = False,
                 decoding: Decoding = Decoding(), stream_chunk: int = 64,
                 model: str | None = None, inter_ctc_layer: int | None = None,
                 inter_ctc_weight: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= inter_ctc_weight <= 1.0:
            raise UsageError(f"model.inter_ctc_weight must be in [0, 1], got {inter_ctc_weight}")
        self.decoding = decoding
        window = tuple(window) if window is not None else None
        self.hparams["window"] = list(window) if window is not None else None
        family = "conformer-ctc" if conv_kernel else "ctc"
        self.hparams["model"] = model or (f"{family}-full" if window is None
                                          else f"{family}-w{window[0]}-{window[1]}")
        self.model = ASREncoder(units_size(units), encoder, n_mels=N_MELS,
                                subsampling=subsampling, conv_channels=conv_channels, window=window,
                                conv_kernel=conv_kernel, utterance_norm=utterance_norm,
                                inter_layer=inter_ctc_layer)
        self.register_buffer("feature_mean", torch.zeros(N_MELS))
        self.register_buffer("feature_std", torch.ones(N_MELS))
        # word pieces are learned in setup, or restored from a checkpoint
        self.units: OutputUnits | None = CHAR_UNITS if units == CHAR else None
        self._lm_texts: list[str] | None = None
        self.lm: CharNGram | None = None
        self.word_decoder: WordDecoder | None = None
        self.general_decoder: WordDecoder | None = None
        self.metrics = torch.nn.ModuleDict()
        # greedy, character beam + LM, lexicon + word LM of the training text / general English
        decoders = ("", "_beam", "_word", "_general")
        for key in ("val", *(f"test_{n}{d}" for n in ("unseen", "real") for d in decoders)):
            self.metrics[key] = torch.nn.ModuleDict({"cer": CharErrorRate(),
                                                     "wer": WordErrorRate()})
        self._test_name = "unseen"
        self._examples: dict[str, dict[str, Any]] = {}
        self._ramp_start = 0  # the optimiser step SpecAugment's ramp starts at (on_train_start)

    @classmethod
    def legacy_renames(cls, settings: Mapping[str, Any]) -> dict[str, str | None]:
        """The decoding options were flat init arguments (``beam_size``) before :class:`Decoding`
        grouped them."""
        return {f.name: f"decoding.{f.name}" for f in fields(Decoding)}

    @classmethod
    def upgrade_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """As :meth:`TaskModule.upgrade_settings`; settings saved before word pieces name no
        ``units``: they are a character model's (today's default config would say otherwise)."""
        return {"units": CHAR} | super().upgrade_settings(settings)

    # ------------------------------------------------------------------ setup / checkpoint
    def _datamodule(self) -> Any:
        return getattr(self._trainer, "datamodule", None) if self._trainer else None

    def setup(self, stage: str) -> None:
        """Take the training-set statistics, learn the word pieces unless they exist (a
        checkpoint restored after this replaces them), hand the units to the data module for
        its targets, and keep the training transcripts for the test-time LMs."""
        datamodule = self._datamodule()
        if datamodule is None:
            return
        if stage == "fit":
            self.feature_mean.copy_(datamodule.feature_mean)
            self.feature_std.copy_(datamodule.feature_std)
        if self.units is None:
            self.units = train_units(self.hparams.units, datamodule.train_texts())
        datamodule.units = self.units
        decoding = self.decoding
        if decoding.beam_size and (decoding.lm_order or decoding.word_lm_order
                                   or decoding.general_lm_order):
            self._lm_texts = datamodule.train_texts()  # the LMs' text: training only

    def on_test_start(self) -> None:
        """Build the test-time LMs (after any checkpoint restore: the lexicon spells words in
        the restored units)."""
        decoding, texts = self.decoding, self._lm_texts
        if texts is None:
            return
        if decoding.lm_order and self.lm is None:
            self.lm = CharNGram(texts, decoding.lm_order)
        if decoding.word_lm_order and self.word_decoder is None:
            self.word_decoder = self.lexicon_decoder("word", decoding.word_lm_weight,
                                                     decoding.word_score)
        if decoding.general_lm_order and self.general_decoder is None:
            self.general_decoder = self.lexicon_decoder("general", decoding.general_lm_weight,
                                                        decoding.general_word_score)

    def lexicon_decoder(self, vocabulary: Literal["word", "general"], lm_weight: float,
                        word_score: float) -> WordDecoder:
        """A lexicon beam search over this model's units (``model.decoding.word_beam``) with
        the training transcripts' words and word n-gram (``word``) or general English's
        (``general``), weighted as given (:meth:`lexicon_decoders` for several weightings)."""
        return self.lexicon_decoders(vocabulary, [(lm_weight, word_score)])[0]

    def lexicon_decoders(self, vocabulary: Literal["word", "general"],
                         weights: Sequence[tuple[float, float]]) -> list[WordDecoder]:
        """:meth:`lexicon_decoder` for each ``(lm_weight, word_score)``, the vocabulary's LM
        built once (a tuning stage's grid)."""
        decoding = self.decoding
        if vocabulary == "general":
            return WordDecoder.grid(self._units(), decoding.general_lm_order, None, weights,
                                    decoding.word_beam)
        if self._lm_texts is None:
            raise DataError("the word LM is built from the training transcripts, and this "
                            "model was given none (set up with its data module first)")
        return WordDecoder.grid(self._units(), decoding.word_lm_order, self._lm_texts, weights,
                                decoding.word_beam)

    def _units(self) -> OutputUnits:
        if self.units is None:
            raise DataError(f"model.units={self.hparams.units}: no word pieces yet; they are "
                            "learned in setup from the training transcripts or loaded from a "
                            "checkpoint")
        return self.units

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        units = self._units()
        checkpoint["vocab"] = units.symbols
        if units.to_str() is not None:
            checkpoint["asr_tokenizer"] = units.to_str()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore (and check) the checkpoint's units; checkpoints from before subword units
        are character models."""
        spec = self.hparams.units
        saved = checkpoint.get("hyper_parameters", {}).get("units", CHAR)
        if saved != spec:
            raise DataError(f"checkpoint has model.units={saved}, this model {spec}")
        units = load_units(spec, checkpoint.get("asr_tokenizer"))
        if checkpoint.get("vocab", units.symbols) != units.symbols:
            raise DataError(f"checkpoint vocabulary {checkpoint['vocab']} differs from this "
                            f"code's {units.symbols}")
        if units is not self.units:
            # the lexicons spell in the old units
            self.units, self.word_decoder, self.general_decoder = units, None, None
        datamodule = self._datamodule()
        if datamodule is not None:
            datamodule.units = units

    # ------------------------------------------------------------------ training / eval
    def batch_size(self, batch: dict[str, Any]) -> int:
        return batch["features"].shape[0]

    def on_train_start(self) -> None:
        """SpecAugment's ramp starts where the learning-rate warmup ends (the same count of
        steps the optimiser warms up over)."""
        self._ramp_start = self.warmup_length()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Mask the padded batch first when the data module ramps SpecAugment in
        (:attr:`tasks.asr.data.ASRDataModule.batch_augment`); the scale is logged."""
        augment = getattr(self._datamodule(), "batch_augment", None)
        if augment is not None:
            scale = augment.ramp(self.global_step, self._ramp_start)
            features = augment(batch["features"], batch["feature_lengths"], scale)
            batch = {**batch, "features": features}
            self.log("train/spec_augment_scale", scale, batch_size=self.batch_size(batch))
        return super().training_step(batch, batch_idx)

    def _ctc(self, log_probs: Tensor, lengths: Tensor, batch: dict[str, Any]) -> Tensor:
        # ctc_loss wants (T, B, V); "mean" divides each utterance's loss by its target length.
        return F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], lengths,
                          batch["target_lengths"], blank=BLANK_ID, zero_infinity=True)

    def _inter_ctc_loss(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """InterCTC's training loss ``(1 - w) * CTC_final + w * CTC_inter`` (both parts
        logged), with the final log-probs and their lengths."""
        final, middle, lengths = self.model.forward_inter(batch["features"],
                                                          batch["feature_lengths"])
        ctc_final, ctc_inter = self._ctc(final, lengths, batch), self._ctc(middle, lengths, batch)
        n = self.batch_size(batch)
        self.log("train/ctc_final", ctc_final, batch_size=n)
        self.log("train/ctc_inter", ctc_inter, batch_size=n)
        weight = self.hparams.inter_ctc_weight
        return final, lengths, (1 - weight) * ctc_final + weight * ctc_inter

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        test_set = self.trainer.datamodule.test_set if self.trainer.datamodule else "all"
        self._test_name = TEST_NAMES[test_set][dataloader_idx]
        self.step(batch, "test")

    def step(self, batch: dict[str, Any], stage: Stage) -> Tensor:
        if stage == "train" and self.model.inter_layer is not None:
            log_probs, lengths, loss = self._inter_ctc_loss(batch)
        else:
            log_probs, lengths, _ = self.model(batch["features"], batch["feature_lengths"])
            loss = self._ctc(log_probs, lengths, batch)
        n = self.batch_size(batch)
        suffix = f"_{self._test_name}" if stage == "test" else ""
        self.log(f"{stage}/loss{suffix}", loss, prog_bar=stage == "train", batch_size=n,
                 add_dataloader_idx=False)
        if stage != "test":  # the CTC length check: such utterances teach nothing (zero loss)
            too_short = lengths < ctc_min_frames(batch["targets"], batch["target_lengths"])
            self.log(f"{stage}/ctc_too_short", too_short.float().mean(), batch_size=n)
        if stage == "train":
            return loss
        texts = self._units().texts
        hypotheses = greedy_decode(log_probs, lengths, texts)
        self._score(stage + suffix, hypotheses, batch["texts"], n)
        if stage == "test":
            if self.decoding.beam_size:
                beams = beam_decode(log_probs, lengths, self.decoding.beam_size, self.lm,
                                    self.decoding.lm_alpha, self.decoding.lm_beta, texts)
                self._score(f"test{suffix}_beam", beams, batch["texts"], n)
            if self.word_decoder is not None:
                words = self.word_decoder(log_probs, lengths)
                self._score(f"test{suffix}_word", words, batch["texts"], n)
            if self.general_decoder is not None:
                words = self.general_decoder(log_probs, lengths)
                self._score(f"test{suffix}_general", words, batch["texts"], n)
            self._examples.setdefault(self._test_name, {
                "features": batch["features"][:1, : batch["feature_lengths"][0]],
                "log_probs": log_probs[0, : lengths[0]].detach(),
                "rows": list(zip(batch["texts"][:8], hypotheses[:8], strict=False))})
        return loss

    def _score(self, key: str, hypotheses: list[str], references: list[str], n: int) -> None:
        stage, _, name = key.partition("_")
        for metric, meter in self.metrics[key].items():
            meter.update(hypotheses, references)
            self.log(f"{stage}/{metric}{'_' + name if name else ''}", meter, batch_size=n,
                     add_dataloader_idx=False, prog_bar=stage == "val")

    # ------------------------------------------------------------------ media
    def on_test_epoch_end(self) -> None:
        rows = []
        for name, example in self._examples.items():
            rows += [[name, ref, hyp] for ref, hyp in example["rows"]]
            self._log_alignment(name, example["features"][0], example["log_probs"],
                                example["rows"][0][0])
            with torch.no_grad():
                _, _, maps = self.model(example["features"],
                                        torch.tensor([example["features"].shape[1]],
                                                     device=self.device), need_weights=True)
            heads = maps[-1][0]  # last layer (H, T', T')
            self.log_attention_maps(heads, f"test/attention_{name}",
                                    [f"last layer, head {h}" for h in range(len(heads))])
        if rows:
            log_table(self, "test/transcripts", ["test set", "reference", "greedy"], rows)
        self._examples = {}

    def _log_alignment(self, name: str, features: Tensor, log_probs: Tensor, text: str) -> None:
        """Log-mel spectrogram over the CTC posteriors ``(T', V)`` with the greedy path."""
        import matplotlib.pyplot as plt

        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=False)
        top.imshow(features.float().cpu().T.numpy(), origin="lower", aspect="auto")
        top.set(title=f"{name}: {text[:80]}", ylabel="mel bin", xlabel="frame (10 ms)")
        posteriors = log_probs.float().exp().cpu()
        bottom.imshow(posteriors.T.numpy(), origin="lower", aspect="auto", cmap="magma")
        best = posteriors.argmax(-1).tolist()
        symbols = self._units().symbols
        for t, s in enumerate(best):
            if s != BLANK_ID and (t == 0 or best[t - 1] != s):
                label = "|" if symbols[s] == " " else symbols[s]
                bottom.text(t, s, label, color="cyan", fontsize=7)
        bottom.set(ylabel="symbol (0 = blank)", xlabel="encoder frame",
                   title="CTC posteriors and greedy alignment")
        fig.tight_layout()
        log_figure(self, f"test/ctc_alignment_{name}", fig)

    # ------------------------------------------------------------------ predict
    def transcribe(self, features: Tensor, stream: bool = False) -> str:
        """Greedy transcript of one normalised utterance ``(T, 80)``; ``stream`` encodes it
        chunk by chunk (bounded memory, same output as offline)."""
        features = features.to(self.device)
        if stream:
            log_probs = self.model.stream(features, self.hparams.stream_chunk)[None]
        else:
            log_probs, _, _ = self.model(features[None], torch.tensor([len(features)]))
        return greedy_decode(log_probs, torch.tensor([log_probs.shape[1]]),
                             self._units().texts)[0]

    def predict_inputs(self, inputs: list[str], stream: bool = False) -> list[str]:
        """``<file>\t<transcript>`` per audio file (any rate, mono or stereo); ``stream``
        decodes chunk by chunk (``--stream``)."""
        if stream and self.model.window is None:
            raise DataError("--stream needs a model with a truncated attention window; this "
                            "checkpoint uses full attention")
        lines = []
        for path in inputs:
            features = load_audio_file(path, self.feature_mean.cpu(), self.feature_std.cpu())
            lines.append(f"{tsv_field(path)}\t{self.transcribe(features, stream)}")
        return lines
