"""Named experiments: ``configs/experiments/<name>.yaml`` -> runs -> ``reports/<name>/``.

An experiment file is either a grid of training runs::

    description: what question the experiment answers
    head: vision
    seeds: [0, 1]
    runs:
      - {name: cnn-1k, config: configs/vision/cnn.yaml, overrides: {data.train_size: 1000}}
    quick: {seeds: [0], runs: [cnn-1k], overrides: {trainer.max_epochs: 1}}
    report: {metrics: [test/acc], plots: [{x: train_size, y: test/acc, series: model}]}

or a benchmark (``benchmark: package.module``, whose ``run(quick) -> list[dict]`` returns
result rows). Each training run is ``suite train`` in a subprocess, exactly as a user would
type it; a run whose ``summary.json`` already holds test metrics is skipped unless forced.
An override value may name its run's seed as ``"{seed}"`` (e.g. ``data.seed: "{seed}"``, so each
seed also draws its own data split).
``--quick`` runs the reduced grid and writes its report under ``runs/quick-reports/``, so the
committed reference results are never overwritten by a smoke run.
``--jobs N`` trains N runs side by side, each subprocess on ``cpus // N`` threads: on a 2-core
CPU two one-thread ASR runs trained ~40% more steps per second in all than one two-thread run
(1.8 it/s each vs 2.6, measured 2026-12-01: small kernels scale badly across threads), at the
price of each run's own time.
``--only`` runs a subset; the other planned runs keep their rows from the existing
``results.json`` where their configuration (fingerprint) is unchanged, so a long experiment can be
measured piecewise, on different days or machines, into one report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from suite.cli import UsageError
from suite.data import DataError, atomic_write_bytes
from suite.runner import git_sha, hardware

ROOT = Path(__file__).resolve().parent.parent


def load_spec(name: str) -> dict[str, Any]:
    path = ROOT / "configs" / "experiments" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise UsageError(f"unknown experiment {name!r}; expected one of: {', '.join(known)}")
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("name", name)
    return spec


def plan_runs(spec: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Expand runs x seeds (the quick subset with its extra overrides when ``quick``)."""
    quick_spec = spec.get("quick", {}) if quick else {}
    seeds = quick_spec.get("seeds", spec.get("seeds", [0]))
    runs = spec["runs"]
    if quick_spec.get("runs"):
        runs = [r for r in runs if r["name"] in quick_spec["runs"]]
    planned = []
    for run in runs:
        for seed in run.get("seeds", seeds):
            overrides = {key: value.replace("{seed}", str(seed)) if isinstance(value, str)
                         else value for key, value in
                         {**run.get("overrides", {}), **quick_spec.get("overrides", {})}.items()}
            planned.append({"name": f"{run['name']}-s{seed}", "group": run["name"],
                            "head": run.get("head", spec.get("head")), "seed": seed,
                            "config": run.get("config"), "overrides": overrides})
    return planned


def train_command(run: dict[str, Any], experiment: str, root: Path) -> list[str]:
    command = [sys.executable, "-m", "suite.cli", "train", run["head"]]
    if run["config"]:
        command += ["-c", str(ROOT / run["config"])]
    command += [f"--{k}={v}" for k, v in run["overrides"].items()]
    command += [f"--seed_everything={run['seed']}", f"--run.experiment={experiment}",
                f"--run.name={run['name']}", f"--run.root={root}"]
    return command


def fingerprint(run: dict[str, Any]) -> str:
    """What a run's result depends on besides code: its head's default config, its own config
    file (parsed, so comments and layout do not count), overrides and seed. A finished run
    whose fingerprint differs is stale."""
    paths = [ROOT / "configs" / run["head"] / "default.yaml"]
    paths += [ROOT / run["config"]] if run["config"] else []
    configs = [yaml.safe_load(path.read_text()) if path.is_file() else None for path in paths]
    key = json.dumps([configs, sorted(run["overrides"].items()), run["seed"]], default=str,
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def execute(run: dict[str, Any], experiment: str, root: Path, force: bool,
            threads: int | None = None) -> dict[str, Any]:
    """Run one training run (unless done with the same configuration) and return its row.

    ``threads`` caps the subprocess's intra-op threads (``OMP_NUM_THREADS``); None leaves
    them. Runs finished before fingerprints were recorded (no ``fingerprint`` file) are kept."""
    run_dir = root / run["head"] / experiment / run["name"]
    summary_path, stamp = run_dir / "summary.json", run_dir / "fingerprint"
    done = summary_path.is_file() and any(
        k.startswith("test") for k in json.loads(summary_path.read_text()).get("metrics", {}))
    stale = done and stamp.is_file() and stamp.read_text() != fingerprint(run)
    if stale:
        print(f"[{experiment}] {run['name']}: its configuration changed since it ran; "
              "running it again", flush=True)
    if force or not done or stale:
        # start clean: an older configuration's best.ckpt would outlive the new run (Lightning
        # saves the new one as best-v1.ckpt) and `predict --ckpt .../best.ckpt` would use it
        shutil.rmtree(run_dir, ignore_errors=True)
        command = train_command(run, experiment, root)
        print(f"[{experiment}] {run['name']}: {' '.join(command[2:])}", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
        proc = subprocess.run(command, cwd=ROOT, env=env)
        if proc.returncode != 0:
            raise DataError(f"run {run['name']} failed with exit code {proc.returncode}")
        atomic_write_bytes(stamp, fingerprint(run).encode())
    summary = json.loads(summary_path.read_text())
    return {"name": run["name"], "fingerprint": fingerprint(run), "group": run["group"],
            "head": run["head"],
            "model": summary.get("model"), "dataset": summary.get("dataset"),
            "train_size": summary.get("train_size"), "seed": run["seed"],
            "config": run["config"], "overrides": run["overrides"],
            "precision": summary.get("precision"), "params": summary.get("params"),
            "train_seconds": summary.get("train_seconds"), "epochs": summary.get("epochs"),
            "steps": summary.get("steps"),
            "samples_per_second": summary.get("samples_per_second"),
            "peak_memory_mb": summary.get("peak_memory_mb"),
            "metrics": summary.get("metrics", {})}


def carried_over(planned: list[dict[str, Any]], results_path: Path) -> dict[str, dict[str, Any]]:
    """Rows of an earlier ``results.json`` for planned runs whose fingerprint is unchanged."""
    if not results_path.is_file():
        return {}
    earlier = {row["name"]: row for row in json.loads(results_path.read_text())["runs"]}
    return {run["name"]: earlier[run["name"]] for run in planned
            if run["name"] in earlier
            and earlier[run["name"]].get("fingerprint") == fingerprint(run)}


def execute_all(runs: list[dict[str, Any]], experiment: str, root: Path, force: bool,
                jobs: int = 1) -> dict[str, dict[str, Any]]:
    """:func:`execute` every run, ``jobs`` at a time, each on its share of the CPU's threads;
    rows by run name. A failed run does not stop the others; the first failure is raised once
    they are done, so finished runs are kept for the next invocation."""
    if jobs <= 1:
        return {run["name"]: execute(run, experiment, root, force) for run in runs}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        futures = {run["name"]: pool.submit(execute, run, experiment, root, force, threads)
                   for run in runs}
    failure = next((e for e in (f.exception() for f in futures.values()) if e), None)
    if failure is not None:
        raise failure
    return {name: future.result() for name, future in futures.items()}


def run_experiment(name: str, quick: bool = False, force: bool = False,
                   only: list[str] | None = None, jobs: int = 1) -> Path:
    """Run (or resume) experiment ``name`` and write its report; returns the report folder.

    ``jobs`` > 1 trains that many runs side by side (:func:`execute_all`); benchmarks run
    alone whatever it says, since they measure speed."""
    from suite.report import write_report

    spec = load_spec(name)
    experiment = f"{name}-quick" if quick else name
    out_dir = ROOT / ("runs/quick-reports" if quick else "reports") / name
    if "benchmark" in spec:
        module = importlib.import_module(spec["benchmark"])
        rows = module.run(quick=quick)
    else:
        root = ROOT / "runs"
        planned = plan_runs(spec, quick)
        chosen = [r for r in planned if not only or r["name"] in only or r["group"] in only]
        fresh = execute_all(chosen, experiment, root, force, jobs)
        earlier = carried_over(planned, out_dir / "results.json") if only and not quick else {}
        carried = [name for name in earlier if name not in fresh]
        by_name = {**earlier, **fresh}
        rows = [by_name[r["name"]] for r in planned if r["name"] in by_name]
        left_out = [r["name"] for r in planned if r["name"] not in by_name]
    command = f"suite experiment {name}" + (" --quick" if quick else "")
    command += f" --jobs {jobs}" if jobs > 1 and "benchmark" not in spec else ""
    results = {"experiment": name, "command": command + (
                   f" --only {' '.join(only)}" if only else ""),
               "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "git_sha": git_sha(), "hardware": hardware(), "runs": rows}
    if "benchmark" not in spec and jobs > 1:
        results["jobs"] = jobs
    if "benchmark" not in spec and carried:
        results["carried_over"] = carried
    if "benchmark" not in spec and left_out:
        results["left_out"] = left_out
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "results.json", json.dumps(results, indent=2).encode())
    write_report(spec, results, out_dir)
    print(f"report written to {out_dir}")
    return out_dir
