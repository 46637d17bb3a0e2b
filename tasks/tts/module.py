"""TTS TaskModule: teacher-forced training with guided attention, alignment metrics every
validation, free-running test with attention-error counts, and ``predict`` to WAV files.

Loss = L1(mel before postnet) + L1(mel after postnet) + BCE(stop, positive weight)
       + lambda * guided attention loss (:mod:`tasks.tts.alignment`) on the guided heads.

The checkpoint carries what predict needs without a data module: the training set's per-bin
mel statistics and its frames-per-token rate (buffers), and the input units.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from suite.blocks import LayerConfig
from suite.errors import UsageError
from suite.module import Stage, TaskModule
from tasks.asr.features import N_MELS, SAMPLE_RATE
from tasks.tts import alignment as align
from tasks.tts.corpus import EOS, encode, silent_ids
from tasks.tts.data import TEST_SETS
from tasks.tts.media import TestLog, write_prediction
from tasks.tts.model import Generated, TransformerTTS
from tasks.tts.synthesis import (
    Synthesis,
    expected_frames,
    generate,
    generate_by_phrase,
    utterance_generators,
)
from tasks.tts.vocoder import GriffinLimVocoder

ENCODER = LayerConfig(dim=256, depth=3, ffn_dim=1024)
"""The TTS head's default encoder size (``--model.encoder.*``)."""
DECODER = LayerConfig(dim=256, depth=3, ffn_dim=1024)
"""The default decoder size (``--model.decoder.*``)."""
SYNTHESIS = Synthesis()
"""The default free-running synthesis (``--model.synthesis.*``)."""
ALIGNED_ACCURACY = 0.9
"""Validation alignment accuracy from which a model counts as aligned."""
DIAGONALITY_SIGMA = 0.2
"""Width of the diagonal the diagonality metric measures against, the same for every run
whatever its guidance, so runs compare."""


@dataclass(frozen=True)
class Guidance:
    """The guided attention loss (``--model.guidance.*``).

    Attributes:
        weight: lambda; 0 trains unguided.
        sigma: the prior's width g, as a fraction of the sequence.
        prior: ``diagonal`` (n/N ~ t/T, Tachibana et al.) or ``aligned`` (centred on flite's
            true phone at each step: "pre-aligned" guidance; needs phone input).
        layers, heads: the guided heads are the first ``heads`` heads of the last ``layers``
            decoder layers (ESPnet guides 2 heads of the last 2 layers).
        anneal_steps: > 0 decays lambda linearly to 0 over this many steps once validation
            says the model is aligned (:data:`ALIGNED_ACCURACY`, held at two evaluations).
    """

    weight: float = 1.0
    sigma: float = 0.2
    prior: Literal["diagonal", "aligned"] = "diagonal"
    layers: int = 2
    heads: int = 2
    anneal_steps: int = 0


class TTSModule(TaskModule):
    """Phones (or characters) -> log-mel with :class:`tasks.tts.model.TransformerTTS`.

    Args:
        vocab_size, units: the input units, from the data module (linked).
        encoder, decoder: the two Transformer stacks' sizes.
        reduction: mel frames per decoder step (r).
        conv_layers, postnet_layers, prenet_dropout: see :class:`TransformerTTS`.
        guidance: the guided attention loss (:class:`Guidance`).
        scheduled_sampling: the largest share of decoder inputs replaced by the model's own
            frames (from a first teacher-forced pass), reached halfway through training and
            ramped linearly from 0; 0 is pure teacher forcing.
        stop_weight: positive-class weight of the stop BCE (one stop frame per utterance).
        synthesis: how free-running synthesis runs (:class:`tasks.tts.synthesis.Synthesis`).
        model: the run's model name (default from the guidance: ``tts-guided``,
            ``tts-unguided``, ``tts-aligned``).
    The optimiser arguments are :class:`suite.module.TaskModule`'s.
    """

    CURVES = ("val/align_acc", "val/focus_rate", "val/diagonality", "val/attention_entropy",
              "val/mel_l1")

    def __init__(self, vocab_size: int = 64, units: Literal["phones", "chars"] = "phones",
                 encoder: LayerConfig = ENCODER, decoder: LayerConfig = DECODER,
                 reduction: int = 4, conv_layers: int = 3, postnet_layers: int = 5,
                 prenet_dropout: float = 0.5, guidance: Guidance = Guidance(),
                 scheduled_sampling: float = 0.0, stop_weight: float = 5.0,
                 synthesis: Synthesis = SYNTHESIS, model: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if guidance.prior == "aligned" and units != "phones":
            raise UsageError("model.guidance.prior=aligned needs phone input (data.units=phones):"
                             " the true alignment is known per phone")
        if guidance.layers > decoder.depth or guidance.heads > decoder.num_heads:
            raise UsageError(f"model.guidance guides {guidance.heads} heads of {guidance.layers}"
                             f" layers; the decoder has {decoder.num_heads} x {decoder.depth}")
        self.guidance, self.synthesis = guidance, synthesis
        family = ("unguided" if not guidance.weight
                  else "aligned" if guidance.prior == "aligned" else "guided")
        self.hparams["model"] = model or f"tts-{family}"
        self.model = TransformerTTS(vocab_size, encoder, decoder, N_MELS, reduction, conv_layers,
                                    postnet_layers, prenet_dropout)
        self.register_buffer("mel_mean", torch.zeros(N_MELS))
        self.register_buffer("mel_std", torch.ones(N_MELS))
        self.register_buffer("frames_per_token", torch.tensor(8.0))
        first = decoder.depth - guidance.layers
        self.guided_heads = {layer: list(range(guidance.heads))
                             for layer in range(first, decoder.depth)}
        self.alignment_history: list[tuple[int, float]] = []
        self.focused_head: tuple[int, int] | None = None  # unguided: the (layer, head) to watch
        self._val: dict[str, list[Tensor]] = {}
        self._val_example: tuple[Tensor, list[str]] | None = None
        self._test = TestLog(silent_ids(units))
        self._vocoder: GriffinLimVocoder | None = None

    # ------------------------------------------------------------------ setup / checkpoint
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and stage == "fit":
            self.mel_mean.copy_(datamodule.mel_mean)
            self.mel_std.copy_(datamodule.mel_std)
            self.frames_per_token.fill_(datamodule.frames_per_token)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["alignment_history"] = self.alignment_history
        checkpoint["focused_head"] = self.focused_head

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.alignment_history = [tuple(h) for h in checkpoint.get("alignment_history", [])]
        focused = checkpoint.get("focused_head")
        self.focused_head = None if focused is None else tuple(focused)

    def batch_size(self, batch: dict[str, Any]) -> int:
        return batch["tokens"].shape[0]

    # ------------------------------------------------------------------ training
    @property
    def aligned_at(self) -> int | None:
        """The step of the first evaluation aligned (accuracy >= :data:`ALIGNED_ACCURACY`) that
        still held at the next evaluation; None until then."""
        history = self.alignment_history
        for (step, acc), (_, after) in zip(history, history[1:], strict=False):
            if acc >= ALIGNED_ACCURACY and after >= ALIGNED_ACCURACY:
                return step
        return None

    def guidance_weight(self) -> float:
        """lambda now: the configured weight, decayed once aligned if annealing is on."""
        g = self.guidance
        aligned = self.aligned_at
        if not g.anneal_steps or aligned is None:
            return g.weight
        done = (self.global_step - aligned) / g.anneal_steps
        return g.weight * min(1.0, max(0.0, 1.0 - done))

    def sampling_probability(self) -> float:
        """Share of decoder inputs fed from the model's own output at this step."""
        if self.hparams.scheduled_sampling <= 0 or self._trainer is None:
            return 0.0
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return self.hparams.scheduled_sampling * min(1.0, 2 * self.global_step / total)

    def _feedback(self, batch: dict[str, Tensor], mel: Tensor) -> Tensor | None:
        """Scheduled sampling: a teacher-forced pass without gradients, then each decoder step
        fed its own prediction with :meth:`sampling_probability` instead of the truth."""
        probability = self.sampling_probability()
        if probability <= 0:
            return None
        with torch.no_grad():
            _, predicted, _, _ = self.model(batch["tokens"], batch["token_lengths"], mel)
        r = self.model.reduction
        steps = mel.shape[1] // r
        own = torch.rand(mel.shape[0], steps, device=mel.device) < probability  # (B, S)
        own = own.repeat_interleave(r, dim=1)[..., None]
        return torch.where(own, predicted.to(mel.dtype), mel)

    def _padded_mel(self, batch: dict[str, Tensor]) -> Tensor:
        """The batch's mel padded with zeros to a whole number of decoder steps."""
        mel = batch["mel"]
        frames = self.model.steps(mel.shape[1]) * self.model.reduction
        return F.pad(mel, (0, 0, 0, frames - mel.shape[1]))

    def losses(self, batch: dict[str, Any], teacher_forced: bool = True
               ) -> tuple[dict[str, Tensor], list[Tensor], Tensor]:
        """The loss and its parts (``loss``, ``mel_l1``, ``stop``, ``guided``), every decoder
        layer's cross-attention ``(B, H, S, N)`` and the valid (step, token) mask
        ``(B, S, N)``. ``teacher_forced=False`` lets scheduled sampling feed own frames."""
        mel = self._padded_mel(batch)
        lengths, token_lengths = batch["mel_lengths"], batch["token_lengths"]
        feedback = None if teacher_forced else self._feedback(batch, mel)
        before, after, stop, maps = self.model(batch["tokens"], token_lengths, mel, feedback)
        frames = torch.arange(mel.shape[1], device=mel.device)
        valid = frames[None] < lengths[:, None]  # (B, frames)
        l1 = sum((F.l1_loss(out.float(), mel, reduction="none").mean(-1) * valid).sum()
                 for out in (before, after)) / valid.sum()
        stop_target = (frames[None] == lengths[:, None] - 1).float()
        stop_loss = (F.binary_cross_entropy_with_logits(
            stop.float(), stop_target, reduction="none",
            pos_weight=torch.tensor(self.hparams.stop_weight, device=mel.device))
            * valid).sum() / valid.sum()
        steps, tokens = maps[0].shape[-2:]
        mask = align.valid_mask(token_lengths, self.step_lengths(batch), steps, tokens)
        guided = align.guided_attention_loss(align.head_maps(maps, self.guided_heads),
                                             self._prior(batch, steps, tokens), mask)
        loss = l1 + stop_loss + self.guidance_weight() * guided
        return {"loss": loss, "mel_l1": l1, "stop": stop_loss, "guided": guided}, maps, mask

    def step(self, batch: dict[str, Any], stage: Stage) -> Tensor:
        parts, maps, mask = self.losses(batch, teacher_forced=stage != "train")
        n = self.batch_size(batch)
        for name, value in parts.items():
            self.log(f"{stage}/{name}", value, batch_size=n, prog_bar=name == "loss",
                     add_dataloader_idx=False)
        if stage == "val":
            self._score_alignment(batch, maps, mask)
        return parts["loss"]

    def _prior(self, batch: dict[str, Tensor], steps: int, tokens: int) -> Tensor:
        """The guided loss's prior W ``(B, steps, tokens)``: diagonal or centred on flite's true
        phone at each step."""
        kind, sigma = self.guidance.prior, self.guidance.sigma
        token_lengths, step_lengths = batch["token_lengths"], self.step_lengths(batch)
        if kind == "diagonal":
            return align.diagonal_prior(token_lengths, step_lengths, steps, tokens, sigma)
        true = self.true_tokens(batch, steps)
        return align.aligned_prior(true, token_lengths, step_lengths, tokens, sigma)

    def step_lengths(self, batch: dict[str, Tensor]) -> Tensor:
        """Decoder steps of each item ``(B,)``: its frames in steps of r, the last one partial."""
        return torch.ceil(batch["mel_lengths"] / self.model.reduction).long()

    def true_tokens(self, batch: dict[str, Tensor], steps: int) -> Tensor:
        """flite's token at each of ``steps`` decoder steps ``(B, S)``
        (:func:`tasks.tts.alignment.true_tokens`)."""
        return align.true_tokens(batch["token_ends"], batch["token_lengths"],
                                 self.step_lengths(batch), steps, self.model.reduction)

    # ------------------------------------------------------------------ alignment metrics
    @property
    def candidate_heads(self) -> dict[int, list[int]]:
        """The heads, by decoder layer, whose alignment may be scored: the guided ones, or for
        an unguided model every head of every decoder layer."""
        if self.guidance.weight:
            return self.guided_heads
        return {layer: list(range(block.cross_attention.num_heads))
                for layer, block in enumerate(self.model.decoder.layers)}

    def _focus(self, maps: list[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
        """The candidate heads' attention ``(B, heads, S, N)`` and focus rates ``(heads, B)``."""
        candidates = align.head_maps(maps, self.candidate_heads)
        return candidates, align.head_focus_rates(candidates, mask)

    def monitored_maps(self, maps: list[Tensor], mask: Tensor) -> Tensor:
        """The attention ``(B, S, N)`` whose alignment is scored: the most focused guided head,
        or for an unguided model the most focused head of any layer."""
        candidates, rates = self._focus(maps, mask)
        return candidates[:, align.most_focused_head(rates)]

    @property
    def synthesis_heads(self) -> dict[int, list[int]]:
        """The heads free-running synthesis watches (and windows): the guided heads, or for an
        unguided model the head that was most focused over the last validation."""
        if self.guidance.weight or self.focused_head is None:
            return self.guided_heads
        layer, head = self.focused_head
        return {layer: [head]}

    def _score_alignment(self, batch: dict[str, Tensor], maps: list[Tensor], mask: Tensor
                         ) -> None:
        steps, tokens = maps[0].shape[-2:]
        step_lengths = self.step_lengths(batch)
        candidates, rates = self._focus(maps, mask)
        weights = candidates[:, align.most_focused_head(rates)]
        diagonal = align.diagonal_prior(batch["token_lengths"], step_lengths, steps, tokens,
                                        DIAGONALITY_SIGMA)
        scores = {"focus_rate": align.focus_rate(weights, mask),
                  "diagonality": align.diagonality(weights, diagonal, mask),
                  "attention_entropy": align.attention_entropy(weights, mask)}
        if self.hparams.units == "phones":
            true = self.true_tokens(batch, steps)
            scores["align_acc"] = align.alignment_accuracy(weights, true, mask)
        for name, values in scores.items():
            self._val.setdefault(name, []).append(values.detach().float().cpu())
        self._val.setdefault("head_focus", []).append(rates.nansum(1).detach().cpu()[None])
        if self._val_example is None:
            self._val_example = self._example_maps(maps, int(step_lengths[0]),
                                                   int(batch["token_lengths"][0]))

    def _example_maps(self, maps: list[Tensor], steps: int, tokens: int
                      ) -> tuple[Tensor, list[str]]:
        """One utterance's cross-attention in the last two layers, every head ``(n, S, N)``,
        with titles marking the guided heads."""
        chosen = [(layer, head) for layer in range(max(0, len(maps) - 2), len(maps))
                  for head in range(maps[layer].shape[1])]
        weights = torch.stack([maps[layer][0, head, :steps, :tokens] for layer, head in chosen])
        titles = [f"layer {layer} head {head}"
                  + (" (guided)" if self.guidance.weight and head in self.guided_heads.get(
                      layer, []) else "") for layer, head in chosen]
        return weights.detach().cpu(), titles

    def on_validation_epoch_end(self) -> None:
        head_focus = self._val.pop("head_focus", None)
        scores = {name: torch.cat(values).mean().item() for name, values in self._val.items()}
        example, self._val, self._val_example = self._val_example, {}, None
        if not scores or self.trainer.sanity_checking:
            return
        if head_focus is not None and not self.guidance.weight:
            total = torch.cat(head_focus).sum(0)  # (heads,) summed focus over validation
            pairs = [(layer, head) for layer, heads in self.candidate_heads.items()
                     for head in heads]  # in head_maps' order
            self.focused_head = pairs[int(total.argmax())]
        if example is not None:  # decoder steps down, input tokens across
            self.log_attention_maps(example[0], "val/attention", example[1])
        for name, value in scores.items():
            self.log(f"val/{name}", value, sync_dist=True)
        if "align_acc" in scores:
            self.alignment_history.append((self.global_step, scores["align_acc"]))
            aligned = self.aligned_at
            self.log("val/steps_to_align", float(-1 if aligned is None else aligned))

    # ------------------------------------------------------------------ free-running test
    def synthesize(self, tokens: Tensor, token_lengths: Tensor, seeds: list[int]
                   ) -> Generated:
        """Free-running synthesis of a batch, whole or phrase by phrase (phones only:
        ``synthesis.by_phrase``); ``seeds`` (one per item) fix the prenet's inference dropout,
        so an utterance always comes out the same."""
        if self.synthesis.by_phrase and self.hparams.units == "phones":
            return generate_by_phrase(self.model, tokens, token_lengths,
                                      float(self.frames_per_token), self.synthesis_heads,
                                      self.synthesis, seeds, silent_ids("phones"), EOS)
        return generate(self.model, tokens, token_lengths,
                        expected_frames(token_lengths, float(self.frames_per_token)),
                        self.synthesis_heads, self.synthesis, utterance_generators(seeds))

    def denormalise(self, mel: Tensor) -> Tensor:
        """Normalised mel -> natural-log power mel, as the front end computes it."""
        return mel.float() * self.mel_std + self.mel_mean

    @property
    def vocoder(self) -> GriffinLimVocoder:
        if self._vocoder is None:
            self._vocoder = GriffinLimVocoder(self.synthesis.griffin_lim_iters)
        return self._vocoder

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        start = time.perf_counter()
        generated = self.synthesize(batch["tokens"], batch["token_lengths"],
                                    batch["index"].tolist())
        seconds = time.perf_counter() - start
        self._test.add(TEST_SETS[dataloader_idx], batch, generated, seconds, self.denormalise)

    def on_test_epoch_end(self) -> None:
        for key, value in self._test.summary().items():
            self.log(f"test/{key}", value)
        self._test.log_media(self, self.vocoder, self.denormalise)
        self._test = TestLog(silent_ids(self.hparams.units))

    # ------------------------------------------------------------------ predict
    def predict_inputs(self, inputs: list[str], out: str | None = None) -> list[str]:
        """Synthesise each text to ``<out>/<n>-<words>.wav`` with its attention plot; one line
        ``<text>\\t<wav>\\t<seconds of audio>`` each. The same text gives the same WAV."""
        directory = Path(out or "tts_output")
        lines = []
        for number, text in enumerate(inputs):
            tokens = encode(self.hparams.units, text)  # an empty text is a usage error
            generated = self.synthesize(tokens[None].to(self.device),
                                        torch.tensor([len(tokens)], device=self.device),
                                        [zlib.crc32(text.encode())])
            length = int(generated.lengths[0])
            audio = self.vocoder(self.denormalise(generated.mel[0, :length]).cpu())
            wav = write_prediction(directory, number, text, audio,
                                   generated.alignment[0].cpu())
            lines.append(f"{text}\t{wav}\t{len(audio) / SAMPLE_RATE:.2f}")
        return lines
