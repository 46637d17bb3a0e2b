"""The ASR training recipe's options, each off by default: SortaGrad (epoch 0 shortest-first),
intermediate CTC on a middle layer, SpecAugment ramped in after warmup on the padded batch;
and the FLOP count of a training step beside the CPU's bf16 matmul peak.
"""

from __future__ import annotations

import copy
import time
import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from suite.blocks import LayerConfig
from suite.errors import UsageError
from tasks.asr import data
from tasks.asr.batching import (
    BatchSpecAugment,
    EpochOrder,
    FrameBudgetSampler,
    span_masks,
    spec_augment_masks,
)
from tasks.asr.flops import matmul_peak, step_flops
from tasks.asr.model import ASREncoder
from tasks.asr.text import VOCAB

LENGTHS = [50 + 10 * (i * 7 % 23) for i in range(23)]  # 23 lengths in a scrambled order


def _size(depth: int = 3) -> LayerConfig:
    return LayerConfig(dim=32, depth=depth, num_heads=2, ffn_dim=64)


def _batch_lengths(sampler: FrameBudgetSampler) -> list[int]:
    return [max(LENGTHS[i] for i in batch) for batch in sampler]


# ----------------------------------------------------------------------------- SortaGrad


def test_sorted_first_epoch_runs_epoch_0_shortest_first_then_shuffles():
    sampler = FrameBudgetSampler(LENGTHS, max_frames=400, shuffle=True, seed=5,
                                 sorted_first_epoch=True)
    assert len(sampler.batches) > 5
    assert list(sampler) == sampler.batches  # shortest first
    assert _batch_lengths(sampler) == sorted(_batch_lengths(sampler))
    sampler.set_epoch(1)
    shuffled = list(sampler)
    assert shuffled != sampler.batches and sorted(shuffled) == sorted(sampler.batches)
    expected = torch.randperm(len(sampler.batches),
                              generator=torch.Generator().manual_seed(5 + 1)).tolist()
    assert shuffled == [sampler.batches[i] for i in expected]  # seed + epoch, as before


def test_the_epoch_not_the_number_of_passes_decides_the_order():
    """A run resumed in epoch 3 gets epoch 3's shuffle, not a sorted epoch 0 again; passes
    without ``set_epoch`` repeat the same epoch."""
    unbroken = FrameBudgetSampler(LENGTHS, 400, shuffle=True, seed=0, sorted_first_epoch=True)
    orders = []
    for epoch in range(4):
        unbroken.set_epoch(epoch)
        orders.append(list(unbroken))
    resumed = FrameBudgetSampler(LENGTHS, 400, shuffle=True, seed=0, sorted_first_epoch=True)
    resumed.set_epoch(3)
    assert list(resumed) == orders[3] != resumed.batches
    assert list(resumed) == list(resumed)  # iterating again is not a new epoch
    fresh = FrameBudgetSampler(LENGTHS, 400, shuffle=True, seed=0, sorted_first_epoch=True)
    assert list(fresh) == list(fresh) == orders[0] == fresh.batches


def test_without_sorting_epoch_0_is_shuffled_and_eval_order_is_sorted():
    plain = FrameBudgetSampler(LENGTHS, 400, shuffle=True, seed=0)
    expected = torch.randperm(len(plain.batches), generator=torch.Generator().manual_seed(0))
    assert list(plain) == [plain.batches[i] for i in expected.tolist()]
    assert EpochOrder(shuffle=False, seed=0)(4) == [0, 1, 2, 3]


def test_lightning_sets_the_epoch_of_the_data_modules_train_loader():
    """Lightning's loops call ``set_epoch`` on ``loader.batch_sampler.sampler`` before every
    epoch, resumed ones included; the data module's option reaches the training loader."""
    rows = [{"text": "a cat", "split": "train"} for _ in LENGTHS]
    packed = data._pack([torch.zeros(n, 80) for n in LENGTHS])
    module = data.ASRDataModule(max_frames=400, sorted_first_epoch=True, spec_augment=False)
    module._synthetic = {"rows": rows, "mean": torch.zeros(80), "std": torch.ones(80), **packed}
    loader = module.train_dataloader()
    first = [b["feature_lengths"].max().item() for b in loader]
    assert first == sorted(first)
    _set_sampler_epoch(loader, 2)
    assert loader.batch_sampler.sampler.epoch == 2
    second = [b["feature_lengths"].max().item() for b in loader]
    assert second != first and sorted(second) == first
    assert not data.ASRDataModule().sorted_first_epoch  # off by default


class _OrderRecorder(pl.LightningModule):
    """Records each training batch's epoch and longest utterance."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(80, 1)
        self.seen: list[tuple[int, int]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, int(batch["feature_lengths"].max())))
        return self.layer(batch["features"]).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(epochs: int, root, ckpt: str | None = None) -> list[tuple[int, int]]:
    rows = [{"text": "a cat", "split": "train"} for _ in LENGTHS]
    datamodule = data.ASRDataModule(max_frames=400, sorted_first_epoch=True,
                                    spec_augment=False)
    datamodule._synthetic = {"rows": rows, "mean": torch.zeros(80), "std": torch.ones(80),
                             **data._pack([torch.zeros(n, 80) for n in LENGTHS])}
    datamodule.prepare_data = lambda: None  # the corpus is the one above
    model = _OrderRecorder()
    trainer = pl.Trainer(max_epochs=epochs, default_root_dir=root, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    if ckpt is None:
        trainer.save_checkpoint(root / "end.ckpt")
    return model.seen


def test_a_resumed_run_neither_sorts_again_nor_repeats_an_epoch(tmp_path):
    """Under Lightning, epoch 0 runs shortest-first and a run resumed after epoch 1 draws
    epoch 2's shuffle, as the unbroken run does."""
    unbroken = _fit(3, tmp_path / "unbroken")
    first = [n for epoch, n in unbroken if epoch == 0]
    assert first == sorted(first)
    assert [n for epoch, n in unbroken if epoch == 1] != first
    _fit(2, tmp_path / "broken")
    resumed = _fit(3, tmp_path / "resumed", ckpt=str(tmp_path / "broken" / "end.ckpt"))
    assert resumed == [(epoch, n) for epoch, n in unbroken if epoch == 2]


# ----------------------------------------------------------------------------- InterCTC


@pytest.mark.parametrize("conv_kernel", [0, 5])
def test_forward_inter_reads_the_middle_layer_in_the_same_pass(conv_kernel):
    """Final log-probs equal :meth:`forward`'s; the intermediate ones equal a model cut after
    that layer (its layers, convolutions, and the shared final norm and head)."""
    torch.manual_seed(0)
    model = ASREncoder(len(VOCAB), _size(), conv_channels=4, window=(4, 4),
                       conv_kernel=conv_kernel, inter_layer=2).eval()
    features, lengths = torch.randn(2, 200, 80), torch.tensor([200, 130])
    cut = copy.deepcopy(model)
    cut.encoder.layers = cut.encoder.layers[:2]
    if conv_kernel:
        cut.encoder.extras = cut.encoder.extras[:2]
    with torch.no_grad():
        final, middle, out_lengths = model.forward_inter(features, lengths)
        offline, offline_lengths, _ = model(features, lengths)
        reference, _, _ = cut(features, lengths)
    assert torch.equal(out_lengths, offline_lengths)
    assert torch.allclose(final, offline, atol=1e-6)
    assert torch.allclose(middle, reference, atol=1e-6)
    assert not torch.allclose(middle, final, atol=1e-2)


def test_inter_ctc_layer_must_be_a_middle_layer():
    for layer in (0, 3):
        with pytest.raises(UsageError, match="inter_ctc_layer must be a middle layer, 1 to 2"):
            ASREncoder(len(VOCAB), _size(), inter_layer=layer)
    with pytest.raises(UsageError, match="needs model.inter_ctc_layer"):
        ASREncoder(len(VOCAB), _size()).forward_inter(torch.randn(1, 50, 80), torch.tensor([50]))


def _module_and_batch(**kwargs):
    from tasks.asr.module import ASRModule

    torch.manual_seed(4)
    module = ASRModule(encoder=_size(), conv_channels=4, **kwargs)
    texts = ["the cat sat", "a dog"]
    dataset = data.FeatureDataset(data._pack([torch.randn(160, 80), torch.randn(120, 80)]),
                                  texts, [0, 1], torch.zeros(80), torch.ones(80))
    return module, data.collate([dataset[0], dataset[1]])


def test_inter_ctc_loss_mixes_final_and_intermediate_ctc(monkeypatch):
    module, batch = _module_and_batch(inter_ctc_layer=1, inter_ctc_weight=0.3)
    logged = {}
    monkeypatch.setattr(module, "log", lambda key, value, **_: logged.update({key: value}))
    module.eval()  # no dropout, so the two passes below see the same network
    loss = module.step(batch, "train")
    final, middle, lengths = module.model.forward_inter(batch["features"],
                                                        batch["feature_lengths"])
    ctc_final, ctc_inter = module._ctc(final, lengths, batch), module._ctc(middle, lengths, batch)
    assert torch.allclose(loss, 0.7 * ctc_final + 0.3 * ctc_inter)
    assert torch.allclose(logged["train/ctc_inter"], ctc_inter)
    assert torch.allclose(logged["train/ctc_final"], ctc_final)
    assert torch.allclose(logged["train/loss"], loss)
    loss.backward()  # the middle layer's loss trains the layers below it
    assert module.model.encoder.layers[0].ffn.net[0].weight.grad.abs().sum() > 0


def test_inter_ctc_adds_no_parameter_and_leaves_evaluation_alone(monkeypatch):
    plain, batch = _module_and_batch()
    inter, _ = _module_and_batch(inter_ctc_layer=2)
    assert inter.state_dict().keys() == plain.state_dict().keys()  # old checkpoints load
    inter.load_state_dict(plain.state_dict())
    inter.eval()
    plain.eval()
    for module in (inter, plain):
        monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    assert torch.equal(inter.model(batch["features"], batch["feature_lengths"])[0],
                       plain.model(batch["features"], batch["feature_lengths"])[0])
    assert not torch.allclose(inter.step(batch, "train"), plain.step(batch, "train"))
    assert plain.hparams.inter_ctc_layer is None  # off by default
    with pytest.raises(UsageError, match=r"inter_ctc_weight must be in \[0, 1\], got 1.5"):
        _module_and_batch(inter_ctc_layer=1, inter_ctc_weight=1.5)


# ----------------------------------------------------------------------------- SpecAugment ramp


def test_ramp_is_zero_through_warmup_then_linear_to_full():
    augment = BatchSpecAugment(1, 15, 1, 25, ramp_steps=100)
    assert [augment.ramp(step, start=50) for step in (0, 50, 100, 125, 150, 900)] == \
        [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]


def test_batch_masks_stay_inside_each_utterance_at_the_scaled_width():
    augment = BatchSpecAugment(freq_masks=2, freq_width=20, time_masks=2, time_width=40,
                               ramp_steps=10)
    lengths = torch.tensor([300, 100, 60])
    features = torch.ones(3, 300, 80)
    features[1, 100:], features[2, 60:] = 7.0, 7.0  # padding
    assert augment(features, lengths, 0.0) is features
    for seed in range(30):
        torch.manual_seed(seed)
        for scale in (1.0, 0.5):
            masked = augment(features, lengths, scale)
            for b, n in enumerate(lengths.tolist()):
                assert (masked[b, n:] == 7.0).all()  # padding untouched
                zero = masked[b, :n] == 0
                bins = zero.all(dim=0).sum().item()
                frames = zero.all(dim=1).sum().item()
                assert bins <= 2 * (20 * scale)  # two bands of < 20 * scale bins
                assert frames <= 2 * min(40 * scale, 0.2 * n)  # two spans, each <= 20%
    torch.manual_seed(0)
    assert (augment(features, lengths, 1.0) == 0).any()


def test_batch_masks_draw_as_torchaudio_does_per_utterance():
    """At full width the batched masks mask as much, on average, as the data set's
    torchaudio transforms with the same policy (old behaviour)."""
    torch.manual_seed(0)
    draws, frames = 2000, 400
    per_utterance = spec_augment_masks(freq_masks=1, freq_width=15, time_masks=1,
                                       time_width=25)
    old = torch.stack([per_utterance(torch.ones(80, frames)) for _ in range(draws)])
    new = BatchSpecAugment(1, 15, 1, 25, ramp_steps=1)(
        torch.ones(draws, frames, 80), torch.full((draws,), frames), 1.0)
    old_bins, new_bins = ((old == 0).all(-1).sum(-1).float().mean(),
                          (new == 0).all(1).sum(-1).float().mean())
    old_frames, new_frames = (old == 0).all(1).sum(-1).float().mean(), \
        (new == 0).all(-1).sum(-1).float().mean()
    assert abs(old_bins - new_bins) < 0.5 and abs(old_frames - new_frames) < 0.8
    assert 6 < new_bins < 8 and 11 < new_frames < 13  # E[floor(U * 15)], E[floor(U * 25)]


def test_span_masks_respect_each_rows_size():
    torch.manual_seed(1)
    masks = span_masks(torch.tensor([10, 50]), torch.tensor([5.0, 0.0]), count=3, total=50)
    assert masks.shape == (2, 50) and not masks[0, 10:].any() and not masks[1].any()


def test_the_ramp_moves_spec_augment_from_the_data_set_to_the_batch():
    old = data.ASRDataModule(freq_masks=1, freq_width=15, time_masks=1, time_width=25)
    assert old.masks is not None and old.batch_augment is None  # default: as before
    ramped = data.ASRDataModule(freq_masks=1, freq_width=15, time_masks=1, time_width=25,
                                spec_augment_ramp=500)
    assert ramped.masks is None
    assert ramped.batch_augment == BatchSpecAugment(1, 15, 1, 25, 500)
    off = data.ASRDataModule(spec_augment=False, spec_augment_ramp=500)
    assert off.masks is None and off.batch_augment is None
    with pytest.raises(UsageError, match="spec_augment_ramp must be >= 0"):
        data.ASRDataModule(spec_augment_ramp=-1)


def test_training_step_masks_the_batch_at_the_ramps_scale(monkeypatch):
    from types import SimpleNamespace

    module, batch = _module_and_batch()
    datamodule = data.ASRDataModule(spec_augment_ramp=4)
    seen = {}
    monkeypatch.setattr(module, "_datamodule", lambda: datamodule)
    monkeypatch.setattr(type(module), "global_step", property(lambda self: 3))
    monkeypatch.setattr(module, "log", lambda key, value, **_: seen.update({key: value}))
    monkeypatch.setattr(module, "step",
                        lambda b, stage: seen.update(batch=b) or torch.zeros(()))
    module._trainer = SimpleNamespace(estimated_stepping_batches=1000)
    module.hparams.warmup_steps = 1
    module.on_train_start()
    torch.manual_seed(0)
    module.training_step(batch, 0)
    assert seen["train/spec_augment_scale"] == 0.5  # (3 - 1) / 4
    changed = seen["batch"]["features"] != batch["features"]  # the input batch is not altered
    assert changed.any() and (seen["batch"]["features"][changed] == 0).all()


# ----------------------------------------------------------------------------- FLOP/s


def test_step_flops_count_the_real_step_and_scale_with_the_batch():
    size = _size(depth=2)
    one = step_flops(size, batch=1, frames=240, conv_channels=4)
    four = step_flops(size, batch=4, frames=240, conv_channels=4)
    assert one > 0 and abs(four / one - 4) < 0.05
    # attention is counted (the CPU kernel needs the added formula): a wider window costs more
    assert step_flops(size, 1, 240, conv_channels=4, window=(16, 16)) > \
        step_flops(size, 1, 240, conv_channels=4, window=(2, 2))
    # word pieces at 8x: fewer encoder frames and outputs than characters at 4x
    assert step_flops(size, 1, 240, units="bpe-40", subsampling=8, conv_channels=4) < one


def test_matmul_peak_is_positive_and_quick():
    start = time.perf_counter()
    peak = matmul_peak(size=128, repeats=3)
    assert peak > 1e6 and time.perf_counter() - start < 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 runs outside autocast, which would warn
        assert matmul_peak(size=128, repeats=2, dtype=torch.float32) > 1e6
