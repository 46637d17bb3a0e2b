"""Named experiments: ``configs/experiments/<name>.yaml`` -> rows -> ``reports/<name>/``.

The experiment file (:mod:`suite.spec`) declares training runs and stages. Each training run is
``suite train`` in a subprocess, exactly as a user would type it; a run whose ``summary.json``
already holds test metrics is skipped unless forced. Stages then add the rows that are not
training runs (peers, baselines, benchmarks), one after another and alone on the machine, since
some of them measure speed. All rows go into ``results.json``, then :mod:`suite.report` writes
the README from it.

``--quick`` runs the reduced grid and writes its report under ``runs/quick-reports/``, so the
committed reference results are never overwritten by a smoke run.
``--jobs N`` trains N runs side by side, each subprocess on ``cpus // N`` threads: small
kernels scale badly across threads, so on a CPU with few cores several one-thread runs train
more steps per second in all than one run on every thread, at the price of each run's own time.
``--only`` executes a subset of the runs (by name or group) and stages (by name); the others
keep their rows from the existing ``results.json`` where their fingerprint is unchanged, so a
long experiment can be measured piecewise, on different days or machines, into one report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from suite import paths
from suite.data import atomic_write_bytes
from suite.errors import DataError, UsageError
from suite.report import load_function, write_report
from suite.runner import git_sha, hardware
from suite.spec import (
    fingerprint,
    load_spec,
    measured_runs,
    plan_runs,
    plan_stages,
    runs_folder,
    stage_fingerprint,
)


def command_value(value: Any) -> str:
    """An override's value as the command line reads it: YAML's null and booleans as ``null``,
    ``true``, ``false`` (Python's ``None`` / ``True`` would reach the parser as strings)."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def train_command(run: dict[str, Any], experiment: str, root: Path) -> list[str]:
    """The ``suite train`` command line of one planned run, its directory under ``root``."""
    command = [sys.executable, "-m", "suite.cli", "train", run["head"]]
    if run["config"]:
        command += ["-c", str(paths.ROOT / run["config"])]
    command += [f"--{k}={command_value(v)}" for k, v in run["overrides"].items()]
    command += [f"--seed_everything={run['seed']}", f"--run.experiment={experiment}",
                f"--run.name={run['name']}", f"--run.root={root}"]
    return command


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
        proc = subprocess.run(command, cwd=paths.ROOT, env=env)
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
            "metrics": summary.get("metrics", {}),
            **({"curves": summary["curves"]} if "curves" in summary else {})}


def run_stage(stage: dict[str, Any], experiment: str) -> list[dict[str, Any]]:
    """Call one stage with its parameters; its rows, each marked with the stage's name and
    fingerprint (what :func:`carried_over` matches)."""
    print(f"[{experiment}] stage {stage['name']}: {stage['function']}({stage['params']})",
          flush=True)
    mark = {"stage": stage["name"], "fingerprint": stage_fingerprint(stage)}
    return [{**row, **mark} for row in load_function(stage["function"])(**stage["params"])]


def carried_over(planned: list[dict[str, Any]], stages: list[dict[str, Any]],
                 results_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows of an earlier ``results.json``, by run or stage name, for the planned runs and
    stages whose fingerprint is unchanged; the rows it drops are named in a warning, since
    they may have no checkpoint left to measure them again."""
    if not results_path.is_file():
        return {}
    earlier = json.loads(results_path.read_text())["runs"]
    by_name = {row["name"]: row for row in earlier if "stage" not in row}
    kept = {run["name"]: [by_name[run["name"]]] for run in planned if run["name"] in by_name
            and by_name[run["name"]].get("fingerprint") == fingerprint(run)}
    for stage in stages:
        rows = [row for row in earlier if row.get("stage") == stage["name"]
                and row.get("fingerprint") == stage_fingerprint(stage)]
        if rows:
            kept[stage["unit"]] = rows
    kept_rows = {id(row) for rows in kept.values() for row in rows}
    dropped = [row["name"] for row in earlier if id(row) not in kept_rows]
    if dropped:
        print("warning: earlier result rows dropped (no longer planned, or their configuration "
              "or upstream run changed since they were measured; --only them to measure "
              f"again): {', '.join(dropped)}", file=sys.stderr, flush=True)
    return kept


def waves(runs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The runs in the order they can train: each wave waits only for earlier waves' runs
    (a run's ``after``; a run it waits for that is not among ``runs`` is taken as done)."""
    names = {run["name"] for run in runs}
    level: dict[str, int] = {}
    pending = list(runs)
    while pending:
        ready = [run for run in pending
                 if all(dep in level or dep not in names for dep in run.get("after", []))]
        if not ready:
            raise UsageError("runs wait for each other in a circle: "
                             + ", ".join(run["name"] for run in pending))
        for run in ready:
            level[run["name"]] = 1 + max((level[d] for d in run.get("after", []) if d in level),
                                         default=-1)
        pending = [run for run in pending if run["name"] not in level]
    return [[run for run in runs if level[run["name"]] == wave]
            for wave in range(1 + max(level.values(), default=-1))]


def _execute_wave(runs: list[dict[str, Any]], experiment: str, root: Path, force: bool,
                  jobs: int) -> dict[str, dict[str, Any]]:
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


def execute_all(runs: list[dict[str, Any]], experiment: str, root: Path, force: bool,
                jobs: int = 1) -> dict[str, dict[str, Any]]:
    """:func:`execute` every run, wave by wave (:func:`waves`), ``jobs`` at a time, each on
    its share of the CPU's threads; rows by run name, in plan order. Within a wave a failed
    run does not stop the others; the first failure is raised once they are done (before any
    later wave, which may need its output), so finished runs are kept for the next invocation."""
    rows: dict[str, dict[str, Any]] = {}
    for wave in waves(runs):
        rows |= _execute_wave(wave, experiment, root, force, jobs)
    return {run["name"]: rows[run["name"]] for run in runs}


def _earlier_jobs(results_path: Path) -> int:
    """How many runs the earlier ``results.json`` trained side by side (1 if it says nothing):
    an invocation that trains no run keeps it, since the run rows it carries were timed so."""
    if not results_path.is_file():
        return 1
    return int(json.loads(results_path.read_text()).get("jobs", 1))


def run_experiment(name: str, quick: bool = False, force: bool = False,
                   only: list[str] | None = None, jobs: int = 1) -> Path:
    """Run (or resume) experiment ``name`` and write its report; returns the report folder.

    Training runs go first, ``jobs`` at a time (:func:`execute_all`); the stages follow one by
    one once every run is done. ``only`` names the runs, run groups and stages to execute."""
    spec = load_spec(name)
    experiment = runs_folder(name, quick)
    out_dir = paths.report_dir(name, quick)
    planned = plan_runs(spec, quick)
    stages = measured_runs(plan_stages(spec, quick), planned)
    units = [run["name"] for run in planned] + [stage["unit"] for stage in stages]
    groups = {run["group"] for run in planned} | {stage["name"] for stage in stages}
    unknown = sorted(set(only or []) - set(units) - groups)
    if unknown:
        raise UsageError(f"--only {' '.join(unknown)}: no such run, run group or stage in "
                         f"{name}; expected some of: {', '.join(units)}")
    chosen = [run for run in planned if not only or run["name"] in only or run["group"] in only]
    trained = execute_all(chosen, experiment, paths.ROOT / "runs", force, jobs)
    fresh = {unit: [row] for unit, row in trained.items()}
    fresh.update({stage["unit"]: run_stage(stage, experiment) for stage in stages
                  if not only or stage["name"] in only or stage["unit"] in only})
    earlier = carried_over(planned, stages, out_dir / "results.json") if only and not quick else {}
    by_unit = {**earlier, **fresh}
    command = f"suite experiment {name}" + (" --quick" if quick else "")
    command += f" --jobs {jobs}" if jobs > 1 and planned else ""
    command += f" --only {' '.join(only)}" if only else ""
    results = {"experiment": name, "command": command,
               "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "git_sha": git_sha(), "hardware": hardware(),
               "runs": [row for unit in units if unit in by_unit for row in by_unit[unit]]}
    carried = [row["name"] for unit, rows in earlier.items() if unit not in fresh for row in rows]
    left_out = [unit for unit in units if unit not in by_unit]
    side_by_side = jobs if chosen or not earlier else _earlier_jobs(out_dir / "results.json")
    if side_by_side > 1 and planned:
        results["jobs"] = side_by_side
    if carried:
        results["carried_over"] = carried
    if left_out:
        results["left_out"] = left_out
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "results.json", json.dumps(results, indent=2).encode())
    write_report(spec, results, out_dir)
    print(f"report written to {out_dir}")
    return out_dir
