"""The ``suite`` command: list, data prepare, train, test, predict, experiment.

``train`` and ``test`` are LightningCLI underneath (YAML configs, dotted overrides,
``--help`` per head); heads are imported only when named, so ``suite list`` stays fast.
Usage errors (unknown head, unknown key, missing config) are one line on stderr and exit 2;
bad data or input files are one line and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

from suite.data import DataError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
USAGE = """usage: suite <command> ...

commands:
  list                                  heads, configs, experiments, data sets here
  data prepare <head|all> [--dataset D] fetch / build data into $SUITE_DATA_DIR
  train <head> [-c CONFIG] [--key=value ...]   train (LightningCLI; `suite train <head> --help`)
  test <head> --ckpt PATH [--key=value ...]    evaluate a checkpoint on the test split(s)
  predict <head> --ckpt PATH INPUT [...]       predict for your own files or strings
  experiment <name> [--quick] [--force] [--jobs N]  configs/experiments/<name>.yaml -> reports/
"""


class UsageError(Exception):
    """A mistake on the command line; reported as one line with exit code 2."""


def head_names() -> list[str]:
    from tasks import HEADS

    return sorted(HEADS)


def load_head(name: str) -> Any:
    """Import ``tasks.<name>``; an unknown head is a usage error naming the known ones."""
    from tasks import HEADS

    if name not in HEADS:
        raise UsageError(f"unknown head {name!r}; expected one of: {', '.join(sorted(HEADS))}")
    return importlib.import_module(HEADS[name])


def import_object(path: str) -> Any:
    """``package.module.Name`` -> the object; a head whose code is missing is a usage error."""
    module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"{path} cannot be loaded ({err}): the head is incomplete") from err


# ----------------------------------------------------------------------------- commands


def cmd_list(argv: list[str]) -> int:
    experiments = sorted(p.stem for p in (CONFIGS / "experiments").glob("*.yaml"))
    for name in head_names():
        try:
            data = importlib.import_module(f"{load_head(name).__name__}.data")
            datasets = data.available()
        except ImportError as err:
            print(f"{name:10s} (cannot import: {err})")
            continue
        configs = sorted(p.stem for p in (CONFIGS / name).glob("*.yaml"))
        shown = ", ".join(f"{d} [{'ready' if ok else 'not prepared'}]"
                          for d, ok in datasets.items())
        print(f"{name:10s} configs: {', '.join(configs) or '-'}")
        print(f"{'':10s} data: {shown}")
    print(f"experiments: {', '.join(experiments) or '-'}")
    return 0


def cmd_data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite data", exit_on_error=False)
    parser.add_argument("action", choices=["prepare"])
    parser.add_argument("head", help="a head name or 'all'")
    parser.add_argument("--dataset", default=None, help="one data set of the head")
    args = parse(parser, argv)
    heads = head_names() if args.head == "all" else [args.head]
    for name in heads:
        data = importlib.import_module(f"{load_head(name).__name__}.data")
        print(f"preparing {name}" + (f" / {args.dataset}" if args.dataset else ""), flush=True)
        data.prepare(args.dataset)
    return 0


def cmd_train(argv: list[str], *, test: bool = False) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: suite {'test' if test else 'train'} <head> [-c CONFIG] "
              f"[--key=value ...]\nheads: {', '.join(head_names())}")
        return 0 if argv else 2
    head = load_head(argv[0])
    from suite.runner import run_lightning

    return run_lightning(argv[0], head, argv[1:], test=test)


def cmd_predict(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite predict", exit_on_error=False)
    parser.add_argument("head")
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by suite train")
    parser.add_argument("inputs", nargs="*", help="files or strings, as the head expects")
    parser.add_argument("--file", help="read inputs from this text file, one per line")
    parser.add_argument("--stream", action="store_true", help="chunked streaming (asr)")
    parser.add_argument("--out", help="write predictions to this CSV (graph node tasks)")
    args = parse(parser, argv)
    head = load_head(args.head)
    inputs = list(args.inputs)
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise DataError(f"{path}: no such file (expected a text file, one input per line)")
        inputs += [line for line in path.read_text().splitlines() if line.strip()]
    if not inputs:
        raise UsageError("predict needs at least one input (a file or string) or --file")
    ckpt = Path(args.ckpt)
    if not ckpt.is_file():
        raise UsageError(f"checkpoint {ckpt} does not exist")
    import torch

    module = import_object(head.MODULE).load_from_checkpoint(ckpt, map_location="cpu")
    module.eval()
    options = {k: v for k, v in (("stream", args.stream), ("out", args.out)) if v}
    with torch.inference_mode():
        for line in module.predict_inputs(inputs, **options):
            print(line)
    return 0


def cmd_experiment(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite experiment", exit_on_error=False)
    parser.add_argument("name")
    parser.add_argument("--quick", action="store_true", help="the reduced grid (minutes)")
    parser.add_argument("--force", action="store_true", help="re-run runs already done")
    parser.add_argument("--only", nargs="*",
                        help="run only these runs or run groups; the report keeps the other "
                             "runs' rows from the existing results.json where their "
                             "configuration is unchanged")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train this many runs side by side, each on its share of the "
                             "CPU threads (default 1)")
    args = parse(parser, argv)
    if args.jobs < 1:
        raise UsageError(f"--jobs must be a positive number of runs, not {args.jobs}")
    from suite.experiment import run_experiment

    run_experiment(args.name, quick=args.quick, force=args.force, only=args.only,
                   jobs=args.jobs)
    return 0


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    try:
        args, unknown = parser.parse_known_intermixed_args(argv)
    except argparse.ArgumentError as err:
        raise UsageError(str(err)) from err
    if unknown:
        raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
    return args


COMMANDS = {"list": cmd_list, "data": cmd_data, "train": cmd_train,
            "test": lambda argv: cmd_train(argv, test=True), "predict": cmd_predict,
            "experiment": cmd_experiment}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Library deprecation notices (torch.jit via PyG, ...) are not for the suite's users.
    warnings.filterwarnings("ignore", category=FutureWarning)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command = argv[0]
    try:
        if command not in COMMANDS:
            raise UsageError(f"unknown command {command!r}; expected one of: "
                             f"{', '.join(COMMANDS)}")
        return COMMANDS[command](argv[1:])
    except UsageError as err:
        print(f"suite {command}: error: {err}", file=sys.stderr)
        return 2
    except DataError as err:
        print(f"suite {command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
