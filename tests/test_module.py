"""TaskModule pieces: learning-rate schedules and precision choice."""

import math

import pytest

from suite import module
from suite.module import lr_multiplier, resolve_precision


def test_cosine_warmup_then_decay_to_floor():
    factors = [lr_multiplier(s, "cosine", 10, 100, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1)


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
