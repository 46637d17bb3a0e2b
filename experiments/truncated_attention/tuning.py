"""Stage ``tuning``: the lexicon decoders' LM weight and word bonus picked on the validation
split, then the test sets decoded with them.

Lexicon beam search (:class:`tasks.asr.wordlm.WordDecoder`) ranks a hypothesis by its acoustic
log-probability + ``lm_weight`` x its LM log-probability + ``word_score`` per word. How far to
trust the LM depends on how sharp the acoustic model's posteriors are, which differs from model
to model, so the run's ``model.decoding`` values are a starting point rather than a fit. Each
(``lm_weight``, ``word_score``) of the grid decodes a subset of the validation split (the
training voices' held-out utterances, batches spread evenly over its lengths); for each
vocabulary - the training transcripts' words and trigram (``word``) and pocketsphinx's general
English (``general``) - the pair with the lowest validation WER decodes the unseen voices and
the real prompts. The test sets never choose.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from experiments.truncated_attention.breakdown import load_run, transcripts
from experiments.truncated_attention.peer import score
from experiments.truncated_attention.trained import EXPERIMENT
from tasks.asr.module import ASRModule

ORDERS = {"word": "word_lm_order", "general": "general_lm_order"}
"""Each vocabulary's LM-order setting in ``model.decoding`` (0: the run has no such decoder)."""
TEST_SETS = {"all": ("unseen", "real"), "unseen_voices": ("unseen",), "asterisk": ("real",)}
"""The data module's ``test_set`` -> its test loaders' names, in order."""


def spread_batches(batches: list[list[int]], utterances: int) -> list[list[int]]:
    """About ``utterances`` of a length-sorted loader's batches, taken at an even stride so
    short and long utterances are both represented."""
    total = sum(len(b) for b in batches)
    stride = max(1, round(total / max(1, utterances)))
    return batches[::stride]


Setting = tuple[str, float, float]
"""A grid decoder's (vocabulary, lm_weight, word_score)."""


def _grid(module: ASRModule, vocabularies: list[str], lm_weights: Sequence[float],
          word_scores: Sequence[float]) -> tuple[dict[str, Any], dict[str, Setting]]:
    """Every vocabulary's decoders over the grid, by name, and each name's (vocabulary,
    lm_weight, word_score)."""
    pairs = list(itertools.product(lm_weights, word_scores))
    decoders, settings = {}, {}
    for vocabulary in vocabularies:
        built = module.lexicon_decoders(vocabulary, pairs)
        for (weight, bonus), decode in zip(pairs, built, strict=True):
            name = f"{vocabulary} {weight:g} {bonus:g}"
            decoders[name], settings[name] = decode, (vocabulary, weight, bonus)
    return decoders, settings


def run_rows(run: str, lm_weights: Sequence[float], word_scores: Sequence[float],
             utterances: int, folder: str = EXPERIMENT, test_set: str = "all"
             ) -> list[dict[str, Any]]:
    """One row per vocabulary: the grid's validation scores, the pair chosen and its scores on
    the test sets of ``test_set``."""
    module, datamodule, precision = load_run(run, folder, test_set)
    vocabularies = [v for v, order in ORDERS.items() if getattr(module.decoding, order)]
    grid, settings = _grid(module, vocabularies, lm_weights, word_scores)
    val = datamodule.val_dataloader()
    chosen_batches = spread_batches(val.batch_sampler.batches, utterances)
    _, references, hypotheses = transcripts(module, val, grid, precision, chosen_batches)
    val_scores = {name: score(hyps, references) for name, hyps in hypotheses.items()}
    print(f"  tuning {run}: {len(references)} validation utterances, {len(grid)} decoders",
          flush=True)
    mine = {v: [name for name in grid if settings[name][0] == v] for v in vocabularies}
    best = {v: min(names, key=lambda name: (val_scores[name]["wer"], val_scores[name]["cer"]))
            for v, names in mine.items()}
    tests = {}
    for test_name, loader in zip(TEST_SETS[test_set], datamodule.test_dataloader(), strict=True):
        _, refs, hyps = transcripts(module, loader, {v: grid[best[v]] for v in vocabularies},
                                    precision)
        tests[test_name] = {v: score(hyps[v], refs) for v in vocabularies}
    rows = []
    for v in vocabularies:
        _, weight, bonus = settings[best[v]]
        metrics = {"val/cer": val_scores[best[v]]["cer"], "val/wer": val_scores[best[v]]["wer"],
                   **{f"test/{m}_{t}": tests[t][v][m] for t in tests for m in ("cer", "wer")}}
        print(f"  tuning {run} {v}: lm_weight {weight:g}, word_score {bonus:g}: {metrics}",
              flush=True)
        rows.append({"name": f"tuning {run} {v}", "group": "tuning", "head": "asr", "run": run,
                     "model": module.hparams.model, "decoder": v, "lm_weight": float(weight),
                     "word_score": float(bonus), "val_utterances": len(references),
                     "grid": [{"lm_weight": float(settings[name][1]),
                               "word_score": float(settings[name][2]), **val_scores[name]}
                              for name in mine[v]],
                     "metrics": metrics})
    return rows


def rows(runs: list[str], lm_weights: Sequence[float] = (0.5, 1.0, 2.0),
         word_scores: Sequence[float] = (-1.0, 0.0, 1.0), utterances: int = 300,
         folder: str = EXPERIMENT, test_set: str = "all") -> list[dict[str, Any]]:
    """Per run and vocabulary: the (weight, bonus) with the lowest validation WER on about
    ``utterances`` validation utterances, and its CER / WER on the unseen voices and the real
    prompts (``test/cer_unseen`` ...; ``test_set`` as the data module's)."""
    return [row for run in runs
            for row in run_rows(run, lm_weights, word_scores, utterances, folder, test_set)]
