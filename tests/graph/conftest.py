"""The graph tests' molecule table, written as ESOL's CSV into the private data cache."""

from pathlib import Path

import pandas as pd
import pytest

from tasks.graph.molecules import MOLECULES

# 20 drug-like molecules over a few ring systems, with made-up solubilities.
ESOL_ROWS = [
    ("c1ccccc1", -1.6), ("Cc1ccccc1", -2.2), ("CCc1ccccc1", -2.8), ("Oc1ccccc1", 0.0),
    ("Nc1ccccc1", -0.4), ("c1ccc2ccccc2c1", -3.6), ("Cc1ccc2ccccc2c1", -4.1),
    ("C1CCCCC1", -3.1), ("CC1CCCCC1", -3.9), ("OC1CCCCC1", -0.4), ("c1ccncc1", 1.1),
    ("Cc1ccncc1", 0.9), ("CCO", 1.1), ("CCCO", 0.6), ("CCCCO", 0.0), ("CC(C)O", 0.4),
    ("CC(=O)O", 1.2), ("c1ccc(cc1)C(=O)O", -1.6), ("O=C(O)c1ccncc1", -0.7), ("CCN", 1.0),
]


@pytest.fixture
def esol(planted: set[Path]) -> list[tuple[str, float]]:
    """Write :data:`ESOL_ROWS` as ESOL's file in the data cache (in place of the real one) and
    return them."""
    table = MOLECULES["esol"]
    table.file.local.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"smiles": [s for s, _ in ESOL_ROWS],
                  table.target_column: [v for _, v in ESOL_ROWS]}).to_csv(
        table.file.local, index=False)
    planted.add(table.file.local)
    return ESOL_ROWS
