"""Stage ``breakdown``: where a trained recogniser's errors on the unseen voices lie.

A run's best checkpoint decodes the unseen-voice test set exactly as its test did (the run's
data settings, precision and batches), with greedy CTC and with the best LM decoder its
:class:`tasks.asr.module.Decoding` offers - the one with the lowest unseen-voice CER in the
run's own test metrics - through the module's own decoders. CER and WER (corpus-level, as the
test scores them) are then grouped by what the corpus manifest records of each utterance:
synthesis engine, voice id, SNR band, G.722 codec on or off, and kind of text (a sentence or
one of the short prompt kinds) - :mod:`experiments.truncated_attention.groups`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from experiments.truncated_attention.groups import GROUPINGS
from experiments.truncated_attention.peer import score
from experiments.truncated_attention.targets import DECODERS
from experiments.truncated_attention.trained import (
    EXPERIMENT,
    autocast,
    corpus_manifest,
    run_config,
    run_dir,
    run_summary,
    section,
)
from tasks.asr.data import ASRDataModule
from tasks.asr.decode import beam_decode, greedy_decode
from tasks.asr.module import ASRModule

Decode = Callable[[torch.Tensor, torch.Tensor], list[str]]


def offered_decoders(module: ASRModule) -> list[str]:
    """The LM decoders the module scores its test sets with (its test-time LMs built)."""
    ready = {"beam": module.decoding.beam_size > 0, "word": module.word_decoder is not None,
             "general": module.general_decoder is not None}
    return [name for name in DECODERS if ready[name]]


def best_decoder(offered: list[str], metrics: dict[str, float]) -> str | None:
    """The offered LM decoder with the lowest ``test/cer_unseen_<suffix>`` in the run's test
    metrics; the first offered when the run recorded none of theirs; None when none is."""
    scored = [(metrics[f"test/cer_unseen_{name}"], name) for name in offered
              if f"test/cer_unseen_{name}" in metrics]
    if scored:
        return min(scored)[1]
    return offered[0] if offered else None


def decoder(module: ASRModule, name: str) -> Decode:
    """The module's decoder ``name`` (``greedy`` or an LM decoder) as its test step calls it:
    ``(log_probs (B, T', V), lengths (B,)) -> transcripts``."""
    texts, decoding = module.units.texts, module.decoding
    if name == "greedy":
        return lambda log_probs, lengths: greedy_decode(log_probs, lengths, texts)
    if name == "beam":
        return lambda log_probs, lengths: beam_decode(
            log_probs, lengths, decoding.beam_size, module.lm, decoding.lm_alpha,
            decoding.lm_beta, texts)
    return {"word": module.word_decoder, "general": module.general_decoder}[name]


def load_run(run: str, folder: str = EXPERIMENT, test_set: str = "unseen_voices"
             ) -> tuple[ASRModule, ASRDataModule, str]:
    """A run's best checkpoint with its test-time decoders built, a data module of
    ``test_set`` built from the run's data settings, and the run's precision.

    Lightning's test entry, over no batches, runs the module's own ``setup`` (its units reach
    the data module, the training transcripts are kept for the LMs); ``on_test_start`` then
    builds the LMs and lexicons as a test run does."""
    module = ASRModule.from_checkpoint(run_dir(run, folder) / "checkpoints" / "best.ckpt")
    config = run_config(run, folder)
    datamodule = ASRDataModule(**{**section(config, "data"), "test_set": test_set})
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu",
                         enable_progress_bar=False, enable_model_summary=False,
                         limit_test_batches=0)
    trainer.test(module, datamodule=datamodule, verbose=False)
    module.on_test_start()
    return module.eval(), datamodule, section(config, "trainer").get("precision")


def transcripts(module: ASRModule, loader: DataLoader, decoders: dict[str, Decode],
                precision: str | None, batches: list[list[int]] | None = None
                ) -> tuple[list[int], list[str], dict[str, list[str]]]:
    """A loader's utterances in its batches (or in ``batches`` of its data set's indices): each
    utterance's position in its corpus, its reference, and each decoder's hypothesis; the
    encoder runs once per batch for all decoders."""
    dataset = loader.dataset
    positions, references = [], []
    hypotheses: dict[str, list[str]] = {name: [] for name in decoders}
    for members in loader.batch_sampler if batches is None else batches:
        batch = loader.collate_fn([dataset[i] for i in members])
        with torch.no_grad(), autocast(precision):
            log_probs, lengths, _ = module.model(batch["features"], batch["feature_lengths"])
            for name, decode in decoders.items():
                hypotheses[name] += decode(log_probs, lengths)
        positions += [dataset.indices[i] for i in members]
        references += batch["texts"]
    return positions, references, hypotheses


def grouped_scores(groups: list[str], references: list[str], hypotheses: list[str]
                   ) -> dict[str, dict[str, float]]:
    """Group label -> CER, WER and utterance count over the utterances in that group."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    return {group: {**score([hypotheses[i] for i in chosen], [references[i] for i in chosen]),
                    "utterances": len(chosen)}
            for group, chosen in sorted(members.items())}


def run_rows(run: str, folder: str = EXPERIMENT) -> list[dict[str, Any]]:
    """One run's rows: greedy and its best LM decoder, each over every grouping's groups."""
    module, datamodule, precision = load_run(run, folder)
    best = best_decoder(offered_decoders(module), run_summary(run, folder)["metrics"])
    names = ["greedy", *([best] if best else [])]
    positions, references, hypotheses = transcripts(
        module, datamodule.test_dataloader()[0], {name: decoder(module, name) for name in names},
        precision)
    manifest, _ = corpus_manifest(section(run_config(run, folder), "data"))
    print(f"  breakdown {run}: {len(references)} unseen-voice utterances, decoders "
          f"{', '.join(names)}", flush=True)
    base = {"group": "breakdown", "head": "asr", "run": run, "model": module.hparams.model,
            "precision": precision}
    return [{**base, "name": f"breakdown {run} {name} {by} {group}", "decoder": name,
             "by": by, "value": group, "metrics": metrics}
            for by, group_of in GROUPINGS.items()
            for name in names
            for group, metrics in grouped_scores([group_of(manifest[p]) for p in positions],
                                                 references, hypotheses[name]).items()]


def rows(runs: list[str], folder: str = EXPERIMENT) -> list[dict[str, Any]]:
    """One row per (run, decoder, grouping, group): ``metrics`` holds ``cer``, ``wer`` and
    ``utterances``; ``decoder`` is ``greedy`` or an LM decoder's metric suffix."""
    return [row for run in runs for row in run_rows(run, folder)]
