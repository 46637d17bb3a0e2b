"""Graph head data layer: SMILES parsing, splits, the .gt reader, structure encodings, loaders.

No network: data-set files are written into a temporary cache as small fixtures in the real
formats (CSV, parquet, graph-tool .gt).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import struct

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE
from torch_geometric.utils import from_smiles

from suite.data import URLMember
from suite.errors import DataError, UsageError
from tasks.graph import data as graph_data
from tasks.graph import social
from tasks.graph.molecules import (
    DESCRIPTORS,
    MOLECULES,
    MoleculeSet,
    MoleculeTable,
    load_molecules,
    murcko_scaffold,
    processed_path,
    read_table,
    scaffold_split,
    smiles_descriptors,
    smiles_to_graph,
)
from tasks.graph.structure import (
    UNREACHABLE,
    clip_spd,
    dense_spd,
    positional_encodings,
    shortest_path_distances,
)

from .conftest import ESOL_ROWS

# ----------------------------------------------------------------------------- molecules


def test_smiles_to_graph_counts_and_matches_pyg():
    ethanol = smiles_to_graph("CCO")
    assert ethanol.num_nodes == 3 and ethanol.edge_index.shape == (2, 4)
    assert ethanol.x.shape == (3, 9) and ethanol.edge_attr.shape == (4, 3)
    assert ethanol.x[:, 0].tolist() == [6, 6, 8]  # atomic numbers
    benzene = smiles_to_graph("c1ccccc1")
    assert benzene.num_nodes == 6 and benzene.edge_index.shape == (2, 12)
    assert set(benzene.edge_attr[:, 0].tolist()) == {12}  # all bonds AROMATIC
    reference = from_smiles("c1ccccc1")
    for key in ("x", "edge_index", "edge_attr"):
        assert torch.equal(benzene[key], reference[key])


@pytest.mark.parametrize("smiles", ["C1CC", "not a molecule", "C(C)(C)(C)(C)C", "", "c1cccc1"])
def test_invalid_smiles_is_one_line_data_error(smiles):
    with pytest.raises(DataError, match=r"^invalid SMILES ") as info:
        smiles_to_graph(smiles)
    assert repr(smiles) in str(info.value) and "\n" not in str(info.value)


def test_scaffold_split_keeps_scaffolds_together_and_is_deterministic(esol):
    smiles = [s for s, _ in esol]
    scaffolds = [murcko_scaffold(s) for s in smiles]
    assert murcko_scaffold("Cc1ccccc1") == "c1ccccc1" and murcko_scaffold("CCO") == ""
    parts = scaffold_split(scaffolds)
    assert [p.tolist() for p in parts] == [p.tolist() for p in scaffold_split(scaffolds)]
    assert sorted(torch.cat(parts).tolist()) == list(range(len(smiles)))
    sets = [{scaffolds[i] for i in p.tolist()} for p in parts]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert "" in sets[0]  # the largest group (acyclic molecules) goes to train first
    assert len(parts[0]) <= 0.8 * len(smiles)


def test_read_table_and_build_drop_bad_smiles(tmp_path, caplog):
    path = tmp_path / "tiny.tsv"
    path.write_text("SMILES\tlabel\nCCO\tBBB+\nC1CC\tBBB-\nc1ccccc1\tBBB-\n")
    table = MoleculeTable(None, "SMILES", "label", sep="\t", classes=("BBB-", "BBB+"))
    smiles, y = read_table(path, table)
    assert smiles == ["CCO", "C1CC", "c1ccccc1"] and y.tolist() == [1, 0, 0]
    with caplog.at_level(logging.WARNING):
        molecules = MoleculeSet.build(smiles, y, "tiny")
    assert "dropped 1 of 3" in caplog.text
    assert len(molecules) == 2 and molecules.y.tolist() == [1, 0]
    benzene = molecules.graph(1)
    assert benzene.num_nodes == 6 and benzene.spd.shape == (36,) and benzene.smiles == "c1ccccc1"
    saved = tmp_path / "set.pt"
    molecules.save(saved)
    assert torch.equal(MoleculeSet.load(saved).graph(1).edge_attr, benzene.edge_attr)
    path.write_text("smiles\tlabel\nCCO\tmaybe\n")
    with pytest.raises(DataError, match="missing column"):
        read_table(path, table)


@pytest.mark.parametrize("split", ["random", "scaffold"])
def test_molecule_data_module_end_to_end(esol, split):
    dm = graph_data.GraphDataModule("esol", split=split, batch_size=4, pe="laplacian",
                                    pe_dim=4, spd=True, spd_max=3)
    assert dm.task == "regression" and dm.num_targets == 1 and dm.num_node_features == 9
    dm.prepare_data()
    dm.setup("fit")
    assert processed_path("esol").is_file()
    sizes = {"random": [16, 2, 2], "scaffold": [15, 3, 2]}[split]  # scaffold groups: 6 6 3 3 2
    assert [len(dm.parts[p]) for p in ("train", "val", "test")] == sizes
    train_y = torch.cat([g.y for g in dm.parts["train"]])
    assert abs(float(train_y.mean())) < 1e-5 and abs(float(train_y.std()) - 1) < 1e-5
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 4 and batch.y.shape == (4,) and batch.lap_pe.shape[1] == 4
    spd = dense_spd(batch.spd, batch.ptr)
    assert spd.shape[0] == 4 and int(spd.max()) <= 3
    restored = graph_data.GraphDataModule("esol")
    restored.load_state_dict(dm.state_dict())
    assert restored.target_std == pytest.approx(dm.target_std)
    single = dm.graph_for_prediction("CCO")
    assert single.lap_pe.shape == (3, 4) and single.spd.tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0]


def test_descriptors_are_standardised_on_the_training_part_and_at_prediction(esol):
    dm = graph_data.GraphDataModule("esol", batch_size=4, descriptors=True)
    dm.prepare_data()
    dm.setup("fit")
    width = len(DESCRIPTORS)
    assert dm.num_graph_features == width
    train = torch.cat([g.descriptors for g in dm.parts["train"]])  # (16, width)
    varying = train.std(0) > 0
    assert torch.allclose(train.mean(0), torch.zeros(width), atol=1e-4)
    assert torch.allclose(train.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-4)
    assert next(iter(dm.train_dataloader())).descriptors.shape == (4, width)
    # a user's SMILES gets the training standardisation, also in a restored data module
    first = dm.parts["test"][0]
    restored = graph_data.GraphDataModule("esol", descriptors=True)
    restored.load_state_dict(dm.state_dict())
    assert torch.allclose(restored.graph_for_prediction(first.smiles).descriptors,
                          first.descriptors)
    logp = smiles_descriptors("CCO")[DESCRIPTORS.index("MolLogP")]
    assert float(logp) == pytest.approx(-0.0014, abs=1e-3)  # RDKit's Crippen logP of ethanol
    with pytest.raises(ValueError, match="applies to molecules"):
        graph_data.GraphDataModule("karate", descriptors=True)


# ----------------------------------------------------------------------------- .gt format


def _gt_bytes(big_endian: bool = False) -> bytes:
    """A graph-tool file written by hand: 5 vertices, edges 0-1 1-2 2-0 and 3-4, undirected."""
    e = ">" if big_endian else "<"

    def string(text: bytes) -> bytes:
        return struct.pack(e + "Q", len(text)) + text

    out = b"\xe2\x9b\xbe gt" + bytes([1, int(big_endian)])
    out += struct.pack("<Q", 4) + b"test"  # the comment length is always little-endian
    out += bytes([0]) + struct.pack(e + "Q", 5)
    for neighbours in ([1], [2], [0], [4], []):
        out += struct.pack(e + "Q", len(neighbours)) + bytes(neighbours)  # uint8 indices
    out += struct.pack(e + "Q", 4)
    out += bytes([0]) + string(b"description") + bytes([6]) + string(b"tiny")
    out += bytes([1]) + string(b"value") + bytes([4]) + struct.pack(e + "5d", 0, 1, 1, 0, 1)
    out += bytes([1]) + string(b"pos") + bytes([11]) + b"".join(
        struct.pack(e + "Q2d", 2, i, -i) for i in range(5))
    out += bytes([2]) + string(b"weight") + bytes([2]) + struct.pack(e + "4i", 5, 6, 7, 8)
    return out


@pytest.mark.parametrize("big_endian", [False, True])
def test_read_gt_round_trip(big_endian):
    graph = social.read_gt(gzip.compress(_gt_bytes(big_endian)))
    assert not graph.directed and graph.num_nodes == 5
    assert graph.edges.tolist() == [[0, 1, 2, 3], [1, 2, 0, 4]]
    assert graph.graph_properties == {"description": "tiny"}
    assert graph.vertex_properties["value"].tolist() == [0, 1, 1, 0, 1]
    assert graph.vertex_properties["pos"][3].tolist() == [3.0, -3.0]
    assert graph.edge_properties["weight"].tolist() == [5, 6, 7, 8]


def test_read_gt_rejects_bad_files():
    with pytest.raises(DataError, match="bad magic"):
        social.read_gt(b"not a graph")
    with pytest.raises(DataError, match="truncated"):
        social.read_gt(_gt_bytes()[:-3])


def test_polblogs_keeps_largest_component():
    data = social.polblogs_from_gt(social.read_gt(_gt_bytes()))
    assert data.num_nodes == 3 and data.y.tolist() == [0, 1, 1]
    assert data.edge_index.shape == (2, 6) and data.x.shape == (3, social.DEGREE_BINS)
    assert data.x.argmax(1).tolist() == [2, 2, 2]  # degree 2 -> bin 2


# ----------------------------------------------------------------------------- structure


def test_spd_on_a_path_plus_isolated_node():
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    spd = shortest_path_distances(edge_index, 5).view(5, 5)
    assert spd[0, :4].tolist() == [0, 1, 2, 3] and spd[3, 0] == 3
    assert spd[4, :4].tolist() == [UNREACHABLE] * 4 and spd[4, 4] == 0
    assert clip_spd(spd, 2)[0].tolist() == [0, 1, 2, 2, 2]
    with pytest.raises(ValueError):
        clip_spd(spd, 0)


def test_dense_spd_unflattens_a_batch():
    path = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3)
    pair = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
    for graph in (path, pair):
        graph.spd = shortest_path_distances(graph.edge_index, graph.num_nodes)
    batch = Batch.from_data_list([pair, path])
    dense = dense_spd(batch.spd, batch.ptr, pad=-1)
    assert dense.shape == (2, 3, 3) and dense.dtype == torch.long
    assert dense[0].tolist() == [[0, 1, -1], [1, 0, -1], [-1, -1, -1]]
    assert dense[1].tolist() == [[0, 1, 2], [1, 0, 1], [2, 1, 0]]


def test_laplacian_pe_matches_pyg_up_to_sign_and_pads_small_graphs():
    n = 7  # a path: distinct eigenvalues, so eigenvectors are unique up to sign
    edge_index = torch.tensor([[i for i in range(n - 1)] + [i + 1 for i in range(n - 1)],
                               [i + 1 for i in range(n - 1)] + [i for i in range(n - 1)]])
    path = Data(edge_index=edge_index, num_nodes=n)
    tiny = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
    ours, small = positional_encodings([path, tiny], "laplacian", 4)
    theirs = AddLaplacianEigenvectorPE(4, attr_name="pe", is_undirected=True)(path.clone()).pe
    assert torch.allclose(ours.abs(), theirs.abs().float(), atol=1e-5)
    assert small.shape == (2, 4) and torch.count_nonzero(small[:, 1:]) == 0
    walk = positional_encodings([path, tiny], "random_walk", 3)
    assert walk[1].tolist() == [[0.0, 1.0, 0.0]] * 2  # a 2-node graph returns every 2 steps


# ----------------------------------------------------------------------------- node tasks


def test_karate_data_module_end_to_end():
    dm = graph_data.GraphDataModule("karate", seed=3, pe="random_walk", pe_dim=4, spd=True)
    assert dm.task == "node" and dm.num_classes == 4 and dm.num_node_features == 34
    dm.prepare_data()
    dm.setup("fit")
    batches = [list(loader()) for loader in (dm.train_dataloader, dm.val_dataloader,
                                              dm.test_dataloader)]
    assert all(len(b) == 1 for b in batches)
    graph = batches[0][0]
    masks = torch.stack([graph.train_mask, graph.val_mask, graph.test_mask])
    assert masks.sum(0).tolist() == [1] * 34 and masks.sum(1).tolist() == [20, 7, 7]
    assert graph.rw_pe.shape == (34, 4) and dense_spd(graph.spd, graph.ptr).shape == (1, 34, 34)
    other = graph_data.GraphDataModule("karate", seed=4)
    other.setup()
    assert not torch.equal(other.parts["train"][0].train_mask, graph.train_mask)


def test_cora_loader_on_a_parquet_fixture(planted):
    words = [np.array(row, dtype=np.int64) for row in ([1, 0, 1, 1], [0, 1, 0, 0], [1, 0, 1, 0])]
    nodes = pd.DataFrame({"nodeId": [30, 10, 20], "labels": "Paper", "subject": [2, 0, 1],
                          "features": words})
    rels = pd.DataFrame({"sourceNodeId": [10, 20, 20], "targetNodeId": [20, 10, 30],
                         "relationshipType": "CITES"})
    for frame, file in ((nodes, social.CORA_NODES), (rels, social.CORA_RELS)):
        file.local.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(file.local, compression="gzip")
        planted.add(file.local)
    data = social.load_cora()
    assert data.y.tolist() == [0, 1, 2]  # sorted by paper id
    assert data.x.dtype == torch.float32 and data.x[0].tolist() == [0, 1, 0, 0]
    assert data.x[2].tolist() == pytest.approx([1 / 3, 0, 1 / 3, 1 / 3])  # rows sum to 1
    assert sorted(map(tuple, data.edge_index.t().tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]


def test_planetoid_split_counts():
    y = torch.arange(7).repeat(100)
    train, val, test = social.planetoid_split(y, 20, 400, 100, seed=0)
    assert y[train].bincount().tolist() == [20] * 7 and (len(val), len(test)) == (400, 100)
    assert len(set(torch.cat([train, val, test]).tolist())) == 640
    with pytest.raises(ValueError, match="nodes left"):
        social.planetoid_split(y, 20, 500, 100, seed=0)


def test_registry_prepare_and_validation(data_cache):
    assert graph_data.available() == {name: "ready" if name == "karate" else "missing"
                                      for name in graph_data.DATASETS}
    graph_data.prepare("karate")  # nothing to fetch, no network
    with pytest.raises(UsageError, match="unknown graph data set"):
        graph_data.prepare("qm9")
    with pytest.raises(ValueError, match="scaffold"):
        graph_data.GraphDataModule("cora", split="scaffold")


def test_esol_damaged_or_changed_is_fetched_again_and_its_processed_set_rebuilt(
        tmp_path, data_cache, monkeypatch):
    """A changed ESOL csv is fetched again before it is processed; a truncated processed set
    is listed corrupt and rebuilt; a new raw table rebuilds the processed set."""
    table = MOLECULES["esol"]

    def serve(rows: list[tuple[str, float]], name: str) -> None:
        source = tmp_path / name
        pd.DataFrame({"smiles": [s for s, _ in rows],
                      table.target_column: [v for _, v in rows]}).to_csv(source, index=False)
        file = dataclasses.replace(table.file, sha256=hashlib.sha256(source.read_bytes())
                                   .hexdigest(), sources=(URLMember(source.as_uri()),))
        monkeypatch.setitem(MOLECULES, "esol", dataclasses.replace(table, file=file))

    serve(ESOL_ROWS, "esol.csv")
    first = load_molecules("esol")
    assert first.y.tolist() == pytest.approx([v for _, v in ESOL_ROWS])
    cached = MOLECULES["esol"].file.local
    frame = pd.read_csv(cached)
    frame[table.target_column] *= 100
    frame.to_csv(cached, index=False)
    processed_path("esol").unlink()  # rebuilt, from the csv fetched again
    assert torch.equal(load_molecules("esol").y, first.y)
    processed = processed_path("esol")
    processed.write_bytes(processed.read_bytes()[:100])
    assert graph_data.available()["esol"] == "corrupt"
    assert torch.equal(load_molecules("esol").y, first.y)
    serve(ESOL_ROWS[:10], "esol-v2.csv")  # new raw data: rebuilt, not served from the old set
    assert len(load_molecules("esol")) == 10
