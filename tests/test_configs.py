"""Every config in ``configs/<head>/`` parses, and holds only what differs from its defaults;
every run an experiment in ``configs/experiments/`` plans parses with its overrides.

A head's defaults are its classes' signatures (model, data, Lightning's Trainer, the runner's
``run`` group) and then ``configs/<head>/default.yaml``, which every run reads first. So
default.yaml may state only what differs from the signatures, and every other config only what
differs from both: a key that restates the value it would get anyway hides which knobs the
config really turns. Nested keys (``model.encoder.dim``) are compared leaf by leaf; ``trainer.*``
against the Trainer's own defaults, not the runner's hardware-dependent precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonargparse import Namespace

from suite.errors import UsageError
from suite.experiment import train_command
from suite.paths import CONFIGS
from suite.report import load_function
from suite.runner import SuiteCLI, build_cli
from suite.spec import load_spec, plan_runs, plan_stages
from tasks import HEADS

CONFIG_FILES = sorted(path for head in HEADS for path in (CONFIGS / head).glob("*.yaml"))
MISSING = object()


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping -> ``{dotted key: value}`` of its leaves (an empty mapping is one)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def lookup(config: Any, key: str) -> Any:
    """The value at a dotted ``key``, through namespaces and dict-typed arguments alike."""
    for part in key.split("."):
        if isinstance(config, Namespace):
            config = getattr(config, part, MISSING)
        elif isinstance(config, dict):
            config = config.get(part, MISSING)
        else:
            return MISSING
    return config


@pytest.fixture
def parse(monkeypatch: pytest.MonkeyPatch):
    """``suite train HEAD ARGS`` as the runner parses it (default.yaml first, then ``-c``),
    stopped before anything is built; returns the CLI with its ``config`` and ``parser``."""
    monkeypatch.setattr(SuiteCLI, "instantiate_classes", lambda self: None)
    return lambda head, *args: build_cli(HEADS[head], list(args), trainer_defaults={})


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses_and_restates_no_default(path: Path, parse) -> None:
    head = path.parent.name
    cli = parse(head, "-c", str(path))
    parser = cli.parser
    if path.name == "default.yaml":
        parser.default_config_files = []  # default.yaml is measured against the signatures
    defaults = parser.get_defaults()
    keys = leaves(yaml.safe_load(path.read_text()) or {})
    restated = [f"{key} = {value!r}" for key, value in keys.items()
                if lookup(cli.config, key) == lookup(defaults, key)]
    assert not restated, (f"{head}/{path.name} restates values it gets anyway (from the "
                          f"signatures{'' if path.name == 'default.yaml' else ' or default.yaml'}"
                          f"): {'; '.join(restated)}")


def test_the_check_sees_nested_and_trainer_keys(parse, tmp_path: Path) -> None:
    """A restated nested leaf, dict option and trainer key are caught; a changed one is not."""
    config = tmp_path / "restating.yaml"
    config.write_text("trainer: {max_epochs: 40, gradient_clip_val: 0.5}\n"
                      "model: {encoder: {dim: 96, depth: 3}, options: {patch_size: 7}}\n")
    cli = parse("vision", "-c", str(config))
    defaults = cli.parser.get_defaults()
    same = {key for key in leaves(yaml.safe_load(config.read_text()))
            if lookup(cli.config, key) == lookup(defaults, key)}
    assert same == {"trainer.max_epochs", "model.encoder.dim"}


EXPERIMENTS = sorted((CONFIGS / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_run_an_experiment_plans_parses(path: Path, parse, tmp_path: Path) -> None:
    """Each run of the full and the quick grid, its ``suite train`` arguments exactly as the
    experiment passes them, parses, and each override reaches the config: a stale or linked
    override key fails here, not hours into the grid. Runs that differ only in their seed parse
    once. Every stage's function loads."""
    spec = load_spec(path.stem)
    seen = set()
    for run in plan_runs(spec, quick=False) + plan_runs(spec, quick=True):
        key = (run["head"], run["config"], json.dumps(run["overrides"], sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        command = train_command(run, spec["name"], tmp_path)
        args = command[command.index("train") + 2:]
        try:
            cli = parse(run["head"], *args)
        except UsageError as err:
            raise AssertionError(f"{path.stem} / {run['name']}: {err}") from err
        for key, value in run["overrides"].items():  # typed by the parser: 40 -> 40.0, "0" -> 0
            got = lookup(cli.config, key)
            assert got == value or str(got) == str(value), (run["name"], key, got)
    for stage in plan_stages(spec, quick=False):
        assert callable(load_function(stage["function"])), stage["name"]
