"""Task heads. Each head is a package ``tasks/<head>/`` with the same four files (plus extras
named for what they hold, e.g. ``asr/corpus.py``, ``graph/molecules.py``):

- ``__init__.py`` - ``HEAD``, its :class:`suite.head.Head`: the contract the commands read. It
  names its two classes (``module="VisionModule"``); this layout says where they are;
- ``data.py``   - a LightningDataModule, ``prepare(dataset)`` and ``available()``;
- ``model.py``  - nn.Modules built from ``suite`` parts;
- ``module.py`` - the head's TaskModule (loss, metrics, decoding, ``predict_inputs``).

``HEADS`` is the registry. Declaring a head imports no torch; its classes are imported only
when it is used.
"""

from suite.errors import UsageError
from suite.head import Head
from tasks import asr, graph, sentiment, seq2seq, tts, vision

HEADS: dict[str, Head] = {head.HEAD.name: head.HEAD
                          for head in (asr, vision, graph, sentiment, seq2seq, tts)}


def get_head(name: str) -> Head:
    """The head called ``name``; an unknown name is a usage error listing the known ones."""
    if name not in HEADS:
        raise UsageError(f"unknown head {name!r}; expected one of: {', '.join(sorted(HEADS))}")
    return HEADS[name]
