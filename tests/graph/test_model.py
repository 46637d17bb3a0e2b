"""Graph head models and module: edge-list == dense-masked attention, padding invariance, and
the CLI end to end (karate club; a molecule fixture trained and then used for predict)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace

import pytest
import torch
from torch_geometric.data import Batch

from suite.attention import AttentionMask, MultiHeadAttention
from suite.blocks import LayerConfig
from suite.cli import main
from suite.edge_list import EdgeList
from tasks.graph.data import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, GraphDataModule
from tasks.graph.model import GraphTransformer, NodeEncoder, propagate, with_self_loops
from tasks.graph.module import GraphModule
from tasks.graph.peers import PeerGNN

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--run.wandb=disabled"]
SMALL = ["--model.encoder.dim=16", "--model.encoder.depth=2", "--model.encoder.num_heads=2",
         "--model.encoder.ffn_dim=32"]
TINY = LayerConfig(dim=16, depth=1, num_heads=2, ffn_dim=32)


def test_edge_list_with_self_loops_equals_the_dense_adjacency_mask():
    """The graph's two ways into the core: its edge list plus :func:`with_self_loops` and the
    dense mask ``A^T | I`` that the dense path builds."""
    torch.manual_seed(0)
    n, heads = 6, 2
    # A directed graph (so the direction convention is tested), with a node (5) that no edge
    # reaches and an existing self-loop (2 -> 2) that must not count twice.
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 2, 0], [1, 0, 2, 3, 1, 0, 2, 4]])
    x = torch.randn(n, 8)
    bias = torch.randn(edge_index.shape[1], heads)
    attention = MultiHeadAttention(8, heads).eval()
    loops, (loop_bias,) = with_self_loops(edge_index, n, bias)
    sparse_out, weights = attention(x[None], mask=AttentionMask(edges=EdgeList(loops, loop_bias)),
                                    need_weights=True)
    sparse_out = sparse_out[0]

    allowed = torch.eye(n, dtype=torch.bool)
    allowed[edge_index[1], edge_index[0]] = True  # query = target, key = source
    dense_bias = torch.zeros(heads, n, n)
    keep = edge_index[0] != edge_index[1]
    dense_bias[:, edge_index[1][keep], edge_index[0][keep]] = bias[keep].T
    mask = AttentionMask(allowed=allowed[None], bias=dense_bias[None])
    dense_out, dense_weights = attention(x[None], mask=mask, need_weights=True)
    fused_out, _ = attention(x[None], mask=mask)
    assert torch.allclose(sparse_out, dense_out[0], atol=1e-5)
    assert torch.allclose(sparse_out, fused_out[0], atol=1e-5)
    assert torch.allclose(weights, dense_weights[0][:, loops[1], loops[0]].T, atol=1e-6)


def test_bond_messages_need_the_edge_list():
    encoder = NodeEncoder(16, ATOM_FEATURE_DIMS)
    with pytest.raises(ValueError, match="edge-list path"):
        GraphTransformer("edge", config=TINY, node_encoder=encoder, out_dim=1, graph_level=True,
                         readout="cls", bond_feature_dims=BOND_FEATURE_DIMS, bond_messages=True)
    model = GraphTransformer("edge", config=replace(TINY, depth=2), node_encoder=encoder,
                             out_dim=1, graph_level=True, readout="sum",
                             bond_feature_dims=BOND_FEATURE_DIMS, edge_list=True,
                             bond_messages=True).eval()
    graphs = Batch.from_data_list(_molecules(["CCO", "c1ccccc1O"]))
    out, maps = model(graphs, need_weights=True)
    assert out.shape == (2, 1) and len(maps) == 2
    with pytest.raises(ValueError, match="applies to model 'edge'"):
        _karate_module("gat", bond_messages=True)


def _molecules(names: list[str], pe: str = "laplacian") -> list:
    dm = GraphDataModule("esol", pe=pe, pe_dim=4, spd=True, spd_max=5)
    return [dm.graph_for_prediction(smiles) for smiles in names]


def _transformer(attention: str, readout: str, edge_list: bool = False) -> GraphTransformer:
    torch.manual_seed(0)
    encoder = NodeEncoder(16, ATOM_FEATURE_DIMS, pe_attr="lap_pe", pe_dim=4)
    return GraphTransformer(attention, config=replace(TINY, depth=2), node_encoder=encoder,
                            out_dim=1, graph_level=True, readout=readout,
                            bond_feature_dims=BOND_FEATURE_DIMS, spd_max=5,
                            edge_list=edge_list).eval()


def test_whole_model_edge_list_matches_dense():
    graphs = Batch.from_data_list(_molecules(["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]))
    dense, sparse = _transformer("edge", "mean"), _transformer("edge", "mean", edge_list=True)
    sparse.load_state_dict(dense.state_dict())
    assert torch.allclose(dense(graphs)[0], sparse(graphs)[0], atol=1e-5)


@pytest.mark.parametrize("attention,readout", [("edge", "cls"), ("full", "cls"),
                                               ("full", "mean"), ("gps", "mean")])
def test_padding_invariance(attention, readout):
    """A molecule's output alone equals its output in a batch padded for bigger molecules."""
    small, *big = _molecules(["CCO", "CC(=O)Oc1ccccc1C(=O)O", "c1ccc2ccccc2c1"])
    if attention == "gps":
        torch.manual_seed(0)
        encoder = NodeEncoder(16, ATOM_FEATURE_DIMS, pe_attr="lap_pe", pe_dim=4)
        model = PeerGNN("gps", 16, 2, 2, 0.0, 0.0, encoder, 1, True, readout,
                        BOND_FEATURE_DIMS).eval()
    else:
        model = _transformer(attention, readout)
    with torch.no_grad():
        alone = model(Batch.from_data_list([small]))[0]
        batched = model(Batch.from_data_list([big[0], small, big[1]]))[0]
    assert torch.allclose(alone[0], batched[1], atol=1e-5)


@pytest.mark.parametrize("model", ["edge", "full", "gat"])
def test_karate_end_to_end_through_the_cli(tmp_path, model, capsys):
    args = ["train", "graph", "--data.dataset=karate", "--trainer.max_steps=3",
            "--run.root", str(tmp_path), "--run.name=k", f"--model.model={model}",
            "--data.pe=random_walk", "--data.pe_dim=4", f"--data.spd={model == 'full'}",
            *SMALL, *QUIET]
    assert main(args) == 0
    run = tmp_path / "graph" / "adhoc" / "k"
    assert (run / "summary.json").is_file()
    if model == "edge":
        assert (run / "media" / "test_attention_vs_adjacency.png").is_file()
        out = tmp_path / "labels.csv"
        capsys.readouterr()
        assert main(["predict", "graph", "--ckpt", str(run / "checkpoints" / "last.ckpt"),
                     "0", "33", "--out", str(out)]) == 0
        assert re.match(r"node 0\t\d", capsys.readouterr().out)
        with open(out) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 34 and set(rows[0]) == {"node", "predicted", "label", "split"}


def test_molecule_fit_then_predict(tmp_path, esol, capsys):
    args = ["train", "graph", "--data.dataset=esol", "--trainer.max_epochs=2",
            "--data.batch_size=8", "--model.model=full", "--model.readout=cls",
            "--data.descriptors=true",
            "--data.pe=laplacian", "--data.pe_dim=4", "--data.spd=true",
            "--run.root", str(tmp_path), "--run.name=m", *SMALL, *QUIET]
    assert main(args) == 0
    run = tmp_path / "graph" / "adhoc" / "m"
    assert (run / "media" / "test_molecule_attention.png").is_file()
    ckpt = str(run / "checkpoints" / "best.ckpt")
    restored = GraphModule.load_from_checkpoint(ckpt)
    assert restored.net.head.graph_features == restored.info["num_graph_features"] > 0
    assert restored.prediction_data().descriptor_mean == restored.info["descriptor_mean"]
    capsys.readouterr()
    assert main(["predict", "graph", "--ckpt", ckpt, "CCO", "c1ccccc1O"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["CCO", "c1ccccc1O"]
    values = [float(line.split("\t")[1]) for line in lines]
    assert all(-5 < v < 3 for v in values)  # original units (the fixture spans -4.1..1.2)
    assert main(["predict", "graph", "--ckpt", ckpt, "CCO", "C1CC"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid SMILES 'C1CC'" in err[0]


def test_edge_attention_on_molecules_runs_on_the_edge_list_and_draws_its_attention(
        tmp_path, esol):
    """`auto` takes the edge list for pooled molecules (O(E), not O(B * N_max^2)); the
    figures scatter its per-edge weights back onto the atoms."""
    args = ["train", "graph", "--data.dataset=esol", "--trainer.max_epochs=1",
            "--data.batch_size=8", "--model.model=edge", "--model.readout=sum",
            "--data.pe=random_walk", "--data.pe_dim=4", "--run.root", str(tmp_path),
            "--run.name=e", *SMALL, *QUIET]
    assert main(args) == 0
    run = tmp_path / "graph" / "adhoc" / "e"
    assert GraphModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt").net.edge_list
    for figure in ("test_molecule_attention.png", "test_attention_vs_adjacency.png"):
        assert (run / "media" / figure).is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["test/attention_on_neighbours"] == pytest.approx(1.0)


def test_auto_attention_impl_keeps_the_dense_mask_for_a_cls_readout():
    """... and bond messages come with the edge list on molecules, off elsewhere."""
    dm = GraphDataModule("esol", pe="random_walk", pe_dim=4, spd=True)
    info = {**dm.data_info, "task": "regression", "atom_feature_dims": ATOM_FEATURE_DIMS,
            "bond_feature_dims": BOND_FEATURE_DIMS}
    for readout, edge_list in (("cls", False), ("sum", True), ("mean", True)):
        module = GraphModule(model="edge", encoder=TINY, readout=readout, data_info=info)
        assert module.net.edge_list is edge_list
        assert (module.net.bond_messages is not None) is edge_list
    off = GraphModule(model="edge", encoder=TINY, readout="sum", bond_messages=False,
                      data_info=info)
    assert off.net.edge_list and off.net.bond_messages is None
    assert _karate_module("edge").net.bond_messages is None  # no bonds on a social network
    assert not GraphModule(model="full", encoder=TINY, readout="sum",
                           data_info=info).net.edge_list


def _karate_module(model: str, **kwargs) -> GraphModule:
    dm = GraphDataModule("karate", pe="random_walk", pe_dim=4, spd=True)
    return GraphModule(model=model, encoder=TINY, data_info=dm.data_info, **kwargs)


def test_full_attention_normalises_float_feature_embeddings():
    """Sparse row-normalised word vectors embed at ~0.01; `full` attention adds the same
    all-node average to every node, so without a norm the node's own signal drowns."""
    torch.manual_seed(0)
    features = torch.zeros(5, 300)
    features[torch.arange(5), torch.arange(5) * 7] = 1.0 / 18  # Cora-like magnitudes
    batch = Batch(x=features, batch=torch.zeros(5, dtype=torch.long))
    plain = NodeEncoder(16, num_node_features=300)
    normed = NodeEncoder(16, num_node_features=300, normalise_features=True)
    assert plain(batch).std(-1).max() < 0.1
    assert torch.allclose(normed(batch).std(-1, unbiased=False), torch.ones(5), atol=1e-2)
    assert isinstance(_karate_module("full").net.encoder.features[-1], torch.nn.LayerNorm)
    assert isinstance(_karate_module("gps").net.encoder.features[-1], torch.nn.LayerNorm)
    assert isinstance(_karate_module("edge").net.encoder.features[-1], torch.nn.Identity)


def test_structure_lr_scale_gives_the_spd_bias_its_own_learning_rate():
    module = _karate_module("full", lr=0.01, structure_lr_scale=40.0)
    groups = module.param_groups()
    spd = module.net.spd_bias.weight
    owners = [g for g in groups if any(p is spd for p in g["params"])]
    assert len(owners) == 1 and owners[0]["lr"] == pytest.approx(0.4)
    assert sum(len(g["params"]) for g in groups) == len(list(module.parameters()))
    assert len(_karate_module("full").param_groups()) == 2


def test_propagation_is_the_personalised_pagerank_recursion_on_the_weight_matrix():
    """z_K = ((1-b)W)^K z + b sum_{k<K} ((1-b)W)^k z, with W[i, j] the weight of edge j -> i."""
    torch.manual_seed(0)
    edge_index, _ = with_self_loops(torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 3]]), 5)
    weights = torch.softmax(torch.randn(edge_index.shape[1]), 0)
    weights = weights / torch.zeros(5).index_add(0, edge_index[1], weights)[edge_index[1]]
    w = torch.zeros(5, 5)
    w[edge_index[1], edge_index[0]] = weights
    z = torch.randn(5, 3)
    steps, beta = 4, 0.2
    step = (1 - beta) * w
    expected = torch.linalg.matrix_power(step, steps) @ z + beta * sum(
        torch.linalg.matrix_power(step, k) @ z for k in range(steps))
    assert torch.allclose(propagate(z, edge_index, weights, steps, beta), expected, atol=1e-5)
    # node 4 has only its self-loop: it keeps its own output; nothing crosses components
    assert torch.allclose(propagate(z, edge_index, weights, steps, beta)[4], z[4])
    assert torch.equal(propagate(z, edge_index, weights, 0, beta), z)


def test_edge_model_propagates_its_outputs_along_attention_weights():
    torch.manual_seed(0)
    module = _karate_module("edge", propagation_steps=6, teleport=0.1)
    assert module.net.edge_list
    dm = GraphDataModule("karate", pe="random_walk", pe_dim=4, spd=True)
    dm.setup()
    batch = Batch.from_data_list(dm.parts["train"])
    module.eval()
    out, maps = module.net(batch, need_weights=True)
    module.net.propagation_steps = 0
    plain, _ = module.net(batch)
    loops, _ = with_self_loops(batch.edge_index, batch.num_nodes)
    expected = propagate(plain, loops, maps[-1].mean(-1), 6, 0.1)
    assert torch.allclose(out, expected, atol=1e-5) and not torch.allclose(out, plain)
    with pytest.raises(ValueError, match="edge-list path"):
        _karate_module("edge", propagation_steps=2, attention_impl="dense")
    with pytest.raises(ValueError, match="node task"):
        GraphTransformer("edge", config=TINY, node_encoder=NodeEncoder(16, ATOM_FEATURE_DIMS),
                         out_dim=1, graph_level=True, readout="mean", edge_list=True,
                         propagation_steps=2)
    with pytest.raises(ValueError, match="applies to model 'edge'"):
        _karate_module("gat", propagation_steps=2)
