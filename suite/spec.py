"""The experiment file ``configs/experiments/<name>.yaml``: loading it, and expanding its
training runs (runs x seeds) and its stages into the plan :mod:`suite.experiment` executes::

    description: what question the experiment answers
    head: vision
    seeds: [0, 1]
    runs:
      - {name: cnn-1k, config: configs/vision/cnn.yaml, overrides: {data.train_size: 1000}}
    stages:
      - {name: throughput, function: experiments.vit_vs_cnn.throughput.rows,
         params: {steps: 4}, quick: {steps: 2}}
    quick: {seeds: [0], runs: [cnn-1k], overrides: {trainer.max_epochs: 1}}
    report: {metrics: [test/acc], analysis: experiments.vit_vs_cnn.report.analysis}

A **run** is ``suite train`` of one head with a config file and overrides; an override value
may name its run's seed as ``"{seed}"`` (e.g. ``data.seed: "{seed}"``, so each seed also draws
its own data split) and the folder of the experiment's runs as ``"{runs}"``. A run may start
from another's output: ``after: [pretrain]`` (run names, without the seed) trains those first
and makes their fingerprints part of its own, e.g. with
``overrides: {data.pretrained: "{runs}/pretrain-s0/checkpoints/last.ckpt"}``.
A **stage** is a function ``(**params) -> list[row]`` that adds rows
which are not training runs (peers, baselines, speed and memory measurements) in the
results-file format; ``quick`` parameters replace ``params`` under ``--quick``; ``each: runs``
calls it once per element of its ``runs`` list (:func:`plan_stages`); ``depends:
[configs/asr/default.yaml]`` names config files its rows depend on (a stage that measures a
head's default model). An experiment may consist of stages only (a benchmark).

Both carry a **fingerprint** of what their rows depend on besides code, so rows measured by an
earlier invocation are reused only while it is unchanged. A stage that measures a head's model
builds it with :func:`build_module`, exactly as a run of that head would.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from suite import paths
from suite.errors import UsageError
from tasks import get_head


def load_spec(name: str) -> dict[str, Any]:
    """The parsed experiment file; an unknown name is a usage error listing the known ones."""
    path = paths.CONFIGS / "experiments" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise UsageError(f"unknown experiment {name!r}; expected one of: {', '.join(known)}")
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("name", name)
    return spec


def runs_folder(name: str, quick: bool) -> str:
    """Where experiment ``name``'s runs go under ``runs/<head>/``: a ``--quick`` grid apart."""
    return f"{name}-quick" if quick else name


def plan_runs(spec: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Expand runs x seeds (the quick subset with its extra overrides when ``quick``); a run
    of an unknown head, or one ``after`` a run the plan lacks, is a usage error before anything
    trains. A run's ``after`` lists the planned run names it waits for."""
    quick_spec = spec.get("quick", {}) if quick else {}
    seeds = quick_spec.get("seeds", spec.get("seeds", [0]))
    runs = spec.get("runs", [])
    if quick_spec.get("runs"):
        runs = [r for r in runs if r["name"] in quick_spec["runs"]]
    planned = []
    for run in runs:
        head = get_head(run.get("head", spec.get("head"))).name
        folder = f"runs/{head}/{runs_folder(spec['name'], quick)}"
        for seed in run.get("seeds", seeds):
            overrides = {key: value.replace("{seed}", str(seed)).replace("{runs}", folder)
                         if isinstance(value, str) else value for key, value in
                         {**run.get("overrides", {}), **quick_spec.get("overrides", {})}.items()}
            planned.append({"name": f"{run['name']}-s{seed}", "group": run["name"],
                            "head": head, "seed": seed, "config": run.get("config"),
                            "overrides": overrides, "after_groups": run.get("after", [])})
    for run in planned:
        groups = run.pop("after_groups")
        missing = sorted(set(groups) - {r["group"] for r in planned})
        if missing:
            raise UsageError(f"experiment {spec['name']}: run {run['group']} comes after "
                             f"{', '.join(missing)}, which this plan does not train")
        run["after"] = [r["name"] for r in planned if r["group"] in groups]
    by_name = {run["name"]: run for run in planned}

    def resolve(run: dict[str, Any], path: tuple[str, ...] = ()) -> None:
        """Set ``run["upstream"]``: the fingerprints of the runs it waits for, theirs first."""
        if "upstream" in run:
            return
        if run["name"] in path:
            raise UsageError(f"experiment {spec['name']}: runs wait for each other in a "
                             f"circle ({' -> '.join((*path, run['name']))})")
        for name in run["after"]:
            resolve(by_name[name], (*path, run["name"]))
        run["upstream"] = [fingerprint(by_name[name]) for name in run["after"]]

    for run in planned:
        resolve(run)
    return planned


def plan_stages(spec: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Each declared stage with the parameters it is called with (``quick`` ones if quick).

    A stage with ``each: <param>`` (a list parameter, e.g. the runs it measures) becomes one
    stage per element, called with that element alone and fingerprinted alone, so adding a
    run to the list measures the new run only and keeps the others' rows. Each part's
    ``unit`` (``name:element``) is what ``--only`` may name besides the stage's name."""
    planned = []
    for stage in spec.get("stages", []):
        params = {**stage.get("params", {}), **(stage.get("quick", {}) if quick else {})}
        base = {"name": stage["name"], "function": stage["function"],
                **({"depends": stage["depends"]} if stage.get("depends") else {})}
        each = stage.get("each")
        if each is None:
            planned.append({**base, "unit": stage["name"], "params": params})
            continue
        if not isinstance(params.get(each), list):
            raise UsageError(f"stage {stage['name']}: each: {each} names no list parameter; "
                             f"expected one of {sorted(params)}")
        planned += [{**base, "unit": f"{stage['name']}:{value}",
                     "params": {**params, each: [value]}}
                    for value in params[each]]
    return planned


def measured_runs(stages: list[dict[str, Any]], planned: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """The stages, each part of an ``each:`` stage whose element is a planned run's name
    carrying that run's fingerprint as ``upstream``: a run trained again with another
    configuration makes the part's earlier rows stale."""
    by_name = {run["name"]: run for run in planned}
    out = []
    for stage in stages:
        element = stage["unit"].partition(":")[2]
        run = by_name.get(element) if stage["unit"] != stage["name"] else None
        out.append({**stage, "upstream": fingerprint(run)} if run else stage)
    return out


def fingerprint(run: dict[str, Any]) -> str:
    """What a run's result depends on besides code: its head's default config, its own config
    file (parsed, so comments and layout do not count), overrides, seed and the fingerprints
    of the runs it comes after (``upstream``, set by :func:`plan_runs`). A finished run whose
    fingerprint differs is stale."""
    files = [paths.ROOT / "configs" / run["head"] / "default.yaml"]
    files += [paths.ROOT / run["config"]] if run["config"] else []
    configs = [_parsed(path) for path in files]
    parts: list[Any] = [configs, sorted(run["overrides"].items()), run["seed"]]
    if run.get("upstream"):
        parts.append(run["upstream"])
    key = json.dumps(parts, default=str, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def _parsed(path: Any) -> Any:
    """A config file's parsed content (comments and layout do not count); None if absent."""
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def stage_fingerprint(stage: dict[str, Any]) -> str:
    """What a stage's rows depend on besides code: its name, function and parameters, the
    fingerprint of the run a part measures (``upstream``, set by :func:`measured_runs`) and the
    config files it ``depends`` on (parsed, as :func:`fingerprint` reads them)."""
    parts = [stage["name"], stage["function"], stage["params"]]
    if stage.get("upstream"):
        parts.append(stage["upstream"])
    if stage.get("depends"):
        parts.append([_parsed(paths.ROOT / name) for name in stage["depends"]])
    key = json.dumps(parts, default=str, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def build_module(head: str, config: str | None = None, **changes: Any) -> Any:
    """The TaskModule ``suite train HEAD [-c CONFIG]`` trains, freshly initialised, without a
    trainer or data: the module's defaults, then the head's default.yaml, then ``config``
    (their ``model:`` keys, merged by jsonargparse as LightningCLI merges them), then
    ``changes``. Stages use it to measure a head's model exactly as its runs build it.

    No data module is built, so the head's ``links`` are not applied: a linked argument keeps
    the module's default unless ``changes`` gives it (vision's default data set, say, is the
    one its runs use; a head whose linked argument has no default needs it in ``changes``)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(get_head(head).module_class(), "model", fail_untyped=False)
    arguments = parser.get_defaults()
    files = [paths.CONFIGS / head / "default.yaml", *([paths.ROOT / config] if config else [])]
    for path in files:
        if path.is_file():
            section = (yaml.safe_load(path.read_text()) or {}).get("model", {})
            arguments = parser.parse_object({"model": section}, namespace=arguments)
    arguments = parser.parse_object({"model": changes}, namespace=arguments)
    return parser.instantiate(arguments).model

