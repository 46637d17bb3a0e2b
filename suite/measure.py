"""Speed and memory measurements for experiment stages (benchmarks, peers side by side).

Memory is the kernel's account of this process (Linux ``/proc/self``): :func:`reset_peak_rss`
clears the peak-resident-size mark and returns the resident size at that moment, so
:func:`peak_rss_since` afterwards counts only what the measured code allocated, not start-up or
inputs. Speed is :func:`interleaved_rates`: candidates timed in turn, round by round, so load
from other processes on a shared CPU falls on all of them alike.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from suite.paths import ROOT

Key = TypeVar("Key")


def proc_status_mb(field: str) -> float:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith(field))
    return int(line.split()[1]) / 1024


def reset_peak_rss() -> float:
    """Reset the peak-RSS mark (``clear_refs`` 5) and return the current RSS in MB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return proc_status_mb("VmRSS")


def peak_rss_since(before: float) -> float:
    """Peak RSS (MB) since :func:`reset_peak_rss` returned ``before``, above that level."""
    return proc_status_mb("VmHWM") - before


def in_subprocess(module: str, args: Sequence[str], timeout: float | None = None
                  ) -> dict[str, Any]:
    """Run ``python -m module args`` from the project root and return the JSON object its last
    output line prints - one measurement in a fresh process, so its peak memory is its own.
    A failure or a timeout is a row's ``{"error": ...}``, not an exception: one length that
    runs out of memory must not end the sweep."""
    try:
        proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:g} s"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        return {"error": f"exit {proc.returncode}: {last[:200]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def interleaved_rates(steps: dict[Key, Callable[[], None]], rounds: int, steps_per_round: int,
                      items_per_step: int, warmup_rounds: int = 0) -> dict[Key, float]:
    """Items per second of each candidate's ``step``: every round runs each candidate's
    ``steps_per_round`` steps in turn; the median over ``rounds`` timed rounds (after
    ``warmup_rounds`` untimed ones) counts."""
    rates: dict[Key, list[float]] = {key: [] for key in steps}
    for round_ in range(warmup_rounds + rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            if round_ >= warmup_rounds:
                rates[key].append(items_per_step * steps_per_round
                                  / (time.perf_counter() - start))
    return {key: statistics.median(values) for key, values in rates.items()}
