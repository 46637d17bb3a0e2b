"""Experiments: one package per comparison of ``configs/experiments/<name>.yaml``, holding what
exists only for that comparison, beside the heads rather than inside them.

- ``report.py``: the report's own text as pure functions of ``results.json`` - ``analysis``
  (findings in words, tables of stage rows), ``figures`` (which run media to show), ``charts``
  (plots drawn from the results); :mod:`suite.report` writes and copies;
- the stages that add rows which are not training runs (peers, baselines, benchmarks), each a
  function ``(**params) -> list[row]`` named in the experiment file.

Heads never import from here; code a head needs at train or test time stays in the head.
"""
