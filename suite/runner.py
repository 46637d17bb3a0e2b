"""``suite train`` / ``suite test``: LightningCLI wired to run directories, loggers, checkpoints
and ``summary.json``.

Every run writes ``runs/<head>/<experiment>/<run-name>/``: the resolved ``config.yaml``,
``checkpoints/`` (last and best), ``metrics.csv``, the W&B offline run and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.trainer.states import TrainerFn

from suite.checkpoint import NameHead, load_checkpoint, pop_ckpt
from suite.data import atomic_write_bytes
from suite.errors import DataError, UsageError
from suite.head import Head, init_keys
from suite.logging import RunCSVLogger, make_loggers, remember_wandb_id, wandb_sync_hint
from suite.module import TaskModule, peak_memory_mb, resolve_precision
from suite.paths import CONFIGS, ROOT
from suite.resume import RandomState, run_directory


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "threads": torch.get_num_threads(), "gpu": gpu}


def versions() -> dict[str, str]:
    import lightning
    import torchmetrics

    return {"python": platform.python_version(), "torch": torch.__version__,
            "lightning": lightning.__version__, "torchmetrics": torchmetrics.__version__}


def _flush_csv(trainer: pl.Trainer) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, RunCSVLogger):
            logger.save()


def _scalar_metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items()
            if torch.is_tensor(v) and v.numel() == 1}


def train_size(trainer: pl.Trainer) -> int | None:
    """Training examples: the data module's ``num_train_examples`` if it defines one (the head
    contract's optional hook: node tasks count labelled nodes, not graphs), else the length of
    the training data set."""
    size = getattr(trainer.datamodule, "num_train_examples", None)
    if size is None:
        try:
            size = len(trainer.train_dataloader.dataset)
        except (AttributeError, TypeError):
            return None
    return int(size)


class RunSummary(Callback):
    """Writes ``summary.json`` at the end of fit and of test (merging, never half-written).

    A resumed run continues the record: each checkpoint carries the training time so far
    (``train_seconds`` sums the pieces), ``metrics.csv`` is flushed whenever a checkpoint is
    written, and resuming drops the rows a killed piece wrote after its checkpoint.
    """

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = Path(path)
        self.info = info
        self.fit_start = 0.0
        self.earlier_seconds = 0.0  # training time of the pieces before a resume
        self.curves: dict[str, list[list[float]]] = {}  # metric -> [[step, value], ...]

    def train_seconds(self) -> float:
        return self.earlier_seconds + time.perf_counter() - self.fit_start

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["train_seconds"] = self.train_seconds()
        checkpoint["curves"] = self.curves
        _flush_csv(trainer)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING:  # testing the best checkpoint resumes nothing
            return
        self.earlier_seconds = checkpoint.get("train_seconds", 0.0)
        self.curves = checkpoint.get("curves", {})
        for logger in trainer.loggers:
            if isinstance(logger, RunCSVLogger):
                logger.drop_rows_from(checkpoint["global_step"])

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _flush_csv(trainer)  # the last epoch's end rows, logged after its checkpoint

    def _write(self, update: dict[str, Any]) -> None:
        summary = json.loads(self.path.read_text()) if self.path.is_file() else dict(self.info)
        metrics = {**summary.get("metrics", {}), **update.pop("metrics", {})}
        summary.update(update, metrics=metrics)
        atomic_write_bytes(self.path, json.dumps(summary, indent=2).encode())

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the head's :attr:`~suite.module.TaskModule.CURVES` at this validation."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        for key in getattr(pl_module, "CURVES", ()):
            if key in trainer.callback_metrics:
                value = float(trainer.callback_metrics[key])
                self.curves.setdefault(key, []).append([trainer.global_step, value])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_start = time.perf_counter()
        if trainer.is_global_zero:
            remember_wandb_id(self.path.parent, trainer.loggers)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        assert isinstance(pl_module, TaskModule)
        # Each rank counts its own shard; the run's totals are world_size times that.
        world = trainer.world_size
        self._write({"params": pl_module.num_parameters(),
                     "train_seconds": round(self.train_seconds(), 2),
                     "samples_per_second": round(world * pl_module.samples_per_second, 2),
                     "peak_memory_mb": round(peak_memory_mb(), 1),
                     "train_size": train_size(trainer),
                     "world_size": world,
                     "epochs": trainer.current_epoch, "steps": trainer.global_step,
                     "metrics": _scalar_metrics(trainer),
                     **({"curves": self.curves} if self.curves else {})})

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            metrics = {k: v for k, v in _scalar_metrics(trainer).items() if k.startswith("test")}
            assert isinstance(pl_module, TaskModule)
            self._write({"params": pl_module.num_parameters(), "metrics": metrics})


class SuiteCLI(LightningCLI):
    """LightningCLI for one head: its links from data to model, plus a ``run`` group
    (experiment, name, root, W&B mode, resume, test, best-checkpoint metric)."""

    run_dir = Path("runs")

    def __init__(self, head: Head, *args: Any, **kwargs: Any) -> None:
        self.head = head  # read by add_arguments_to_parser, which LightningCLI.__init__ calls
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: ArgumentParser) -> None:
        for source, target in self.head.links:
            # the data module is built first; ``target`` is then not settable by the user
            parser.link_arguments(source, target, apply_on="instantiate")
        parser.add_argument("--run.experiment", default="adhoc", help="group (W&B, runs/)")
        parser.add_argument("--run.name", default=None, help="run name (default: timestamp)")
        parser.add_argument("--run.root", default="runs", help="where run directories go")
        parser.add_argument("--run.wandb", default=None,
                            help="W&B mode: offline (default), online or disabled")
        parser.add_argument("--run.resume", default=None,
                            help="checkpoint to resume from, or 'last' for this run's last.ckpt "
                                 "(without --run.name: the latest run of this experiment)")
        parser.add_argument("--run.overwrite", default=False, type=bool,
                            help="replace an existing run of this name (deleting it first)")
        parser.add_argument("--run.test", default=True, type=bool,
                            help="test the best checkpoint after training")
        parser.add_argument("--run.monitor", default=None,
                            help="metric for the best checkpoint (default: the head's)")
        parser.add_argument("--run.monitor_mode", default=None, choices=["min", "max"],
                            help="whether --run.monitor is best low or high")

    def before_instantiate_classes(self) -> None:
        """A config file may state a link's target too (the parser takes it); the data's value
        would then silently replace it, so that is a usage error as on the command line."""
        for source, target in self.head.links:
            if target in self.config:
                raise UsageError(linked_key_error(source, target))
        check_sizes(self.config.get("data"))

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The trainer LightningCLI would build, wired to this run's directory: CSV + W&B
        loggers, last/best checkpoints, the LR monitor and ``summary.json``."""
        run = self.config["run"]
        head = self.head.name
        self.run_dir = run_directory(run, head)
        name = self.run_dir.name
        model, data = self.model, self.datamodule
        info = {"head": head, "name": name, "experiment": run["experiment"],
                "model": getattr(model.hparams, "model", type(model).__name__),
                "dataset": getattr(getattr(data, "hparams", None), "dataset", None),
                "seed": self.config.get("seed_everything"), "git_sha": git_sha(),
                "hardware": hardware(), "versions": versions(), "command": " ".join(sys.argv),
                "precision": str(self.config["trainer"].get("precision"))}
        trainer_config = self.config["trainer"]
        callbacks = list(self._get(self.config_init, "trainer", default={}).get("callbacks")
                         or [])
        callbacks += [RunSummary(self.run_dir / "summary.json", info), RandomState(),
                      NameHead(head)]
        if not trainer_config.get("fast_dev_run"):
            monitor, mode = checkpoint_monitor(run.get("monitor"), run.get("monitor_mode"),
                                               self.head.monitor)
            checkpoints = self.run_dir / "checkpoints"
            # last.ckpt at every validation end (Lightning's save_last follows new bests only)
            callbacks += [ModelCheckpoint(dirpath=checkpoints, filename="best", monitor=monitor,
                                          mode=mode),
                          ModelCheckpoint(dirpath=checkpoints, filename="last",
                                          enable_version_counter=False)]
        loggers: Any = False
        if trainer_config.get("logger") is not False:
            tags = [head, str(info["model"]), str(info["dataset"])]
            loggers = make_loggers(self.run_dir, experiment=run["experiment"], name=name,
                                   tags=tags, mode=run["wandb"], config=_plain(self.config))
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        kwargs.update(default_root_dir=str(self.run_dir), logger=loggers, callbacks=callbacks)
        return super().instantiate_trainer(**kwargs)


POSITIVE = ("batch_size", "train_size")
"""Data settings that must be at least 1 wherever a head has them (None: the head's default)."""


def check_sizes(data: Any) -> None:
    """A batch or training set of no examples is a usage error here, not a traceback from the
    data loader once the run directory exists."""
    for key in POSITIVE:
        value = data.get(key) if data is not None else None
        if isinstance(value, int) and value < 1:
            raise UsageError(f"--data.{key}={value}: must be at least 1")


def checkpoint_monitor(metric: str | None, mode: str | None, default: tuple[str, str]
                       ) -> tuple[str, str]:
    """The best checkpoint's ``(metric, mode)``: the head's ``default`` unless overridden. A
    metric other than the head's needs its mode: "val/acc" with the head's "min" (from
    "val/loss") would keep the worst checkpoint - and so would the head's own metric given
    the opposite mode."""
    if metric is None or metric == default[0]:
        if mode is not None and mode != default[1]:
            raise UsageError(f"--run.monitor_mode={mode}: the head's metric {default[0]} is "
                             f"best {default[1]}; name another metric with --run.monitor")
        return default[0], default[1]
    if mode is None:
        raise UsageError(f"--run.monitor={metric}: also give --run.monitor_mode=min|max "
                         "(whether lower or higher is better)")
    return metric, mode


def linked_key_error(source: str, target: str) -> str:
    """The one-line error for a user who sets ``target``, which the data's ``source`` sets."""
    return (f"{target} is set by the data module ({source}, a link in the head's contract); "
            f"leave it out")


def _one_line(err: BaseException, classes: dict[str, type], linked: set[str]) -> str:
    """jsonargparse's multi-line message as one line; an unknown key lists the valid ones
    (those the user may set: not the ``linked`` targets)."""
    text = " ".join(str(err).split())
    # a link's target on the command line: jsonargparse words it two ways, by the target's type
    given = re.search(r'Linked "([\w.]+)" must be given via "([\w.]+)"', text)
    if given:
        return linked_key_error(given.group(2), given.group(1))
    typed = re.search(r"argument ([\w.]+) --> ([\w.]+):", text)
    if typed:
        return linked_key_error(typed.group(1), typed.group(2))
    unknown = re.search(r"[Uu]nrecognized arguments: (.+)$", text)
    expected = (re.search(r"Key \"?'?([\w.]+)'?\"? is not expected", text)
                or re.search(r"does not accept option '([\w.]+)'", text))
    key = unknown.group(1).strip() if unknown else expected.group(1) if expected else None
    if key is None:
        return text[:500]
    group = re.match(r"-*(model|data)\.", key) or re.search(r"\b(model|data)\b", text)
    message = f"unknown key {key}"
    if group:
        name = group.group(1)
        valid = [arg for arg in init_keys(classes[name]) if f"{name}.{arg}" not in linked]
        message += f"; valid --{name}.* keys: {', '.join(valid)}"
    return message


def build_cli(head: Head, args: list[str], *, trainer_defaults: dict[str, Any]) -> SuiteCLI:
    """Parse ``args`` for ``head`` into a SuiteCLI with model, data and trainer instantiated."""
    default_config = CONFIGS / head.name / "default.yaml"
    model_class, datamodule_class = head.module_class(), head.datamodule_class()
    args = [a.replace("--trainer.precision=auto",
                      f"--trainer.precision={resolve_precision()}") for a in args]
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    try:
        cli = SuiteCLI(head, model_class, datamodule_class, args=args, run=False,
                       seed_everything_default=0, save_config_kwargs={"overwrite": True},
                       parser_kwargs={"exit_on_error": False, "prog": f"suite train {head.name}",
                                      "default_config_files": [str(default_config)]
                                      if default_config.is_file() else []},
                       trainer_defaults=trainer_defaults)
    except argparse.ArgumentError as err:  # jsonargparse's errors derive from argparse's
        classes = {"model": model_class, "data": datamodule_class}
        linked = {target for _, target in head.links}
        raise UsageError(_one_line(err, classes, linked)) from err
    except ValueError as err:  # a model or data module refusing the settings it was given
        raise UsageError(f"invalid settings: {' '.join(str(err).split())}") from err
    return cli


def check_config_files(args: list[str]) -> None:
    """Each ``-c``/``--config`` file that exists must be text: jsonargparse would fail on a
    binary one with a decoding traceback."""
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--config="):
            value = arg.partition("=")[2]
        else:
            continue
        try:
            Path(value).read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise UsageError(f"config {value} is not a text (YAML) file") from err
        except OSError:  # missing: jsonargparse says so in one line
            continue


def saved_config(path: Path, head: Head) -> str:
    """A run's ``config.yaml`` for ``-c``: its path, or for a run saved in an older layout its
    text with the model's settings upgraded (:meth:`TaskModule.upgrade_settings`) and without
    the ones the data now supplies (``head.links``)."""
    config = yaml.safe_load(path.read_text())
    model = config.get("model") or {}
    upgraded = head.module_class().upgrade_settings(model)
    for _, target in head.links:
        group, _, name = target.partition(".")
        if group == "model":
            upgraded.pop(name, None)
    if upgraded == model:
        return str(path)
    return yaml.safe_dump({**config, "model": upgraded}, sort_keys=False)


def run_lightning(head: Head, args: list[str], *, test: bool) -> int:
    """``suite train`` (fit, then test the best checkpoint) or ``suite test --ckpt``."""
    ckpt = None
    check_config_files(args)
    if test:
        ckpt, args = pop_ckpt(args)
        load_checkpoint(ckpt, head.name)  # a bad checkpoint fails here, before any run dir
        saved = ckpt.parent.parent / "config.yaml"
        if saved.is_file():
            args = ["-c", saved_config(saved, head), *args]
    cli = build_cli(head, args, trainer_defaults={"precision": resolve_precision()})
    fresh = not cli.run_dir.exists()
    try:
        return _run(cli, ckpt)
    except (UsageError, DataError):
        # Lightning creates the loggers' directory before the data module reads its data
        if fresh and not (cli.run_dir / "checkpoints").exists():
            shutil.rmtree(cli.run_dir, ignore_errors=True)
        raise


def _run(cli: SuiteCLI, ckpt: Path | None) -> int:
    trainer, model, datamodule, run = cli.trainer, cli.model, cli.datamodule, cli.config["run"]
    if ckpt is not None:
        trainer.test(model, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=True)
    else:
        resume = run.get("resume")
        if resume == "last":
            resume = str(cli.run_dir / "checkpoints" / "last.ckpt")
        if resume is not None:
            load_checkpoint(resume, cli.head.name)
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        if run.get("test") and not trainer.interrupted:
            # The best checkpoint if validation ever ran; else the weights as they stand.
            best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
            trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
    _finish(trainer, cli.run_dir)
    return 0


def _plain(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(config.as_dict(), default=str))


def _finish(trainer: pl.Trainer, run_dir: Path) -> None:
    if not trainer.is_global_zero:
        return
    print(f"run directory: {run_dir}")
    hint = wandb_sync_hint(run_dir)
    if hint and os.environ.get("WANDB_MODE") != "disabled":
        print(f"W&B offline run saved; upload it with: {hint}")
