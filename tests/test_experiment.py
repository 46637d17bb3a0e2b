"""Experiments: planning runs x seeds, running/skipping them, and the report files."""

import json
import subprocess
import threading

import pytest

from suite import experiment
from suite.experiment import execute, plan_runs
from suite.report import is_quick, mean_sd, runs_table, write_report

SPEC = {
    "name": "demo", "head": "seq2seq", "seeds": [0, 1],
    "runs": [{"name": "a", "config": "configs/seq2seq/default.yaml",
              "overrides": {"model.depth": 1}},
             {"name": "b", "config": None, "overrides": {}, "seeds": [5]}],
    "quick": {"seeds": [0], "runs": ["a"], "overrides": {"trainer.max_steps": 2}},
    "report": {"metrics": ["test/exact_match"],
               "plots": [{"x": "train_size", "y": "test/exact_match", "series": "model",
                          "logx": True, "file": "plot.png"}]},
}


def test_plan_expands_seeds_and_quick_subset():
    full = plan_runs(SPEC, quick=False)
    assert [r["name"] for r in full] == ["a-s0", "a-s1", "b-s5"]
    quick = plan_runs(SPEC, quick=True)
    assert [r["name"] for r in quick] == ["a-s0"]
    assert quick[0]["overrides"] == {"model.depth": 1, "trainer.max_steps": 2}


def test_overrides_can_name_the_run_seed():
    spec = {"name": "demo", "head": "seq2seq", "seeds": [3, 4],
            "runs": [{"name": "a", "config": None, "overrides": {"data.seed": "{seed}",
                                                                 "model.depth": 1}}]}
    assert [r["overrides"] for r in plan_runs(spec, quick=False)] == [
        {"data.seed": "3", "model.depth": 1}, {"data.seed": "4", "model.depth": 1}]


def test_mean_sd_formatting():
    assert mean_sd([0.5]) == "0.5"
    assert mean_sd([1.0, 3.0]) == "2 +- 1.4 (n=2)"
    assert mean_sd([None]) == "-"


def test_execute_runs_once_then_skips(tmp_path, monkeypatch):
    run = {"name": "tiny-s0", "group": "tiny", "head": "seq2seq", "seed": 0, "config": None,
           "overrides": {"data.train_size": 64, "data.val_size": 16, "data.test_size": 16,
                         "data.batch_size": 32, "model.dim": 32, "trainer.max_steps": 2,
                         "trainer.enable_progress_bar": False, "run.wandb": "disabled"}}
    row = execute(run, "exp", tmp_path, force=False)
    assert row["name"] == "tiny-s0" and "test/exact_match" in row["metrics"]
    assert row["params"] > 0 and row["train_size"] == 64

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a finished run must be skipped")

    monkeypatch.setattr(experiment.subprocess, "run", no_subprocess)
    assert execute(run, "exp", tmp_path, force=False)["metrics"] == row["metrics"]

    # a changed configuration makes the finished run stale: it runs again
    run_dir = tmp_path / "seq2seq" / "exp" / "tiny-s0"
    summary = (run_dir / "summary.json").read_text()
    calls = []

    def fake_run(command, cwd, env=None):
        assert not run_dir.exists(), "a re-run starts without the old run's checkpoints"
        calls.append(command)
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(summary)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(experiment.subprocess, "run", fake_run)
    changed = {**run, "overrides": {**run["overrides"], "model.depth": 1}}
    execute(changed, "exp", tmp_path, force=False)
    assert len(calls) == 1 and "--model.depth=1" in calls[0]
    execute(changed, "exp", tmp_path, force=False)  # now up to date: skipped
    assert len(calls) == 1
    (run_dir / "fingerprint").unlink()  # finished before fingerprints existed: kept
    execute(run, "exp", tmp_path, force=False)
    assert len(calls) == 1


def test_report_tables_and_plots(tmp_path):
    rows = [{"name": f"{m}-{n}-s{s}", "group": f"{m}-{n}", "model": m, "dataset": "d",
             "train_size": n, "seed": s, "params": 10, "train_seconds": 1.0,
             "samples_per_second": 5.0, "peak_memory_mb": 1.0,
             "metrics": {"test/exact_match": acc + s / 100}}
            for m, acc in (("small", 0.5), ("big", 0.7)) for n in (100, 1000) for s in (0, 1)]
    results = {"experiment": "demo", "command": "suite experiment demo",
               "generated": "2026-11-21T00:00:00Z", "git_sha": "abc",
               "hardware": {"cpu": "cpu", "threads": 2, "gpu": None}, "runs": rows}
    table = runs_table(rows, ["test/exact_match"])
    assert "| small-100 | small | d | 100 | 0.505 +- 0.0071 (n=2) |" in table
    readme = write_report(SPEC, results, tmp_path).read_text()
    assert "suite experiment demo" in readme and "![" in readme
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_unknown_experiment_is_a_usage_error():
    from suite.cli import UsageError

    with pytest.raises(UsageError, match="unknown experiment"):
        experiment.load_spec("no-such-experiment")


def test_only_writes_a_report_that_names_the_runs_it_leaves_out(tmp_path, monkeypatch):
    spec = {k: v for k, v in SPEC.items() if k != "report"}
    monkeypatch.setattr(experiment, "load_spec", lambda name: spec)
    monkeypatch.setattr(experiment, "ROOT", tmp_path)
    monkeypatch.setattr(experiment, "execute", lambda run, *args: {
        "name": run["name"], "group": run["group"], "model": "m", "dataset": "d", "seed": 5,
        "train_size": 1, "params": 1, "metrics": {"test/exact_match": 1.0}})
    out = experiment.run_experiment("demo", only=["b"])
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["runs"]] == ["b-s5"]
    assert results["left_out"] == ["a-s0", "a-s1"] and results["command"].endswith("--only b")
    assert "**Partial report**: 2 planned runs" in (out / "README.md").read_text()


def test_quick_is_read_from_the_command_whatever_follows_it():
    assert is_quick({"command": "suite experiment demo --quick --only a"})
    assert not is_quick({"command": "suite experiment demo --only quick"})


def test_fingerprint_ignores_comments_but_not_values(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  depth: 2\n")
    run = {"head": "seq2seq", "config": str(config), "overrides": {}, "seed": 0}
    before = experiment.fingerprint(run)
    config.write_text("# why depth 2\nmodel:\n  depth: 2  # small\n")
    assert experiment.fingerprint(run) == before
    config.write_text("model:\n  depth: 3\n")
    assert experiment.fingerprint(run) != before


def test_only_carries_over_earlier_rows_whose_configuration_is_unchanged(tmp_path, monkeypatch):
    spec = {k: v for k, v in SPEC.items() if k != "report"}
    monkeypatch.setattr(experiment, "load_spec", lambda name: spec)
    monkeypatch.setattr(experiment, "ROOT", tmp_path)
    planned = {r["name"]: r for r in plan_runs(spec, quick=False)}

    def row(name: str, value: float, fingerprint: str) -> dict:
        return {"name": name, "group": planned[name]["group"], "fingerprint": fingerprint,
                "model": "m", "dataset": "d", "seed": planned[name]["seed"], "train_size": 1,
                "params": 1, "metrics": {"test/exact_match": value}}

    monkeypatch.setattr(experiment, "execute", lambda run, *args: row(
        run["name"], 1.0, experiment.fingerprint(run)))
    earlier = {"runs": [row("a-s0", 0.5, experiment.fingerprint(planned["a-s0"])),
                        row("a-s1", 0.5, "an older configuration"),
                        row("b-s5", 0.5, experiment.fingerprint(planned["b-s5"]))]}
    (tmp_path / "reports" / "demo").mkdir(parents=True)
    (tmp_path / "reports" / "demo" / "results.json").write_text(json.dumps(earlier))
    out = experiment.run_experiment("demo", only=["b"])
    results = json.loads((out / "results.json").read_text())
    # a-s0 carried over; a-s1 ran with another configuration, so it is left out; b re-measured
    assert [(r["name"], r["metrics"]["test/exact_match"]) for r in results["runs"]] == [
        ("a-s0", 0.5), ("b-s5", 1.0)]
    assert results["carried_over"] == ["a-s0"] and results["left_out"] == ["a-s1"]
    assert "carried over from the previous results.json (a)" in (out / "README.md").read_text()


def test_jobs_run_side_by_side_on_a_share_of_the_threads_and_keep_going_past_a_failure(
        tmp_path, monkeypatch):
    monkeypatch.setattr(experiment.os, "cpu_count", lambda: 4)
    started, both_running = [], threading.Barrier(2, timeout=10)

    def fake_execute(run, name, root, force, threads=None):
        started.append((run["name"], threads))
        both_running.wait()  # returns only once two runs are in flight together
        if run["name"] == "bad":
            raise experiment.DataError("run bad failed with exit code 1")
        return {"name": run["name"]}

    monkeypatch.setattr(experiment, "execute", fake_execute)
    runs = [{"name": n} for n in ("a", "bad", "c", "d")]
    with pytest.raises(experiment.DataError, match="run bad failed"):
        experiment.execute_all(runs, "exp", tmp_path, force=False, jobs=2)
    assert sorted(started) == [("a", 2), ("bad", 2), ("c", 2), ("d", 2)]  # c, d still ran
    rows = experiment.execute_all([*runs[2:], {"name": "e"}, runs[0]], "exp", tmp_path,
                                  force=False, jobs=2)
    assert list(rows) == ["c", "d", "e", "a"]  # in plan order, whatever finished first


def test_execute_passes_the_thread_share_to_the_training_subprocess(tmp_path, monkeypatch):
    seen = {}

    def fake_run(command, cwd, env=None):
        seen["threads"] = (env or {}).get("OMP_NUM_THREADS")
        raise SystemExit  # stop before the summary is read

    monkeypatch.setattr(experiment.subprocess, "run", fake_run)
    run = {"name": "t-s0", "group": "t", "head": "seq2seq", "seed": 0, "config": None,
           "overrides": {}}
    with pytest.raises(SystemExit):
        execute(run, "exp", tmp_path, force=False, threads=1)
    assert seen["threads"] == "1"
