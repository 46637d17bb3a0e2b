"""truncated_attention's stages that re-measure a trained run: ``breakdown`` (unseen-voice
errors by what the corpus records of each utterance), ``efficiency`` (the step's FLOP/s
and the run's throughput) and ``tuning`` (the lexicon decoders' weights picked on validation),
on a tiny run trained for two steps on a planted corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from experiments.truncated_attention import breakdown, efficiency, trained, tuning
from experiments.truncated_attention.breakdown import best_decoder
from experiments.truncated_attention.groups import MISSING, ordered, snr_band
from experiments.truncated_attention.tuning import spread_batches
from suite import cache
from suite.cli import main
from suite.errors import DataError
from tasks.asr import data

UNSEEN = [  # (voice, snr_db, codec, kind); None fields: an older corpus recorded none
    ("espeak:en-029+m3", None, False, "sentence"),
    ("espeak:en-gb-scotland", 30.0, True, "digits"),
    ("flite:awb", 20.0, False, "word"),
    ("hibari:heart+p2-s1.1", 5.0, True, "sentence"),
    ("piper:joe+p-2-s0.9", 25.0, False, "command"),
    ("flite:awb", 15.0, True, "letters"),
    ("flite:awb", None, None, None),
    ("flite:awb", None, None, None),
]
TEXTS = ["one two", "three", "the cat sat", "press one"]
SPLITS = ["train"] * 24 + ["val"] * 4 + ["test"] * len(UNSEEN)
RUN = "default-s0"


def _manifest_row(i: int, split: str) -> dict:
    row = {"text": TEXTS[i % len(TEXTS)], "split": split, "voice": "fake", "path": f"{i}.flac"}
    if split != "test":
        return row
    voice, snr_db, codec, kind = UNSEEN[i - SPLITS.index("test")]
    if kind is None:  # as a corpus from before kinds, codec and noise were recorded
        return {**row, "voice": voice}
    return {**row, "voice": voice, "snr_db": snr_db, "codec": codec, "kind": kind}


def _plant_corpus(planted: set[Path]) -> None:
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(60 + 7 * i, 80, generator=generator) for i in range(len(SPLITS))]
    rows = [_manifest_row(i, split) for i, split in enumerate(SPLITS)]
    root = data.corpus_dir(len(SPLITS), 0)
    root.mkdir(parents=True)
    torch.save({"rows": rows, "mean": torch.zeros(80), "std": torch.ones(80),
                **data._pack(features)}, root / "features.pt")
    planted.add(root / "features.pt")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of truncated_attention, trained two steps on the planted corpus (a private data
    cache that takes it as verified) and tested, as ``suite experiment`` leaves it."""
    root = tmp_path_factory.mktemp("experiment")
    planted: set[Path] = set()
    real = cache.check

    def check(path: Path, sha256: str | None = None, inputs: dict | None = None
              ) -> cache.Verdict:
        return cache.Verdict(cache.State.READY) if Path(path) in planted else real(
            path, sha256, inputs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUITE_DATA_DIR", str(root / "cache"))
        patch.setattr(cache, "check", check)
        patch.setattr(trained, "RUNS", root / "runs")
        _plant_corpus(planted)
        # the whole unseen-voice set tested, so the breakdown's totals can be checked
        code = main(["train", "asr", "-c", "configs/asr/quick.yaml", "--trainer.max_steps=2",
                     "--trainer.val_check_interval=2", "--trainer.limit_test_batches=1.0",
                     "--trainer.precision=32-true", "--model.encoder.depth=1",
                     "--model.encoder.dim=32", "--model.encoder.num_heads=2",
                     "--model.encoder.ffn_dim=64",
                     "--model.conv_channels=4", "--model.decoding.beam_size=2",
                     "--model.decoding.lm_order=3", "--model.decoding.word_lm_order=2",
                     f"--data.corpus_size={len(SPLITS)}", "--data.test_set=unseen_voices",
                     "--data.max_frames=400", "--run.root", str(root / "runs"),
                     "--run.experiment=truncated_attention", f"--run.name={RUN}",
                     "--run.wandb=disabled"])
        assert code == 0
        yield trained.run_dir(RUN)


def test_snr_bands_and_table_order():
    bands = [snr_band(r) for r in ({"snr_db": None}, {"snr_db": 25.0}, {"snr_db": 24.9},
                                   {"snr_db": 15.0}, {"snr_db": 14.9}, {})]
    assert bands == ["clean", ">=25 dB", "15-25 dB", "15-25 dB", "<15 dB", MISSING]
    assert ordered("snr", {MISSING, "<15 dB", "clean", ">=25 dB"}) == [
        "clean", ">=25 dB", "<15 dB", MISSING]
    assert ordered("kind", {MISSING, "word", "digits"}) == ["digits", "word", MISSING]


def test_best_decoder_is_the_offered_one_with_the_lowest_unseen_cer():
    metrics = {"test/cer_unseen_beam": 0.3, "test/cer_unseen_word": 0.2,
               "test/cer_unseen_general": 0.1}
    assert best_decoder(["beam", "word", "general"], metrics) == "general"
    assert best_decoder(["beam", "word"], metrics) == "word"
    assert best_decoder(["beam"], {}) == "beam"  # the run's test scored none of them
    assert best_decoder([], metrics) is None


def test_breakdown_decodes_as_the_test_did_and_groups_by_the_manifest(run_dir):
    summary = trained.run_summary(RUN)["metrics"]
    rows = breakdown.rows([RUN])
    decoders = list(dict.fromkeys(r["decoder"] for r in rows))
    lm = {name: summary[f"test/cer_unseen_{name}"] for name in ("beam", "word", "general")}
    assert decoders == ["greedy", min(lm, key=lm.get)]
    overall = {r["decoder"]: r["metrics"] for r in rows if r["by"] == "all"}
    assert overall["greedy"]["cer"] == pytest.approx(summary["test/cer_unseen"], abs=1e-6)
    assert overall["greedy"]["wer"] == pytest.approx(summary["test/wer_unseen"], abs=1e-6)
    assert overall[decoders[1]]["cer"] == pytest.approx(min(lm.values()), abs=1e-6)

    def counts(by: str) -> dict[str, int]:
        return {r["value"]: r["metrics"]["utterances"] for r in rows
                if r["by"] == by and r["decoder"] == "greedy"}

    assert counts("all") == {"all": len(UNSEEN)}
    assert counts("engine") == {"espeak": 2, "flite": 4, "hibari": 1, "piper": 1}
    assert counts("voice") == dict(Counter(voice for voice, *_ in UNSEEN))
    assert counts("snr") == {"clean": 1, ">=25 dB": 2, "15-25 dB": 2, "<15 dB": 1,
                             MISSING: 2}
    assert counts("codec") == {"none": 3, "G.722": 3, MISSING: 2}
    assert counts("kind") == {"sentence": 2, "digits": 1, "word": 1, "command": 1,
                              "letters": 1, MISSING: 2}


def _encoder_frames(frames: int) -> int:
    return (((frames - 1) // 2 - 1) // 2 - 1) // 2  # three stride-2 convolutions (8x)


def test_efficiency_counts_times_and_reads_the_runs_throughput(run_dir):
    summary = trained.run_summary(RUN)
    row = efficiency.measure(RUN, batch=2, seconds=0.8, steps=1, peak_size=64)
    m = row["metrics"]
    assert (row["model"], row["params"], row["subsampling"]) == (
        summary["model"], summary["params"], 8)
    assert m["flops_per_second"] == pytest.approx(m["step_flops"] / m["step_seconds"])
    assert m["peak_share"] == pytest.approx(m["flops_per_second"] / m["bf16_matmul_peak"])
    train = [60 + 7 * i for i, split in enumerate(SPLITS) if split == "train"]
    mean_encoder = sum(map(_encoder_frames, train)) / len(train)
    assert m["samples_per_second"] == summary["samples_per_second"]
    assert m["mean_encoder_frames"] == pytest.approx(mean_encoder)
    assert m["encoder_frames_per_second"] == pytest.approx(
        summary["samples_per_second"] * mean_encoder)
    assert m["audio_seconds_per_second"] == pytest.approx(
        summary["samples_per_second"] * sum(train) / len(train) / 100)
    doubled = efficiency.measure(RUN, batch=4, seconds=0.8, steps=1, peak_size=64)
    assert doubled["metrics"]["step_flops"] == 2 * m["step_flops"]


def test_a_stage_on_an_untrained_run_names_the_missing_file(run_dir):
    with pytest.raises(DataError, match="never-s0/config.yaml"):
        efficiency.rows(["never-s0"], steps=1, peak_size=64)


def test_spread_batches_take_an_even_stride_over_the_lengths():
    batches = [[i] for i in range(10)]
    assert spread_batches(batches, 5) == [[0], [2], [4], [6], [8]]
    assert spread_batches(batches, 100) == batches


def test_tuning_picks_each_vocabulary_s_weights_on_validation_alone(run_dir):
    rows = tuning.rows([RUN], lm_weights=[0.5, 2.0], word_scores=[0.0], utterances=4,
                       test_set="unseen_voices")
    assert [r["decoder"] for r in rows] == ["word", "general"]
    for row in rows:
        grid = row["grid"]
        assert len(grid) == 2 and row["val_utterances"] == 4
        best = min(grid, key=lambda g: (g["wer"], g["cer"]))
        assert (row["lm_weight"], row["word_score"]) == (best["lm_weight"], best["word_score"])
        assert row["metrics"]["val/wer"] == best["wer"]
        assert set(row["metrics"]) == {"val/cer", "val/wer", "test/cer_unseen",
                                       "test/wer_unseen"}
