"""Data for the graph head: molecules (graph-level targets) and social networks (node labels).

:class:`GraphDataModule` serves both kinds through one interface so one model and one config
format cover them. Every batch is a PyG ``Batch``: for molecules, ``batch_size`` graphs; for
node tasks, the one graph with ``train_mask``/``val_mask``/``test_mask`` (every loader yields
it once per epoch and the module picks the mask of its stage).

Batch attributes (N = nodes in the batch, E = directed edges, B = graphs):

- ``x``: molecules ``(N, 9)`` long, categorical (vocabularies :data:`ATOM_FEATURE_DIMS`);
  node tasks ``(N, num_node_features)`` float.
- ``edge_index`` ``(2, E)``; ``edge_attr`` (molecules) ``(E, 3)`` long (:data:`BOND_FEATURE_DIMS`).
- ``y``: regression ``(B,)`` float, standardised with the training mean/std
  (``target_mean``/``target_std`` give original units back); classification ``(B,)`` long;
  node tasks ``(N,)`` long.
- ``batch`` ``(N,)`` and ``ptr`` ``(B+1,)``: PyG's graph membership.
- ``lap_pe`` / ``rw_pe`` ``(N, pe_dim)`` float when ``pe`` asks for one.
- ``descriptors`` ``(B, len(DESCRIPTORS))`` float when ``descriptors=True`` (molecules): RDKit
  whole-molecule descriptors standardised with the training mean/std, clipped to +-6.
- ``spd`` ``(sum_i N_i**2,)`` uint8 when ``spd=True``: hop counts clipped to ``spd_max``
  (unreachable = ``spd_max``); ``dense_spd(batch.spd, batch.ptr)`` gives
  ``(B, N_max, N_max)`` long.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from suite.cache import State, worst
from suite.data import RemoteFile, SplitDataModule, fetch, split_indices
from suite.errors import UsageError
from tasks.graph import social
from tasks.graph.molecules import (
    ATOM_FEATURE_DIMS,
    BOND_FEATURE_DIMS,
    DESCRIPTORS,
    MOLECULES,
    load_molecules,
    processed_state,
    scaffold_split,
    smiles_descriptors,
    smiles_to_graph,
)
from tasks.graph.structure import (
    clip_spd,
    dense_spd,
    positional_encodings,
    shortest_path_distances,
)

__all__ = ["ATOM_FEATURE_DIMS", "BOND_FEATURE_DIMS", "DATASETS", "DATA_KEYS", "DatasetInfo",
           "GraphDataModule", "available", "dense_spd", "prepare", "smiles_to_graph"]

log = logging.getLogger(__name__)

DatasetName = Literal["esol", "freesolv", "lipophilicity", "b3db", "cora", "polblogs", "karate"]
Task = Literal["regression", "classification", "node"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model must know of a data set before seeing its graphs: task, outputs, input width."""

    task: Task
    num_classes: int  # 0 for regression
    num_node_features: int  # width of x (molecules: 9 categorical columns)
    files: tuple[RemoteFile, ...]


DATASETS: dict[str, DatasetInfo] = {
    "esol": DatasetInfo("regression", 0, len(ATOM_FEATURE_DIMS), (MOLECULES["esol"].file,)),
    "freesolv": DatasetInfo("regression", 0, len(ATOM_FEATURE_DIMS),
                            (MOLECULES["freesolv"].file,)),
    "lipophilicity": DatasetInfo("regression", 0, len(ATOM_FEATURE_DIMS),
                                 (MOLECULES["lipophilicity"].file,)),
    "b3db": DatasetInfo("classification", 2, len(ATOM_FEATURE_DIMS), (MOLECULES["b3db"].file,)),
    "cora": DatasetInfo("node", 7, 1433, (social.CORA_NODES, social.CORA_RELS)),
    "polblogs": DatasetInfo("node", 2, social.DEGREE_BINS, (social.POLBLOGS,)),
    "karate": DatasetInfo("node", 4, 34, ()),
}

_NODE_LOADERS = {"cora": social.load_cora, "polblogs": social.load_polblogs,
                 "karate": social.load_karate}
DATA_KEYS = ("dataset", "split", "seed", "pe", "pe_dim", "spd", "spd_max", "descriptors")
"""The settings that rebuild a data module serving the same encodings (for ``predict``)."""
_PE_ATTR = {"laplacian": "lap_pe", "random_walk": "rw_pe"}


def prepare(dataset: str | None = None) -> None:
    """Fetch ``dataset`` (or every data set) into the cache; molecules are also processed.

    Idempotent: files already in the cache and intact are not fetched again, nor sets
    re-processed.
    """
    for name in [dataset] if dataset else list(DATASETS):
        if name not in DATASETS:
            raise UsageError(f"unknown graph data set {name!r}; valid: {', '.join(DATASETS)}")
        for file in DATASETS[name].files:
            fetch(file)
        if name in MOLECULES:
            load_molecules(name)


def available() -> dict[str, State]:
    """Each data set's state in the cache: its files' (the karate club has none: ready), or
    corrupt when its processed set is damaged (using it rebuilds it)."""
    states = {}
    for name, info in DATASETS.items():
        files = [file.state() for file in info.files]
        if name in MOLECULES:
            files.append(State.CORRUPT if processed_state(name) is State.CORRUPT else State.READY)
        states[name] = worst(files)
    return states


def _standardiser(train_y: torch.Tensor) -> tuple[float, float]:
    """Training-set mean and std; std falls back to 1 where it is undefined or zero."""
    std = float(train_y.std()) if len(train_y) > 1 else 0.0
    return float(train_y.mean()), std if std > 0 else 1.0


class GraphDataModule(SplitDataModule):
    """Molecule property prediction or node classification, one data set per run.

    Args:
        dataset: molecules ``esol`` (default), ``freesolv``, ``lipophilicity`` (regression),
            ``b3db`` (classification); node tasks ``cora``, ``polblogs``, ``karate``.
        split: molecules ``random`` (seeded 80/10/10) or ``scaffold`` (DeepChem's
            deterministic Bemis-Murcko split, same for every seed). Node tasks always use
            their stated seeded split (Cora 20 per class / 500 / 1,000; others 60/20/20).
        seed: the split seed (and Laplacian eigenvector signs); None (default) = the run's
            ``seed_everything`` (``PL_GLOBAL_SEED``, else 0), so each seed of an experiment
            draws its own split and every model of that seed sees the same one.
        batch_size: molecules per batch (node tasks: always the whole graph).
        pe: node positional encoding added as ``lap_pe`` / ``rw_pe``.
        pe_dim: its width (eigenvectors or random-walk steps).
        spd: attach all-pairs shortest-path distances for structure-biased attention.
        spd_max: clip for ``spd``; unreachable pairs also get this value.
        descriptors: attach each molecule's standardised RDKit descriptors
            (:data:`~tasks.graph.molecules.DESCRIPTORS`) for the model's readout.
        num_workers: DataLoader workers.
    """

    def __init__(self, dataset: DatasetName = "esol",
                 split: Literal["random", "scaffold"] = "random", seed: int | None = None,
                 batch_size: int = 64, pe: Literal["none", "laplacian", "random_walk"] = "none",
                 pe_dim: int = 8, spd: bool = False, spd_max: int = 20,
                 descriptors: bool = False, num_workers: int = 0) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown graph data set {dataset!r}; valid: {', '.join(DATASETS)}")
        info = DATASETS[dataset]
        if split == "scaffold" and info.task == "node":
            raise ValueError(f"split='scaffold' applies to molecules, not to {dataset!r}")
        if descriptors and info.task == "node":
            raise ValueError(f"descriptors=true applies to molecules, not to {dataset!r}")
        if pe != "none" and pe_dim < 1:
            raise ValueError(f"pe_dim must be >= 1 with pe={pe!r}, got {pe_dim}")
        clip_spd(torch.zeros(0, dtype=torch.uint8), spd_max)  # validates spd_max early
        self.save_hyperparameters()
        if seed is None:
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        self.dataset, self.split, self.seed = dataset, split, seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.pe, self.pe_dim, self.spd, self.spd_max = pe, pe_dim, spd, spd_max
        self.task: Task = info.task
        self.num_classes = info.num_classes
        self.num_targets = 1 if info.task == "regression" else 0
        self.num_node_features = info.num_node_features
        self.categorical_features = info.task != "node"
        self.atom_feature_dims = ATOM_FEATURE_DIMS if self.categorical_features else ()
        self.bond_feature_dims = BOND_FEATURE_DIMS if self.categorical_features else ()
        self.pe_attr = _PE_ATTR.get(pe)
        self.target_mean, self.target_std = 0.0, 1.0
        self.descriptors = descriptors
        self.num_graph_features = len(DESCRIPTORS) if descriptors else 0
        self.descriptor_mean: list[float] = [0.0] * self.num_graph_features
        self.descriptor_std: list[float] = [1.0] * self.num_graph_features

    def prepare_data(self) -> None:
        prepare(self.dataset)

    def build_parts(self) -> dict[str, list[Data]]:
        # Laplacian eigenvector signs come from the global generator: seed them, locally.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self._node_parts() if self.task == "node" else self._molecule_parts()

    def _node_parts(self) -> dict[str, list[Data]]:
        data = social.split_nodes(self.dataset, _NODE_LOADERS[self.dataset](), self.seed)
        self._add_structure([data])
        return {part: [data] for part in ("train", "val", "test")}

    def _molecule_parts(self) -> dict[str, list[Data]]:
        molecules = load_molecules(self.dataset)
        if self.split == "scaffold":
            indices = scaffold_split(molecules.scaffolds)
        else:
            indices = split_indices(len(molecules), [0.8, 0.1, 0.1], self.seed)
        graphs = [molecules.graph(i) for i in range(len(molecules))]
        if self.task == "regression":
            self.target_mean, self.target_std = _standardiser(molecules.y[indices[0]])
        if self.task == "regression":
            for graph in graphs:
                graph.y = (graph.y - self.target_mean) / self.target_std
        if self.descriptors:
            train = molecules.descriptors[indices[0]]
            self.descriptor_mean = train.mean(0).tolist()
            self.descriptor_std = train.std(0).clamp(min=1e-6).tolist()
            standard = self._standardise(molecules.descriptors)  # (G, D)
            for i, graph in enumerate(graphs):
                graph.descriptors = standard[i:i + 1]
        self._add_structure(graphs)
        parts = {name: [graphs[i] for i in index.tolist()]
                 for name, index in zip(("train", "val", "test"), indices, strict=True)}
        log.info("%s (%s split): %s graphs", self.dataset, self.split,
                 "/".join(str(len(p)) for p in parts.values()))
        return parts

    def _standardise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw descriptors ``(G, D)`` -> ``(G, D)`` in training-set units, clipped to +-6 (a few
        descriptors have long tails)."""
        mean, std = torch.tensor(self.descriptor_mean), torch.tensor(self.descriptor_std)
        return ((raw - mean) / std).clamp(-6.0, 6.0).float()

    def _add_structure(self, graphs: list[Data]) -> None:
        """Attach the requested encodings; molecules carry cached SPD that is dropped if off."""
        for data in graphs:
            if self.spd:
                raw = data.spd if "spd" in data else shortest_path_distances(data.edge_index,
                                                                             data.num_nodes)
                data.spd = clip_spd(raw, self.spd_max)
            elif "spd" in data:
                del data.spd
        if self.pe_attr is not None:
            encodings = positional_encodings(graphs, self.pe, self.pe_dim)
            for data, pe in zip(graphs, encodings, strict=True):
                data[self.pe_attr] = pe

    def loader(self, part: str) -> DataLoader:
        if not self.parts:
            raise RuntimeError("GraphDataModule.setup() has not run")
        # a node task's one "example" is the whole graph: nothing to shuffle
        shuffle = part == "train" and self.task != "node"
        return DataLoader(self.parts[part], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    @property
    def data_info(self) -> dict[str, Any]:
        """What the model is built for, as plain values, known before :meth:`setup`: the task,
        input and output sizes, encodings, and the settings :data:`DATA_KEYS` (linked into
        ``GraphModule(data_info=...)``, and so saved with it for ``predict``)."""
        return {"task": self.task, "num_classes": self.num_classes,
                "num_node_features": self.num_node_features,
                "atom_feature_dims": list(self.atom_feature_dims),
                "bond_feature_dims": list(self.bond_feature_dims), "pe_attr": self.pe_attr,
                "num_graph_features": self.num_graph_features,
                **{key: getattr(self, key) for key in DATA_KEYS}}

    @property
    def num_train_examples(self) -> int:
        """The training-set size a run reports (the head contract's optional hook): labelled
        training nodes for node tasks, whose one training "example" is the whole graph."""
        if not self.parts:
            raise RuntimeError("GraphDataModule.setup() has not run")
        train = self.parts["train"]
        return int(train[0].train_mask.sum()) if self.task == "node" else len(train)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints so a restored model reports targets in original units and
        standardises descriptors as in training."""
        return {"target_mean": self.target_mean, "target_std": self.target_std,
                "descriptor_mean": self.descriptor_mean, "descriptor_std": self.descriptor_std}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.target_mean = float(state_dict["target_mean"])
        self.target_std = float(state_dict["target_std"])
        self.descriptor_mean = state_dict.get("descriptor_mean", self.descriptor_mean)
        self.descriptor_std = state_dict.get("descriptor_std", self.descriptor_std)

    def graph_for_prediction(self, smiles: str) -> Data:
        """A user's SMILES as a one-graph input with the same encodings as training data."""
        data = smiles_to_graph(smiles)
        if self.descriptors:
            data.descriptors = self._standardise(smiles_descriptors(smiles)[None])
        self._add_structure([data])
        return data
