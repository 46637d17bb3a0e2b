"""The head contract: everything the suite's commands know about a task head.

A head is a package ``tasks/<name>/`` whose ``__init__.py`` declares ``HEAD = Head(...)``;
``tasks.HEADS`` lists them. ``suite list``, ``suite data prepare``, ``suite train|test|predict``
and the experiment runner read a head only through its :class:`Head`:

- ``module`` / ``datamodule``: its TaskModule and LightningDataModule, named by class: they live
  in ``tasks/<name>/module.py`` and ``tasks/<name>/data.py`` (``"VisionModule"`` is
  ``"tasks.vision.module:VisionModule"``; a name with a colon is a full path, for a class kept
  elsewhere). Strings, so reading the registry imports no torch; :meth:`Head.load` is the one
  place they are imported.
- ``data``: the module holding ``prepare(dataset: str | None) -> None`` (fetch or build into the
  data cache; idempotent) and ``available() -> dict[str, str]`` (each data set's state here:
  ``"missing"``, ``"ready"`` or ``"corrupt"``, a :class:`suite.cache.State`);
  by default ``tasks.<name>.data``, beside the data module.
- ``monitor``: the validation metric that picks the best checkpoint, and whether low or high is
  best.
- ``predict_options``: the head's own ``suite predict`` flags. ``predict_inputs(inputs, ...)``
  takes each one as a keyword argument, and nothing else.
- ``links``: what the model must take from the data (vocabulary and class counts, image size,
  feature widths) reaches it through LightningCLI's ``link_arguments``:
  ``("data.vocab_size", "model.vocab_size")`` reads the data module's attribute once it is
  instantiated and passes it to the model's ``__init__`` (and so into its checkpoint's
  hyper-parameters), so a config never states it (and may not: it is a usage error there).
  What exists only once the data are read (a tokenizer, training-set statistics) cannot be
  linked: the module takes it in its ``setup``.
- ``status``: ``"ready"``, or ``"in progress"`` for a head whose pieces are still being built.

One optional hook lives on the data module itself: a ``num_train_examples`` property, the
training-set size a run reports when it is not ``len(train dataset)`` (graph node tasks train
on one graph, but on its labelled nodes).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Literal

from suite.errors import UsageError


def import_object(path: str) -> Any:
    """``"package.module:Name"`` -> the object (``"package.module"`` -> the module)."""
    module, _, attr = path.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attr) if attr else loaded


PACKAGE = "tasks"
"""Where heads live: head ``x`` is the package ``tasks.x``."""


def _in(module: str, name: str) -> str:
    """A class ``name`` in ``module`` as ``"module:name"``; a full path stays as it is."""
    return name if ":" in name else f"{module}:{name}"


@dataclass(frozen=True)
class PredictOption:
    """One ``suite predict <head>`` option, ``--<name>``; ``predict_inputs`` receives its value as
    the keyword argument ``name`` (False or None when not given).

    Args:
        name: the option and keyword name (``stream`` -> ``--stream``, ``stream=...``).
        help: one line for ``suite predict --help``.
        flag: a switch taking no value (True when given) rather than an option with a value.
    """

    name: str
    help: str
    flag: bool = False


@dataclass(frozen=True)
class Head:
    """A task head as the suite's commands see it; see the module docstring for each field.

    ``module``, ``datamodule`` and ``data`` hold full paths once the head is declared:
    ``Head(name="vision", module="VisionModule", ...).module`` is
    ``"tasks.vision.module:VisionModule"``.
    """

    name: str
    summary: str
    module: str
    datamodule: str
    monitor: tuple[str, Literal["min", "max"]]
    data: str = ""
    predict_options: tuple[PredictOption, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    status: Literal["ready", "in progress"] = "ready"

    def __post_init__(self) -> None:
        package = f"{PACKAGE}.{self.name}"
        # frozen: the conventional paths are filled in once, here
        object.__setattr__(self, "module", _in(f"{package}.module", self.module))
        object.__setattr__(self, "datamodule", _in(f"{package}.data", self.datamodule))
        object.__setattr__(self, "data", self.data or f"{package}.data")

    def load(self, path: str) -> Any:
        """Import one of this head's pieces; a piece that cannot be loaded is a usage error
        naming it (a head still being built, or a missing optional dependency)."""
        try:
            return import_object(path)
        except (ImportError, AttributeError) as err:
            state = "still being built" if self.status != "ready" else "incomplete"
            raise UsageError(f"{path} cannot be loaded ({err}): the head {self.name!r} is "
                             f"{state}") from err

    def module_class(self) -> type:
        """The head's TaskModule class."""
        return self.load(self.module)

    def datamodule_class(self) -> type:
        """The head's LightningDataModule class."""
        return self.load(self.datamodule)

    def prepare(self, dataset: str | None = None) -> None:
        """Fetch or build ``dataset`` (all of the head's when None) into the data cache."""
        self.load(f"{self.data}:prepare")(dataset)

    def available(self) -> dict[str, str]:
        """Each of the head's data sets: its state here (missing, ready or corrupt)."""
        return self.load(f"{self.data}:available")()


def init_keys(cls: type) -> list[str]:
    """The ``__init__`` parameters a class accepts, following ``**kwargs`` up to its bases."""
    keys: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        keys += [p.name for p in params if p.name != "self"
                 and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return keys
