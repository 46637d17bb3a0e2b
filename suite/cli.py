"""The ``suite`` command: list, data prepare|verify, train, test, predict, experiment.

``train`` and ``test`` are LightningCLI underneath (YAML configs, dotted overrides,
``--help`` per head). Every command reads a head only through its contract,
:class:`suite.head.Head` (the registry is ``tasks.HEADS``); a head's classes are imported only
when it is used.
Usage errors (unknown head, unknown key, missing config) are one line on stderr and exit 2;
bad data or input files are one line and exit 1. ``SUITE_DEBUG=1`` shows their tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from suite.cache import full_check
from suite.errors import DataError, UsageError
from suite.head import Head
from suite.paths import CONFIGS
from tasks import HEADS, get_head

USAGE = """usage: suite <command> ...

commands:
  list                                  heads, configs, experiments, data sets here
  data prepare <head|all> [--dataset D] fetch / build data into $SUITE_DATA_DIR
  data verify <head|all> [--dataset D]  re-hash the cached data; fetch damaged files again
  train <head> [-c CONFIG] [--key=value ...]   train (LightningCLI; `suite train <head> --help`)
  test <head> --ckpt PATH [--key=value ...]    evaluate a checkpoint on the test split(s)
  predict <head> --ckpt PATH INPUT [...]       predict for your own files or strings
  experiment <name> [--quick] [--force] [--jobs N] [--only RUN ...]
                                        configs/experiments/<name>.yaml -> reports/
"""


def head_names() -> list[str]:
    return sorted(HEADS)


# ----------------------------------------------------------------------------- commands


def cmd_list(argv: list[str]) -> int:
    experiments = sorted(p.stem for p in (CONFIGS / "experiments").glob("*.yaml"))
    for name in head_names():
        head = HEADS[name]
        configs = sorted(p.stem for p in (CONFIGS / name).glob("*.yaml"))
        try:
            shown = ", ".join(f"{d} [{state}]" for d, state in head.available().items())
        except UsageError as err:
            shown = f"(cannot import: {err})"
        status = "" if head.status == "ready" else f"[{head.status}] "
        print(f"{name:10s} {status}{head.summary}")
        print(f"{'':10s} configs: {', '.join(configs) or '-'}")
        print(f"{'':10s} data: {shown}")
    print(f"experiments: {', '.join(experiments) or '-'}")
    return 0


def cmd_data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suite data", exit_on_error=False)
    parser.add_argument("action", choices=["prepare", "verify"])
    parser.add_argument("head", help="a head name or 'all' (every head that is ready)")
    parser.add_argument("--dataset", default=None, help="one data set of the head")
    args = parse(parser, argv)
    heads = ([name for name in head_names() if HEADS[name].status == "ready"]
             if args.head == "all" else [args.head])
    doing = {"prepare": "preparing", "verify": "verifying"}[args.action]
    for head in map(get_head, heads):
        print(f"{doing} {head.name}" + (f" / {args.dataset}" if args.dataset else ""),
              flush=True)
        with full_check():  # every cached file is re-hashed, not trusted by size and mtime
            if args.action == "prepare":
                head.prepare(args.dataset)
            else:
                verify(head, args.dataset)
    return 0


def verify(head: Head, dataset: str | None) -> None:
    """Print each data set's state; fetch or build a corrupt one again (a DataError when no
    source works). Missing data sets are left to ``suite data prepare``."""
    states = head.available()
    if dataset is not None and dataset not in states:
        raise UsageError(f"unknown {head.name} data set {dataset!r}; valid: {', '.join(states)}")
    for name, state in states.items():
        if dataset not in (None, name):
            continue
        if state == "corrupt":
            head.prepare(name)
            state = "corrupt, repaired"
        elif state == "missing":
            state = f"missing (`suite data prepare {head.name} --dataset {name}` prepares it)"
        print(f"  {name}: {state}", flush=True)


def cmd_train(argv: list[str], *, test: bool = False) -> int:
    usage = f"usage: suite {'test' if test else 'train'} <head> [-c CONFIG] [--key=value ...]"
    if (code := usage_exit(argv, f"{usage}\nheads: {', '.join(head_names())}")) is not None:
        return code
    head = get_head(argv[0])
    from suite.runner import run_lightning

    return run_lightning(head, argv[1:], test=test)


def predict_parser(head: Head) -> argparse.ArgumentParser:
    """``suite predict <head>``'s options: the common ones plus the head's own."""
    parser = argparse.ArgumentParser(prog=f"suite predict {head.name}", exit_on_error=False)
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by suite train")
    parser.add_argument("inputs", nargs="*", help="files or strings, as the head expects")
    parser.add_argument("--file", help="read inputs from this text file, one per line")
    for option in head.predict_options:
        parser.add_argument(f"--{option.name}", help=option.help,
                            action="store_true" if option.flag else "store")
    return parser


def cmd_predict(argv: list[str]) -> int:
    usage = ("usage: suite predict <head> --ckpt PATH INPUT [...] [--file FILE]\n"
             f"heads: {', '.join(head_names())} (`suite predict <head> --help`: its options)")
    if (code := usage_exit(argv, usage)) is not None:
        return code
    head = get_head(argv[0])  # the head decides which options exist
    try:
        args = parse(predict_parser(head), argv[1:])
    except UsageError as err:
        own = ", ".join(f"--{option.name}" for option in head.predict_options) or "none"
        raise UsageError(f"{err} ({head.name}'s own predict options: {own})") from err
    inputs = list(args.inputs)
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise DataError(f"{path}: no such file (expected a text file, one input per line)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not a UTF-8 text file (byte {err.start}); expected one "
                            f"input per line") from err
        inputs += [line for line in text.splitlines() if line.strip()]
    if not inputs:
        raise UsageError("predict needs at least one input (a file or string) or --file")
    import torch

    # checked to be this head's, read safely, upgraded if older
    module = head.module_class().from_checkpoint(args.ckpt)
    module.eval()
    options = {option.name: getattr(args, option.name) for option in head.predict_options}
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
                        help="run only these runs, run groups or stages; the report keeps "
                             "the others' rows from the existing results.json where their "
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


def usage_exit(argv: list[str], usage: str) -> int | None:
    """Print ``usage`` when ``argv`` names nothing or asks for help, and return the exit code
    (2: something is missing, 0: help was asked for); None when there is something to run."""
    if argv and argv[0] not in ("-h", "--help"):
        return None
    print(usage)
    return 0 if argv else 2


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
    if (code := usage_exit(argv, USAGE)) is not None:
        return code
    command = argv[0]
    try:
        if command not in COMMANDS:
            raise UsageError(f"unknown command {command!r}; expected one of: "
                             f"{', '.join(COMMANDS)}")
        return COMMANDS[command](argv[1:])
    except (UsageError, DataError) as err:
        if os.environ.get("SUITE_DEBUG") == "1":
            raise
        print(f"suite {command}: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1


if __name__ == "__main__":
    sys.exit(main())
