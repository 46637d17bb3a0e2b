"""The TTS module: it learns to align, its guidance options, and `suite predict tts`."""

import json
from pathlib import Path

import pytest
import torch

from experiments.guided_attention.listen import teacher_forced_skips
from suite.blocks import LayerConfig
from suite.cli import main
from suite.errors import UsageError
from tasks.tts import alignment as align
from tasks.tts.data import TEST_SETS
from tasks.tts.module import Guidance, TTSModule

TINY_LAYERS = LayerConfig(dim=64, depth=2, num_heads=2, ffn_dim=128, dropout=0.0)


def _module(vocab_size: int, **kwargs: object) -> TTSModule:
    torch.manual_seed(0)
    settings = {"encoder": TINY_LAYERS, "decoder": TINY_LAYERS, "conv_layers": 1,
                "postnet_layers": 0, "guidance": Guidance(layers=1, heads=2)} | kwargs
    return TTSModule(vocab_size=vocab_size, **settings)


def _accuracy(module: TTSModule, batch: dict) -> float:
    with torch.no_grad():
        _, maps, mask = module.losses(batch)
    steps = maps[0].shape[-2]
    weights = module.monitored_maps(maps, mask)
    true = module.true_tokens(batch, steps)
    return float(align.alignment_accuracy(weights, true, mask).mean())


def test_a_tiny_model_overfits_eight_utterances_and_aligns(tiny_corpus) -> None:
    datamodule = tiny_corpus.module(batch_size=8, join_share=0.0)
    batch = next(iter(datamodule.train_dataloader()))
    # lambda 25: the loss is a mean over (step, token) cells, and over these ~25-token texts
    # lambda 1 pulls too weakly to align within 300 steps of a batch this small
    module = _module(datamodule.vocab_size, lr=3e-3,
                     guidance=Guidance(layers=1, heads=2, weight=25.0))
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        parts, _, _ = module.losses(batch)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        first = first if first is not None else float(parts["mel_l1"])
    assert float(parts["mel_l1"]) < 0.5 * first
    assert _accuracy(module, batch) >= 0.75  # an unguided one stays near 0.2


def test_aligned_guidance_needs_phones() -> None:
    with pytest.raises(UsageError, match="phone input"):
        TTSModule(vocab_size=30, units="chars", guidance=Guidance(prior="aligned"))


def test_guiding_more_heads_than_the_decoder_has_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="guides 8 heads"):
        TTSModule(vocab_size=30, guidance=Guidance(heads=8))


def test_steps_to_align_needs_two_evaluations_in_a_row() -> None:
    module = _module(30)
    module.alignment_history = [(100, 0.5), (200, 0.92), (300, 0.85), (400, 0.91), (500, 0.95)]
    assert module.aligned_at == 400
    module.alignment_history = module.alignment_history[:4]
    assert module.aligned_at is None


def test_annealing_decays_lambda_once_aligned(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(30, guidance=Guidance(layers=1, anneal_steps=100))
    module.alignment_history = [(100, 0.95), (200, 0.96)]
    expected = {0: 1.0, 100: 1.0, 150: 0.5, 200: 0.0, 900: 0.0}
    for step, weight in expected.items():
        monkeypatch.setattr(TTSModule, "global_step", property(lambda self, s=step: s))
        assert module.guidance_weight() == pytest.approx(weight)
    module.alignment_history = [(100, 0.95), (200, 0.5)]  # not aligned: never decays
    assert module.guidance_weight() == 1.0


def _train(tiny_corpus, root: Path, *extra: str) -> Path:
    """Two training steps of `suite train tts` on the tiny corpus; the last checkpoint."""
    args = ["train", "tts", "--trainer.max_steps=2", "--trainer.val_check_interval=1",
            "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1",
            "--run.test=false", "--run.wandb=disabled", f"--run.root={root}",
            "--run.name=tiny", *extra]
    args += [f"--data.{k}={v}" for k, v in tiny_corpus.settings.items()]
    args += ["--data.batch_size=4", "--model.encoder.dim=32", "--model.encoder.ffn_dim=64",
             "--model.decoder.dim=32", "--model.decoder.ffn_dim=64"]
    assert main(args) == 0
    return next(root.rglob("last.ckpt"))


@pytest.fixture(scope="module")
def checkpoint(tiny_corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TTS checkpoint from two training steps of `suite train tts` on the tiny corpus."""
    return _train(tiny_corpus, tmp_path_factory.mktemp("runs"))


def test_an_unguided_model_synthesises_watching_its_most_focused_head(
        tiny_corpus, tmp_path: Path) -> None:
    """No head was guided, so free-running synthesis watches (and windows) the head that
    validation found most focused, saved with the checkpoint."""
    path = _train(tiny_corpus, tmp_path, "--model.guidance.weight=0")
    layer, head = torch.load(path, weights_only=False)["focused_head"]
    assert 0 <= layer < 3 and 0 <= head < 4  # the default decoder: 3 layers of 4 heads
    module = TTSModule.load_from_checkpoint(path)
    assert module.synthesis_heads == {layer: [head]}
    guided = TTSModule.load_from_checkpoint(_train(tiny_corpus, tmp_path / "guided"))
    assert guided.synthesis_heads == guided.guided_heads == {1: [0, 1], 2: [0, 1]}


def test_alignment_curves_reach_the_run_summary(checkpoint: Path) -> None:
    """Each validation's alignment metrics are kept as curves (the report plots them)."""
    summary = json.loads((checkpoint.parent.parent / "summary.json").read_text())
    curve = summary["curves"]["val/align_acc"]
    assert [step for step, _ in curve] == [1, 2]
    assert all(0.0 <= value <= 1.0 for _, value in curve)


def test_predict_writes_the_same_wav_twice(checkpoint: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    outputs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        assert main(["predict", "tts", "--ckpt", str(checkpoint), "--out", str(out),
                     "the old cat visited the river"]) == 0
        wavs = sorted(out.glob("*.wav"))
        assert len(wavs) == 1 and (out / f"{wavs[0].stem}-attention.png").is_file()
        outputs.append(wavs[0].read_bytes())
    assert outputs[0] == outputs[1]
    assert str(tmp_path / "a") in capsys.readouterr().out


def test_predict_rejects_empty_text(checkpoint: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    code = main(["predict", "tts", "--ckpt", str(checkpoint), "--out", str(tmp_path), "  "])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert len(error.splitlines()) == 1 and "empty text" in error
    assert not list(tmp_path.iterdir())


def test_the_skip_rule_floor_flags_each_held_out_item_once(tiny_corpus, checkpoint: Path
                                                           ) -> None:
    """The ``skip-rule`` stage's measurement: one flag per item, on the model's teacher-forced
    attention and on flite's true alignment, for every test set."""
    module = TTSModule.load_from_checkpoint(checkpoint).eval()
    datamodule = tiny_corpus.module()
    for name, loader in zip(TEST_SETS, datamodule.test_dataloader(), strict=True):
        model, timing = teacher_forced_skips(module, loader)
        assert len(model) == len(timing) == len(datamodule.dataset(name))
        assert all(isinstance(flag, bool) for flag in model + timing)
