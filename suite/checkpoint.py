"""Reading checkpoints safely: the one loader every command goes through.

A checkpoint is read with ``torch.load(weights_only=True)`` - tensors, containers and plain
values only, never arbitrary pickled objects - and checked before Lightning touches it: the
file exists, is a complete torch zip archive, holds ``state_dict`` and ``hyper_parameters``,
and belongs to the head asked for. Each failure is one line (:mod:`suite.errors`), as is a
``--ckpt`` without a path (:func:`pop_ckpt`).

Checkpoints name their head under :data:`HEAD_KEY` (written by :class:`NameHead`, a callback
of every ``suite train`` run); for one saved before that, the head is inferred from which heads'
init arguments its hyper-parameters fit.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from suite.blocks import LayerConfig
from suite.errors import DataError, UsageError
from suite.head import init_keys

HEAD_KEY = "suite_head"
HYPER_PARAMETERS = "hyper_parameters"
ZIP_MAGIC = b"PK\x03\x04"
# What LightningCLI adds to the saved init arguments; not an argument of any module.
CLI_KEYS = {"_instantiator", "_class_path"}

# A module built in Python (not from a config) saves its LayerConfig object itself.
torch.serialization.add_safe_globals([LayerConfig])


class NameHead(pl.Callback):
    """Writes the head's name into every checkpoint, so that another head's command can say
    whose checkpoint it was given."""

    def __init__(self, head: str) -> None:
        self.head = head

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[HEAD_KEY] = self.head


def head_of(cls: type) -> str | None:
    """The name of the head whose TaskModule is ``cls`` (None for a class no head declares)."""
    from tasks import HEADS

    path = f"{cls.__module__}:{cls.__qualname__}"
    return next((head.name for head in HEADS.values() if head.module == path), None)


def pop_ckpt(args: list[str]) -> tuple[Path, list[str]]:
    """``suite test``'s ``--ckpt PATH`` or ``--ckpt=PATH``, and the other arguments."""
    for i, arg in enumerate(args):
        if arg == "--ckpt":
            value, rest = (args[i + 1] if i + 1 < len(args) else ""), args[:i] + args[i + 2:]
        elif arg.startswith("--ckpt="):
            value, rest = arg.partition("=")[2], args[:i] + args[i + 1:]
        else:
            continue
        if not value or value.startswith("-"):
            raise UsageError("--ckpt needs a value: the checkpoint's path")
        return Path(value), rest
    raise UsageError("test needs --ckpt PATH")


def load_checkpoint(path: str | Path, head: str | None, map_location: str = "cpu"
                    ) -> dict[str, Any]:
    """The checkpoint at ``path``, read with ``weights_only=True`` and checked to be a suite
    checkpoint of ``head`` (of any head when None).

    Raises :class:`UsageError` for a path that is not a file or a checkpoint of another head,
    :class:`DataError` for a file that is empty, truncated or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    with path.open("rb") as f:
        magic = f.read(len(ZIP_MAGIC))
    if not magic:
        raise DataError(f"checkpoint {path} is empty")
    if magic != ZIP_MAGIC:
        raise DataError(f"checkpoint {path} is not a checkpoint (not a torch zip archive)")
    if not zipfile.is_zipfile(path):
        raise DataError(f"checkpoint {path} is truncated (incomplete zip archive)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise DataError(f"checkpoint {path} cannot be read ({type(err).__name__}: "
                        f"{reason})") from err
    if not isinstance(checkpoint, Mapping) or not {"state_dict", HYPER_PARAMETERS} <= set(
            checkpoint):
        raise DataError(f"checkpoint {path} is not a suite checkpoint (no state_dict and "
                        f"hyper_parameters)")
    if head is None:
        return dict(checkpoint)
    owner = checkpoint.get(HEAD_KEY) or infer_head(checkpoint[HYPER_PARAMETERS], head)
    if owner != head:
        which = f"a {owner} checkpoint" if owner else "not a checkpoint of any head"
        raise UsageError(f"checkpoint {path} is {which}, not a {head} one")
    return dict(checkpoint)


def infer_head(hyper_parameters: Mapping[str, Any], expected: str) -> str | None:
    """For a checkpoint that does not name its head: ``expected`` if the saved init arguments
    fit its module (after :meth:`~suite.module.TaskModule.upgrade_settings`), else the first
    other head they fit, else None."""
    from tasks import HEADS

    settings = {key: value for key, value in hyper_parameters.items() if key not in CLI_KEYS}
    for name in [expected] + sorted(name for name in HEADS if name != expected):
        try:
            cls = HEADS[name].module_class()
        except UsageError:  # a head still being built
            continue
        if set(cls.upgrade_settings(settings)) <= set(init_keys(cls)):
            return name
    return None
