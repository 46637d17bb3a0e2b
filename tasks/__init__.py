"""Task heads. Each head is a package ``tasks/<head>/`` with the same three files:

- ``data.py``   - a LightningDataModule, ``prepare(dataset)`` and ``available()``;
- ``model.py``  - nn.Modules built from ``suite`` parts;
- ``module.py`` - the head's TaskModule (loss, metrics, decoding, ``predict_inputs``).

``HEADS`` maps a head's name to its package; the CLI imports a head only when it is used.
"""

HEADS: dict[str, str] = {
    "asr": "tasks.asr",
    "vision": "tasks.vision",
    "graph": "tasks.graph",
    "sentiment": "tasks.sentiment",
    "seq2seq": "tasks.seq2seq",
}
