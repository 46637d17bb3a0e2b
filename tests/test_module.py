"""TaskModule pieces: learning-rate schedules, precision choice, classification metrics."""

import math

import pytest
import torch

from suite import module
from suite.module import ClassificationMetrics, lr_multiplier, resolve_precision


def test_cosine_warmup_then_decay_to_floor():
    factors = [lr_multiplier(s, "cosine", 10, 100, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1)


def test_cosine_anneals_by_the_clock_when_time_runs_out_first():
    # halfway through the time budget but only 10% through the steps: the factor is the
    # step-halfway one, and an exhausted budget gives the floor whatever the step
    assert lr_multiplier(10, "cosine", 0, 1000, 0.0, time_fraction=0.5) == pytest.approx(0.5)
    assert lr_multiplier(10, "cosine", 0, 1000, 0.1, time_fraction=1.0) == pytest.approx(0.1)
    assert lr_multiplier(999, "cosine", 0, 1000, 0.0, time_fraction=0.2) == pytest.approx(0.0)


def test_cosine_ignores_the_clock_while_the_steps_are_ahead_of_it():
    # ESOL's schedule: 87 warmup steps of 1,740; 1.4% of the time budget used at the first step
    # after warmup. The step schedule says ~0% of the decay; the clock's 1.4% must not count,
    # or the learning rate - and every run - would depend on the machine's speed
    for time_fraction in (0.0, 0.014, 0.03):
        assert lr_multiplier(87, "cosine", 87, 1740, 0.0, time_fraction) == \
            lr_multiplier(87, "cosine", 87, 1740, 0.0)


def test_warmup_follows_the_clock_when_time_runs_out_first():
    # a warmup of 10% of 10,000 estimated steps, but the budget binds: 5% of it spent after 50
    # steps is halfway through warmup, and after 10% of it the warmup is over
    assert lr_multiplier(49, "cosine", 1000, 10_000, 0.0, time_fraction=0.05) == \
        pytest.approx(0.5)
    assert lr_multiplier(99, "cosine", 1000, 10_000, 0.0, time_fraction=0.1) == \
        pytest.approx(1.0)
    assert lr_multiplier(99, "constant", 1000, 10_000, 0.0, time_fraction=0.1) == 1.0
    assert lr_multiplier(199, "cosine", 1000, 10_000, 0.0, time_fraction=0.55) == \
        pytest.approx(0.5)  # halfway through the budget left after warmup
    assert lr_multiplier(199, "cosine", 1000, 10_000, 0.1, time_fraction=1.0) == \
        pytest.approx(0.1)


def test_time_budget_share_comes_from_the_trainer_timer(monkeypatch):
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import Timer

    from tasks.seq2seq.module import Seq2SeqModule

    task = Seq2SeqModule()
    assert task._time_budget_used() == 0.0  # not attached to a trainer
    task.trainer = Trainer(logger=False, enable_checkpointing=False, max_epochs=1)
    assert task._time_budget_used() == 0.0  # no max_time
    task.trainer = Trainer(logger=False, enable_checkpointing=False, max_time={"seconds": 100})
    timer = next(c for c in task.trainer.callbacks if isinstance(c, Timer))
    monkeypatch.setattr(timer, "time_elapsed", lambda stage: 75.0)
    monkeypatch.setattr(timer, "time_remaining", lambda stage: 25.0)
    assert task._time_budget_used() == pytest.approx(0.75)


def test_noam_peaks_at_warmup_and_decays_as_inverse_sqrt():
    factors = [lr_multiplier(s, "noam", 100, 1000) for s in range(1000)]
    assert max(factors) == pytest.approx(1.0) and factors.index(max(factors)) == 99
    assert factors[399] == pytest.approx(math.sqrt(100 / 400))


def test_precision_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(module.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(module, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16-mixed"
    monkeypatch.setattr(module, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto") == "32-true"
    assert resolve_precision("16-mixed") == "16-mixed"


class LogRecorder:
    """What :class:`ClassificationMetrics` uses of a LightningModule: ``log_dict``."""

    def __init__(self) -> None:
        self.logged: dict[str, dict] = {}

    def log_dict(self, scores, **options) -> None:
        self.logged.update({name: options for name in scores.keys(keep_base=False)})


def test_classification_metrics_log_each_stage_and_count_only_the_test_confusion():
    metrics, module = ClassificationMetrics(3), LogRecorder()
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0]])  # (B, classes)
    labels = torch.tensor([0, 1, 2])
    metrics.log_batch(module, "train", logits, labels, batch_size=3)
    assert metrics.confusion.compute().sum() == 0
    metrics.log_batch(module, "test", logits, labels, batch_size=3)
    assert set(module.logged) == {"train/acc", "train/macro_f1", "test/acc", "test/macro_f1"}
    assert not module.logged["train/acc"]["prog_bar"] and module.logged["test/acc"]["prog_bar"]
    assert metrics.stages["test_"]["acc"].compute() == pytest.approx(2 / 3)
    assert metrics.confusion.compute().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
