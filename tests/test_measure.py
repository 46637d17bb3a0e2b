"""Stage measurements: interleaved speed rounds and the peak memory of a piece of code."""

import sys
from functools import partial

import pytest

from suite.measure import interleaved_rates, peak_rss_since, reset_peak_rss


def test_interleaved_rates_take_turns_and_skip_warmup_rounds():
    order: list[str] = []
    steps = {name: partial(order.append, name) for name in ("a", "b")}
    rates = interleaved_rates(steps, rounds=2, steps_per_round=3, items_per_step=4,
                              warmup_rounds=1)
    assert order == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert set(rates) == {"a", "b"} and all(rate > 0 for rate in rates.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_peak_rss_counts_what_the_code_allocated():
    before = reset_peak_rss()
    block = bytearray(64 * 2**20)  # 64 MB, touched
    block[:: 4096] = b"x" * len(block[:: 4096])
    assert peak_rss_since(before) >= 60
