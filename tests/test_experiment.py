"""Experiments: planning runs x seeds and stages, running/skipping them, carrying rows over,
and the report files."""

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from suite import experiment, paths, report
from suite.cli import main
from suite.errors import UsageError
from suite.experiment import execute, plan_runs, train_command
from suite.report import (
    Figure,
    Figures,
    copy_figures,
    is_quick,
    mean_sd,
    pyplot,
    runs_table,
    training_rows,
    write_report,
)
from suite.spec import fingerprint

SPEC = {
    "name": "demo", "head": "seq2seq", "seeds": [0, 1],
    "runs": [{"name": "a", "config": "configs/seq2seq/default.yaml",
              "overrides": {"model.encoder.depth": 1}},
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
    assert quick[0]["overrides"] == {"model.encoder.depth": 1, "trainer.max_steps": 2}


def test_overrides_can_name_the_run_seed():
    spec = {"name": "demo", "head": "seq2seq", "seeds": [3, 4],
            "runs": [{"name": "a", "config": None, "overrides": {"data.seed": "{seed}",
                                                                 "model.encoder.depth": 1}}]}
    assert [r["overrides"] for r in plan_runs(spec, quick=False)] == [
        {"data.seed": "3", "model.encoder.depth": 1}, {"data.seed": "4", "model.encoder.depth": 1}]


AFTER_SPEC = {
    "name": "demo", "head": "seq2seq", "seeds": [0, 1],
    "runs": [{"name": "fine", "config": None, "after": ["pre"],
              "overrides": {"data.seed": "{seed}", "model.init": "{runs}/pre-s0/last.ckpt"}},
             {"name": "pre", "config": None, "overrides": {}, "seeds": [0]},
             {"name": "alone", "config": None, "overrides": {}, "seeds": [0]}],
    "quick": {"seeds": [0], "overrides": {}},
}


def test_a_run_after_another_names_its_folder_and_carries_its_fingerprint():
    plan = plan_runs(AFTER_SPEC, quick=False)
    runs = {run["name"]: run for run in plan}
    assert runs["fine-s1"]["after"] == ["pre-s0"] and runs["pre-s0"]["after"] == []
    assert runs["fine-s1"]["overrides"]["model.init"] == "runs/seq2seq/demo/pre-s0/last.ckpt"
    assert plan_runs(AFTER_SPEC, quick=True)[0]["overrides"]["model.init"] == (
        "runs/seq2seq/demo-quick/pre-s0/last.ckpt")
    assert runs["fine-s1"]["upstream"] == [fingerprint(runs["pre-s0"])]
    changed = {**AFTER_SPEC, "runs": [*AFTER_SPEC["runs"][:1],
                                      {**AFTER_SPEC["runs"][1], "overrides": {"x": 1}},
                                      AFTER_SPEC["runs"][2]]}
    again = {run["name"]: run for run in plan_runs(changed, quick=False)}
    assert fingerprint(again["fine-s1"]) != fingerprint(runs["fine-s1"])  # upstream changed
    assert fingerprint(again["alone-s0"]) == fingerprint(runs["alone-s0"])


@pytest.mark.parametrize("after, message", [(["nope"], "does not train"),
                                            (["fine"], "circle")])
def test_after_a_run_not_planned_or_in_a_circle_is_a_usage_error(after, message):
    spec = {"name": "demo", "head": "seq2seq",
            "runs": [{"name": "fine", "config": None, "after": after, "overrides": {}}]}
    with pytest.raises(UsageError, match=message):
        plan_runs(spec, quick=False)


def test_waves_train_a_run_only_after_the_runs_it_waits_for(tmp_path, monkeypatch):
    order = []

    def fake_execute(run, name, root, force, threads=None):
        order.append(run["name"])
        return {"name": run["name"]}

    monkeypatch.setattr(experiment, "execute", fake_execute)
    plan = plan_runs(AFTER_SPEC, quick=False)
    assert [[r["name"] for r in wave] for wave in experiment.waves(plan)] == [
        ["pre-s0", "alone-s0"], ["fine-s0", "fine-s1"]]
    rows = experiment.execute_all(plan, "demo", tmp_path, force=False, jobs=2)
    assert list(rows) == [run["name"] for run in plan]  # plan order
    assert set(order[:2]) == {"pre-s0", "alone-s0"} and set(order[2:]) == {"fine-s0", "fine-s1"}
    fine_only = [run for run in plan if run["group"] == "fine"]  # --only fine: pre is done
    assert [[r["name"] for r in w] for w in experiment.waves(fine_only)] == [["fine-s0",
                                                                              "fine-s1"]]


def test_mean_sd_formatting():
    assert mean_sd([0.5]) == "0.5"
    assert mean_sd([1.0, 3.0]) == "2 +- 1.4 (n=2)"
    assert mean_sd([None]) == "-"
    assert mean_sd([0.5, 0.7], scale=100, decimals=2) == "60.00 +- 14.14"
    assert mean_sd([0.5, None], scale=100, decimals=2) == "50.00"


def _train_in_this_process(command, cwd, env=None):
    """The runner's ``subprocess.run``, minus the second interpreter (its torch import is most
    of a tiny run's time): the command it builds goes to ``suite.cli.main`` here."""
    assert command[:3] == [sys.executable, "-m", "suite.cli"] and cwd == paths.ROOT
    return subprocess.CompletedProcess(command, main(command[3:]))


def test_execute_runs_once_then_skips(tmp_path, monkeypatch):
    run = {"name": "tiny-s0", "group": "tiny", "head": "seq2seq", "seed": 0, "config": None,
           "overrides": {"data.train_size": 64, "data.val_size": 16, "data.test_size": 16,
                         "data.batch_size": 32, "model.encoder.dim": 32, "trainer.max_steps": 2,
                         "trainer.enable_progress_bar": False, "run.wandb": "disabled"}}
    monkeypatch.setattr(experiment, "subprocess", SimpleNamespace(run=_train_in_this_process))
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
    changed = {**run, "overrides": {**run["overrides"], "model.encoder.depth": 1}}
    execute(changed, "exp", tmp_path, force=False)
    assert len(calls) == 1 and "--model.encoder.depth=1" in calls[0]
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
    results = _results(rows)
    table = runs_table(rows, ["test/exact_match"])
    assert "| small-100 | small | d | 100 | 0.505 +- 0.0071 (n=2) |" in table
    groups = sorted({r["group"] for r in rows})
    spec = {**SPEC, "runs": [{"name": group, "config": None} for group in groups]}
    readme = write_report(spec, results, tmp_path).read_text()
    assert "suite experiment demo" in readme and "| small-100 | small |" in readme
    assert "![test/exact_match vs train_size](plot.png)" in readme
    assert (tmp_path / "plot.png").stat().st_size > 1000


def _results(rows: list[dict], command: str = "suite experiment demo") -> dict:
    return {"experiment": "demo", "command": command, "generated": "2026-11-21T00:00:00Z",
            "git_sha": "abc", "hardware": {"cpu": "cpu", "threads": 2, "gpu": None},
            "runs": rows}


def test_training_rows_are_the_planned_runs_not_stage_rows():
    """Stage rows are marked; rows of older results files that stages made are not, and are
    told apart by not being planned runs."""
    rows = [{"name": "a-s0"}, {"name": "peer-1", "stage": "peer"}, {"name": "throughput-x"},
            {"name": "b-s5"}]
    assert [r["name"] for r in training_rows(SPEC, _results(rows))] == ["a-s0", "b-s5"]
    quick = _results(rows, "suite experiment demo --quick")
    assert [r["name"] for r in training_rows(SPEC, quick)] == ["a-s0"]


def test_figures_are_copied_from_runs_or_kept_or_left_out(tmp_path):
    runs_root, out = tmp_path / "runs", tmp_path / "report"
    media = runs_root / "seq2seq" / "demo-quick" / "a-s0" / "media"
    media.mkdir(parents=True)
    (media / "map.png").write_bytes(b"new")
    out.mkdir()
    (out / "kept.png").write_bytes(b"committed")
    (out / "stale.png").write_bytes(b"a run the results no longer hold")
    section = Figures("Maps", [Figure("a-s0", "map.png", "a_map.png", "a map"),
                               Figure("b-s5", "map.png", "kept.png", "b map", "b: the map"),
                               Figure("b-s5", "other.png", "gone.png", "nowhere"),
                               Figure("c-s1", "map.png", "stale.png", "old")], "How to read.")
    rows = [{"name": "a-s0", "head": "seq2seq"}, {"name": "b-s5", "head": "seq2seq"}]
    lines = copy_figures(section, _results(rows, "suite experiment demo --quick"), out, runs_root)
    assert lines == ["### Maps", "", "How to read.", "", "![a map](a_map.png)",
                     "**b: the map**\n\n![b map](kept.png)\n", ""]
    assert (out / "a_map.png").read_bytes() == b"new"
    assert not (out / "gone.png").exists() and not (out / "stale.png").exists()
    assert copy_figures(Figures("None", []), _results(rows), out, runs_root) == []


def test_report_sections_come_from_the_declared_functions(tmp_path, monkeypatch):
    def chart(results):
        fig, ax = pyplot().subplots()
        ax.plot([1, 2], [len(results["runs"])] * 2)
        return {"drawn.png": fig}

    functions = {"x.charts": chart, "x.analysis": lambda results: "## Mine\n\ntext",
                 "x.figures": lambda results: Figures("Maps", [])}
    monkeypatch.setattr(report, "load_function", functions.__getitem__)
    spec = {**SPEC, "report": {"metrics": ["test/exact_match"], "table": False,
                               "charts": "x.charts", "analysis": "x.analysis",
                               "figures": "x.figures", "notes": "last words"}}
    rows = [{"name": "a-s0", "group": "a", "metrics": {"test/exact_match": 1.0}}]
    readme = write_report(spec, _results(rows), tmp_path).read_text()
    assert "## Results" not in readme
    assert readme.endswith("## Mine\n\ntext\n\n## Notes\n\nlast words\n")
    assert (tmp_path / "drawn.png").stat().st_size > 1000


def test_unknown_experiment_is_a_usage_error():
    from suite.errors import UsageError

    with pytest.raises(UsageError, match="unknown experiment"):
        experiment.load_spec("no-such-experiment")


def test_only_writes_a_report_that_names_the_runs_it_leaves_out(tmp_path, monkeypatch):
    spec = {k: v for k, v in SPEC.items() if k != "report"}
    monkeypatch.setattr(experiment, "load_spec", lambda name: spec)
    monkeypatch.setattr(paths, "ROOT", tmp_path)
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


def test_only_carries_over_earlier_rows_whose_configuration_is_unchanged(tmp_path, monkeypatch,
                                                                        capsys):
    spec = {k: v for k, v in SPEC.items() if k != "report"}
    monkeypatch.setattr(experiment, "load_spec", lambda name: spec)
    monkeypatch.setattr(paths, "ROOT", tmp_path)
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
    warning = capsys.readouterr().err
    assert "warning: earlier result rows dropped" in warning and warning.endswith(": a-s1\n")
    readme = (out / "README.md").read_text()
    assert "carried over from the previous results.json (a)" in readme
    assert "1 of the 2 result rows (training runs and stage measurements)" in readme


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


STAGED = {"name": "demo", "head": "seq2seq", "seeds": [0],
          "runs": [{"name": "a", "config": None}],
          "stages": [{"name": "peer", "function": "somewhere.peer_rows", "params": {"n": 2},
                      "quick": {"n": 1}}]}


def _staged(tmp_path, monkeypatch, spec: dict) -> list[str]:
    """Run ``spec`` with fake training runs and stage function; returns the call log."""
    calls: list[str] = []
    monkeypatch.setattr(experiment, "load_spec", lambda name: spec)
    monkeypatch.setattr(paths, "ROOT", tmp_path)

    def fake_execute(run, *args):
        calls.append(run["name"])
        return {"name": run["name"], "group": run["group"], "model": "m", "dataset": "d",
                "seed": run["seed"], "fingerprint": experiment.fingerprint(run),
                "metrics": {"test/exact_match": 1.0}}

    def peer_rows(n: int) -> list[dict]:
        calls.append(f"peer n={n}")
        return [{"name": f"peer-{i}", "group": "peer", "metrics": {"x": i}} for i in range(n)]

    monkeypatch.setattr(experiment, "execute", fake_execute)
    monkeypatch.setattr(experiment, "load_function", {"somewhere.peer_rows": peer_rows}.get)
    return calls


def _rows(out) -> list[tuple[str, str | None]]:
    results = json.loads((out / "results.json").read_text())
    return [(r["name"], r.get("stage")) for r in results["runs"]]


def test_stages_add_their_rows_after_the_training_runs(tmp_path, monkeypatch):
    calls = _staged(tmp_path, monkeypatch, STAGED)
    out = experiment.run_experiment("demo", jobs=2)
    assert calls == ["a-s0", "peer n=2"]
    assert _rows(out) == [("a-s0", None), ("peer-0", "peer"), ("peer-1", "peer")]
    readme = (out / "README.md").read_text()
    assert "| a | m | d |" in readme and "| peer" not in readme  # stage rows: not runs
    calls.clear()
    quick = experiment.run_experiment("demo", quick=True)
    assert calls == ["a-s0", "peer n=1"] and quick == tmp_path / "runs/quick-reports/demo"


def test_only_selects_stages_and_carries_the_other_rows_over(tmp_path, monkeypatch):
    calls = _staged(tmp_path, monkeypatch, STAGED)
    experiment.run_experiment("demo")
    calls.clear()
    out = experiment.run_experiment("demo", only=["peer"])
    assert calls == ["peer n=2"]
    results = json.loads((out / "results.json").read_text())
    assert results["carried_over"] == ["a-s0"] and _rows(out)[0] == ("a-s0", None)
    calls.clear()
    out = experiment.run_experiment("demo", only=["a"])
    assert calls == ["a-s0"] and _rows(out)[1:] == [("peer-0", "peer"), ("peer-1", "peer")]
    # runs trained side by side: a later stages-only invocation keeps saying so
    experiment.run_experiment("demo", only=["a"], jobs=2, force=True)
    out = experiment.run_experiment("demo", only=["peer"])
    assert json.loads((out / "results.json").read_text())["jobs"] == 2
    # other parameters make the stage's rows stale: left out until the stage runs again
    changed = {**STAGED, "stages": [{**STAGED["stages"][0], "params": {"n": 3}}]}
    _staged(tmp_path, monkeypatch, changed)
    out = experiment.run_experiment("demo", only=["a"])
    results = json.loads((out / "results.json").read_text())
    assert _rows(out) == [("a-s0", None)] and results["left_out"] == ["peer"]


def test_only_names_nothing_unknown(tmp_path, monkeypatch):
    _staged(tmp_path, monkeypatch, STAGED)
    with pytest.raises(UsageError, match="--only nope: no such run, run group or stage"):
        experiment.run_experiment("demo", only=["nope"])


def test_an_experiment_of_stages_alone_is_a_benchmark(tmp_path, monkeypatch):
    calls = _staged(tmp_path, monkeypatch, {**STAGED, "runs": []})
    out = experiment.run_experiment("demo", jobs=2)
    results = json.loads((out / "results.json").read_text())
    assert calls == ["peer n=2"] and "jobs" not in results
    assert results["command"] == "suite experiment demo"
    assert "## Results" not in (out / "README.md").read_text()


def test_stage_fingerprint_follows_its_parameters():
    from suite.spec import plan_stages, stage_fingerprint

    full, quick = plan_stages(STAGED, quick=False)[0], plan_stages(STAGED, quick=True)[0]
    assert (full["params"], quick["params"]) == ({"n": 2}, {"n": 1})
    assert stage_fingerprint(full) != stage_fingerprint(quick)
    assert stage_fingerprint(full) == stage_fingerprint(dict(full))


def test_a_stage_that_depends_on_a_config_is_stale_when_its_content_changes(tmp_path,
                                                                          monkeypatch):
    """The scaling stage measures the head's default model: its rows follow default.yaml's
    content, not its comments."""
    from suite.spec import plan_stages, stage_fingerprint

    monkeypatch.setattr(paths, "ROOT", tmp_path)
    config = tmp_path / "configs/demo/default.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("model: {dim: 8}\n")
    spec = {"stages": [{**STAGED["stages"][0], "depends": ["configs/demo/default.yaml"]}]}

    def fingerprint() -> str:
        return stage_fingerprint(plan_stages(spec, quick=False)[0])

    before = fingerprint()
    config.write_text("# a comment\nmodel: {dim: 8}\n")
    assert fingerprint() == before
    config.write_text("model: {dim: 16}\n")
    assert fingerprint() != before
    assert stage_fingerprint(plan_stages(STAGED, quick=False)[0]) != before


def test_build_module_is_the_module_a_run_trains():
    """Defaults, then the head's default.yaml and the config, then the changes."""
    from suite.spec import build_module

    module = build_module("seq2seq", "configs/seq2seq/default.yaml", encoder={"depth": 1})
    assert module.hparams["encoder"].depth == 1 and module.hparams["encoder"].dim == 64
    assert module.hparams["lr"] == 0.002


def test_a_partial_quick_report_names_the_quick_command():
    from suite.report import _header

    results = {"command": "suite experiment demo --quick --only a", "generated": "now",
               "git_sha": None, "hardware": {"cpu": "cpu", "threads": 2, "gpu": None},
               "runs": [], "left_out": ["b-s0"]}
    text = "\n".join(_header({"name": "demo"}, results))
    assert "`suite experiment demo --quick` runs them" in text
    results["command"] = "suite experiment demo --only a"
    assert "`suite experiment demo` runs them" in "\n".join(_header({"name": "demo"}, results))


def test_a_stage_for_each_run_measures_only_the_runs_it_lacks(tmp_path, monkeypatch):
    each = {**STAGED, "stages": [{"name": "peer", "function": "somewhere.peer_rows",
                                  "each": "runs", "params": {"runs": ["x", "y"]}}]}
    calls: list[str] = []
    _staged(tmp_path, monkeypatch, each)

    def peer_rows(runs: list[str]) -> list[dict]:
        calls.append(f"peer {runs}")
        return [{"name": f"peer-{run}", "group": "peer", "metrics": {}} for run in runs]

    monkeypatch.setattr(experiment, "load_function", {"somewhere.peer_rows": peer_rows}.get)
    experiment.run_experiment("demo")
    assert calls == ["peer ['x']", "peer ['y']"]  # one call per run
    grown = {**each, "stages": [{**each["stages"][0], "params": {"runs": ["x", "y", "z"]}}]}
    _staged(tmp_path, monkeypatch, grown)
    monkeypatch.setattr(experiment, "load_function", {"somewhere.peer_rows": peer_rows}.get)
    calls.clear()
    out = experiment.run_experiment("demo", only=["peer:z"])  # one part by its unit
    assert calls == ["peer ['z']"]
    assert _rows(out) == [("a-s0", None), ("peer-x", "peer"), ("peer-y", "peer"),
                          ("peer-z", "peer")]  # x and y carried over
    calls.clear()
    experiment.run_experiment("demo", only=["peer"])  # the stage's name: every part
    assert calls == ["peer ['x']", "peer ['y']", "peer ['z']"]


def test_each_must_name_a_list_parameter():
    from suite.spec import plan_stages

    spec = {**STAGED, "stages": [{**STAGED["stages"][0], "each": "n"}]}
    with pytest.raises(UsageError, match="each: n names no list parameter"):
        plan_stages(spec, quick=False)


def test_a_stage_part_is_stale_once_its_run_changes():
    from suite.spec import measured_runs, plan_runs, plan_stages, stage_fingerprint

    spec = {**STAGED, "stages": [{"name": "peer", "function": "somewhere.peer_rows",
                                  "each": "runs", "params": {"runs": ["a-s0", "other"]}}]}
    before = measured_runs(plan_stages(spec, False), plan_runs(spec, False))
    changed = {**spec, "runs": [{"name": "a", "config": None, "overrides": {"x": 1}}]}
    after = measured_runs(plan_stages(changed, False), plan_runs(changed, False))
    assert stage_fingerprint(before[0]) != stage_fingerprint(after[0])  # measures run a-s0
    assert stage_fingerprint(before[1]) == stage_fingerprint(after[1])  # names no run


@pytest.mark.parametrize("value, text", [(None, "null"), (True, "true"), (False, "false"),
                                         (4, "4"), (0.3, "0.3"), ("00:00:08:00", "00:00:08:00")])
def test_an_override_reaches_the_command_line_as_the_parser_reads_it(value, text):
    """A YAML null in an experiment's overrides once reached `suite train` as 'None'."""
    run = {"head": "asr", "config": None, "overrides": {"trainer.max_time": value},
           "seed": 0, "name": "r-s0"}
    assert f"--trainer.max_time={text}" in train_command(run, "e", Path("runs"))
