"""Stage measurements: interleaved speed rounds and the peak memory of a piece of code."""

import mmap
import subprocess
import sys
from functools import partial

import pytest

from suite import measure
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
    # fresh pages from the kernel, touched: a malloc'd block could reuse memory the process
    # already holds (after many tests, freed heap is not returned) and add nothing to RSS
    block = mmap.mmap(-1, 64 * 2**20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    assert peak_rss_since(before) >= 60
    block.close()


def test_in_subprocess_returns_the_last_json_line_or_an_error_row(monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs["cwd"], kwargs["timeout"]))
        if "slow" in command:
            raise subprocess.TimeoutExpired(command, kwargs["timeout"])
        if "oom" in command:
            return subprocess.CompletedProcess(command, 137, "", "Traceback\nMemoryError")
        return subprocess.CompletedProcess(command, 0, 'progress\n{"seconds": 1.5}\n', "")

    monkeypatch.setattr(measure.subprocess, "run", fake_run)
    assert measure.in_subprocess("pkg.mod", ["ok"]) == {"seconds": 1.5}
    assert calls[0] == ([sys.executable, "-m", "pkg.mod", "ok"], measure.ROOT, None)
    assert measure.in_subprocess("pkg.mod", ["oom"]) == {"error": "exit 137: MemoryError"}
    assert measure.in_subprocess("pkg.mod", ["slow"], timeout=5) == {"error": "over 5 s"}
