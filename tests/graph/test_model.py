"""Graph head models and module: edge-list == dense-masked attention, padding invariance, and
the CLI end to end (karate club; a molecule fixture trained and then used for predict)."""

from __future__ import annotations

import csv
import json
import re

import pandas as pd
import pytest
import torch
from torch_geometric.data import Batch

from suite.attention import AttentionMask, MultiHeadAttention
from suite.blocks import LayerConfig
from suite.cli import main
from tasks.graph.data import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, GraphDataModule
from tasks.graph.model import (
    GraphTransformer,
    NodeEncoder,
    edge_list_attention,
    propagate,
    with_self_loops,
)
from tasks.graph.module import GraphModule, data_info
from tasks.graph.molecules import MOLECULES
from tasks.graph.peers import PeerGNN

# A tiny solubility table (made-up values) for the molecule fit -> predict test.
FIXTURE = [("c1ccccc1", -1.6), ("Cc1ccccc1", -2.2), ("Oc1ccccc1", 0.0), ("Nc1ccccc1", -0.4),
           ("c1ccc2ccccc2c1", -3.6), ("C1CCCCC1", -3.1), ("OC1CCCCC1", -0.4), ("c1ccncc1", 1.1),
           ("CCO", 1.1), ("CCCO", 0.6), ("CC(=O)O", 1.2), ("c1ccc(cc1)C(=O)O", -1.6)]

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--run.wandb=disabled"]
SMALL = ["--model.dim=16", "--model.depth=2", "--model.num_heads=2", "--model.ffn_dim=32"]


def test_edge_list_attention_equals_dense_masked_core_attention():
    torch.manual_seed(0)
    n, heads = 6, 2
    # A directed graph (so the direction convention is tested), with a node (5) that no edge
    # reaches and an existing self-loop (2 -> 2) that must not count twice.
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 2, 0], [1, 0, 2, 3, 1, 0, 2, 4]])
    x = torch.randn(n, 8)
    bias = torch.randn(edge_index.shape[1], heads)
    attention = MultiHeadAttention(8, heads).eval()
    loops, (loop_bias,) = with_self_loops(edge_index, n, bias)
    sparse_out, weights = edge_list_attention(attention, x, loops, loop_bias)

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


def test_bond_messages_join_each_edges_key_and_value():
    """x_i' = W^O sum_j softmax_j(q_i . (k_j + e_ji) / sqrt(d) + b_ji) (v_j + e_ji), written
    out per target node."""
    torch.manual_seed(0)
    n, heads, dim = 5, 2, 8
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 0, 1, 1, 0, 3]])
    x, bias = torch.randn(n, dim), torch.randn(6, heads)
    edge_kv = torch.randn(6, dim)
    attention = MultiHeadAttention(dim, heads).eval()
    out, weights = edge_list_attention(attention, x, edge_index, bias, edge_kv)
    q = attention.q_proj(x).view(n, heads, -1)
    k, v = attention.k_proj(x).view(n, heads, -1), attention.v_proj(x).view(n, heads, -1)
    e = edge_kv.view(6, heads, -1)
    expected = torch.zeros(n, heads, dim // heads)
    for i in range(n):
        incoming = (edge_index[1] == i).nonzero().flatten()
        if len(incoming) == 0:
            continue  # node 2 and 4 receive nothing: zeros, as in the core
        src = edge_index[0, incoming]
        logits = (q[i] * (k[src] + e[incoming])).sum(-1) / (dim // heads) ** 0.5
        alpha = torch.softmax(logits + bias[incoming], dim=0)  # (in-degree, H)
        expected[i] = (alpha[..., None] * (v[src] + e[incoming])).sum(0)
    assert torch.allclose(out, attention.out_proj(expected.reshape(n, dim)), atol=1e-5)
    assert torch.allclose(weights.sum(0), torch.tensor([3.0, 3.0]))  # 3 targets, 1 each
    plain, _ = edge_list_attention(attention, x, edge_index, bias)
    assert not torch.allclose(out, plain)


def test_bond_messages_need_the_edge_list():
    config, encoder = LayerConfig(dim=16, num_heads=2, ffn_dim=32), NodeEncoder(
        16, ATOM_FEATURE_DIMS)
    with pytest.raises(ValueError, match="edge-list path"):
        GraphTransformer("edge", config, 1, encoder, 1, graph_level=True, readout="cls",
                         bond_feature_dims=BOND_FEATURE_DIMS, bond_messages=True)
    model = GraphTransformer("edge", config, 2, encoder, 1, graph_level=True, readout="sum",
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
    return GraphTransformer(attention, LayerConfig(dim=16, num_heads=2, ffn_dim=32), 2, encoder,
                            1, graph_level=True, readout=readout,
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


def _fixture_esol(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path / "cache"))
    table = MOLECULES["esol"]
    table.file.local.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"smiles": [s for s, _ in FIXTURE],
                  table.target_column: [v for _, v in FIXTURE]}).to_csv(
        table.file.local, index=False)


def test_molecule_fit_then_predict(tmp_path, monkeypatch, capsys):
    _fixture_esol(tmp_path, monkeypatch)
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
    assert all(-5 < v < 3 for v in values)  # original units (the fixture spans -3.6..1.2)
    assert main(["predict", "graph", "--ckpt", ckpt, "CCO", "C1CC"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid SMILES 'C1CC'" in err[0]


def test_edge_attention_on_molecules_runs_on_the_edge_list_and_draws_its_attention(
        tmp_path, monkeypatch):
    """`auto` takes the edge list for pooled molecules (O(E), not O(B * N_max^2)); the
    figures scatter its per-edge weights back onto the atoms."""
    _fixture_esol(tmp_path, monkeypatch)
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
    info = {**data_info(dm), "task": "regression", "atom_feature_dims": ATOM_FEATURE_DIMS,
            "bond_feature_dims": BOND_FEATURE_DIMS}
    for readout, edge_list in (("cls", False), ("sum", True), ("mean", True)):
        module = GraphModule(model="edge", dim=16, depth=1, num_heads=2, ffn_dim=32,
                             readout=readout, data_info=info)
        assert module.net.edge_list is edge_list
        assert (module.net.bond_messages is not None) is edge_list
    off = GraphModule(model="edge", dim=16, depth=1, num_heads=2, ffn_dim=32, readout="sum",
                      bond_messages=False, data_info=info)
    assert off.net.edge_list and off.net.bond_messages is None
    assert _karate_module("edge").net.bond_messages is None  # no bonds on a social network
    assert not GraphModule(model="full", dim=16, depth=1, num_heads=2, ffn_dim=32,
                           readout="sum", data_info=info).net.edge_list


def _karate_module(model: str, **kwargs) -> GraphModule:
    dm = GraphDataModule("karate", pe="random_walk", pe_dim=4, spd=True)
    dm.setup()
    return GraphModule(model=model, dim=16, depth=1, num_heads=2, ffn_dim=32,
                       data_info=data_info(dm), **kwargs)


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
        GraphTransformer("edge", LayerConfig(dim=16, num_heads=2, ffn_dim=32), 1,
                         NodeEncoder(16, ATOM_FEATURE_DIMS), 1, graph_level=True,
                         readout="mean", edge_list=True, propagation_steps=2)
    with pytest.raises(ValueError, match="applies to model 'edge'"):
        _karate_module("gat", propagation_steps=2)
