"""Graph head figures, logged after testing through :func:`suite.logging.log_figure` (W&B and
the run's ``media/``): attention drawn on a molecule, and learned attention next to the
adjacency (and the shortest-path distances full attention is given as a bias).
"""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import k_hop_subgraph, to_dense_adj

from suite.logging import log_figure
from tasks.graph.model import with_self_loops
from tasks.graph.structure import dense_spd


def _head_mean(weights: Tensor) -> Tensor:
    return weights.detach().float().mean(0).cpu()


def _query_key(net: Any, batch: Batch, layer_map: Tensor) -> Tensor:
    """One layer's head-mean attention as an ``(n, n)`` query x key matrix over ``batch``'s
    nodes, from either path: edge-list weights ``(E + N, H)`` are scattered onto the matrix
    (query = edge target, key = source), dense maps ``(1, H, T, T)`` lose their [CLS] row."""
    if net.edge_list:
        n = batch.num_nodes
        edge_index, _ = with_self_loops(batch.edge_index, n)
        full = torch.zeros(n, n)
        full[edge_index[1].cpu(), edge_index[0].cpu()] = _head_mean(layer_map.T)
        return full
    start = 1 if net.use_cls else 0
    return _head_mean(layer_map[0])[start:, start:]


def _molecule_image(smiles: str, per_atom: Tensor) -> Any:
    """RDKit drawing of ``smiles`` with atoms highlighted by ``per_atom`` (darker = more)."""
    import matplotlib
    from PIL import Image
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = Chem.MolFromSmiles(smiles)
    scaled = (per_atom / per_atom.max().clamp(min=1e-9)).tolist()
    cmap = matplotlib.colormaps["Reds"]
    colours = {i: tuple(cmap(0.15 + 0.8 * v)[:3]) for i, v in enumerate(scaled)}
    for i, value in enumerate(per_atom.tolist()):
        mol.GetAtomWithIdx(i).SetProp("atomNote", f"{value:.2f}")
    drawer = rdMolDraw2D.MolDraw2DCairo(520, 400)
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol, highlightAtoms=list(colours),
                                       highlightAtomColors=colours)
    drawer.FinishDrawing()
    return Image.open(io.BytesIO(drawer.GetDrawingText()))


def _pick_molecule(graphs: list[Data], smiles: str | None) -> Data:
    if smiles:
        matches = [g for g in graphs if g.smiles == smiles]
        if matches:
            return matches[0]
    return next((g for g in graphs if g.num_nodes >= 12), max(graphs, key=lambda g: g.num_nodes))


def _heatmaps(panels: list[tuple[str, Tensor]], title: str) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], panels, strict=True):
        image = ax.imshow(matrix.numpy(), cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("key node")
        ax.set_ylabel("query node")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def log_attention_figures(module: Any, dm: Any) -> None:
    """Log the attention figures of a trained ``edge``/``full`` model on test data."""
    net = module.net
    net.eval()
    with torch.no_grad():
        if dm.task == "node":
            _node_figures(module, net, dm)
        else:
            _molecule_figures(module, net, dm)


def _molecule_figures(module: Any, net: Any, dm: Any) -> None:
    import matplotlib.pyplot as plt

    graph = _pick_molecule(dm.parts["test"], module.hparams.show_smiles)
    batch = Batch.from_data_list([graph]).to(module.device)
    _, maps = net(batch, need_weights=True)
    layers = [_query_key(net, batch, m) for m in maps]  # (n, n) query x key per layer
    if net.use_cls:
        per_atom, what = _head_mean(maps[-1][0])[0, 1:], "[CLS] attention to each atom"
    else:
        per_atom, what = layers[-1].mean(0), "mean attention each atom receives"
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.imshow(_molecule_image(graph.smiles, per_atom))
    ax.axis("off")
    ax.set_title(f"{module.hparams.model} attention, last layer, head mean: {what}\n"
                 f"{graph.smiles}", fontsize=8)
    log_figure(module, "test/molecule_attention", fig)
    adjacency = to_dense_adj(graph.edge_index, max_num_nodes=graph.num_nodes)[0].T
    adjacency = ((adjacency > 0) | torch.eye(graph.num_nodes, dtype=torch.bool)).float()
    panels = [("layer 1", layers[0]), (f"layer {len(layers)}", layers[-1]),
              ("adjacency + self", adjacency)]
    if "spd" in graph:
        panels.append(("shortest-path distance", dense_spd(graph.spd, batch.ptr.cpu())[0]))
    log_figure(module, "test/attention_vs_adjacency",
               _heatmaps(panels, f"{module.hparams.model} attention (head mean) vs structure"))
    module.log("test/attention_on_neighbours", float((layers[-1] * adjacency).sum(1).mean()))


def _node_figures(module: Any, net: Any, dm: Any) -> None:
    graph = Batch.from_data_list(dm.parts["test"]).to(module.device)
    _, maps = net(graph, need_weights=True)
    n = graph.num_nodes
    center = int(graph.test_mask.nonzero()[0])
    nodes = k_hop_subgraph(center, 2, graph.edge_index, num_nodes=n)[0][:40].cpu()
    full = _query_key(net, graph, maps[-1]).to(graph.x.device)
    adjacency = to_dense_adj(graph.edge_index, max_num_nodes=n)[0].T
    adjacency = ((adjacency > 0) | torch.eye(n, dtype=torch.bool, device=adjacency.device))
    local = float((full * adjacency).sum(1).mean())
    sub = full.cpu()[nodes][:, nodes]
    panels = [("learned, last layer", sub), ("adjacency + self",
                                             adjacency.cpu()[nodes][:, nodes].float())]
    title = (f"{module.hparams.model} attention around test node {center} ({dm.dataset}, "
             f"2-hop, {len(nodes)} nodes)")
    log_figure(module, "test/attention_vs_adjacency", _heatmaps(panels, title))
    module.log("test/attention_on_neighbours", local)
