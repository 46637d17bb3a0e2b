"""Graph head figures (attention drawn on a molecule, learned attention vs adjacency) and the
``graph_attention`` experiment's analysis hook, with published figures beside ours.

Figures are logged after testing through :func:`suite.logging.log_figure` (W&B and the run's
``media/``); :func:`analysis` copies seed-0 ones into the report.
"""

from __future__ import annotations

import io
import shutil
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import k_hop_subgraph, to_dense_adj

from suite.logging import log_figure
from suite.report import is_quick, mean_sd
from tasks.graph.model import with_self_loops
from tasks.graph.structure import dense_spd

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("edge", "full", "gat", "transformer_conv", "gps")
PEER_NAMES = {"gat": "GATConv", "transformer_conv": "TransformerConv", "gps": "GPSConv"}
# data set -> (metric, higher is better, target)
TARGETS = {"esol": ("test/rmse", False, 0.58), "freesolv": ("test/rmse", False, 1.15),
           "lipophilicity": ("test/rmse", False, 0.70), "b3db": ("test/auroc", True, 0.90),
           "cora": ("test/acc", True, 0.81), "polblogs": ("test/acc", True, 0.95)}
PUBLISHED = [
    ("esol", "random", "MPNN", "RMSE 0.58", "MoleculeNet (Wu et al. 2018)"),
    ("esol", "random", "GraphConv", "RMSE 0.97", "MoleculeNet (Wu et al. 2018)"),
    ("freesolv", "random", "MPNN", "RMSE 1.15", "MoleculeNet (Wu et al. 2018)"),
    ("lipophilicity", "random", "MPNN", "RMSE 0.72", "MoleculeNet (Wu et al. 2018)"),
    ("cora", "public (20/class)", "GCN", "81.5%", "Kipf & Welling 2017"),
    ("cora", "public (20/class)", "GAT", "83.0%", "Velickovic et al. 2018"),
]


# ----------------------------------------------------------------------------- figures


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


# ----------------------------------------------------------------------------- analysis


NODE_SPLITS = {"cora": "20 per class / 500 / 1,000", "polblogs": "60/20/20"}


def _split(run: dict[str, Any]) -> str:
    if run.get("dataset") in NODE_SPLITS:
        return NODE_SPLITS[run["dataset"]]
    return str(run.get("overrides", {}).get("data.split", "random"))


def _collect(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[dict]]]:
    table: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.get("dataset") in TARGETS and run.get("model") in MODELS:
            table[(run["dataset"], _split(run))][run["model"]].append(run)
    return table


def _metric(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [r["metrics"][key] for r in runs if key in r.get("metrics", {})]


def _best(by_model: dict[str, list[dict]], models: tuple[str, ...], key: str, higher: bool
          ) -> tuple[str, float] | None:
    means = {m: statistics.mean(_metric(by_model[m], key)) for m in models
             if _metric(by_model.get(m, []), key)}
    if not means:
        return None
    model = (max if higher else min)(means, key=means.get)
    return model, means[model]


def _dataset_lines(table: dict, quick: bool) -> list[str]:
    header = ["| data set | split | metric | " + " | ".join(MODELS) + " |",
              "|---|---|---|" + "---|" * len(MODELS)]
    rows, verdicts = [], []
    for (dataset, split), by_model in sorted(table.items()):
        key, higher, goal = TARGETS[dataset]
        cells = []
        for model in MODELS:
            runs = by_model.get(model, [])
            values = _metric(runs, key)
            if not values:
                cells.append("-")
                continue
            params = runs[0].get("params") or 0
            secs = max(r.get("train_seconds") or 0 for r in runs)
            cells.append(f"{mean_sd(values)}<br>{params / 1e3:.0f}k params, <= {secs:.0f} s")
        rows.append(f"| {dataset} | {split} | {key} | " + " | ".join(cells) + " |")
        ours = _best(by_model, ("edge", "full"), key, higher)
        peer = _best(by_model, tuple(PEER_NAMES), key, higher)
        if ours is None:
            continue
        better = "higher" if higher else "lower"
        text = f"- {dataset} ({split}): our best is {ours[0]} at {ours[1]:.3f}"
        if split == "random" or dataset in NODE_SPLITS:
            met = ours[1] >= goal if higher else ours[1] <= goal
            text += f" (target {'>=' if higher else '<='} {goal}: **{'met' if met else 'missed'}**)"
        if peer is not None:
            wins = ours[1] >= peer[1] if higher else ours[1] <= peer[1]
            verdict = "met" if wins else "missed"
            text += (f"; best PyG peer {PEER_NAMES[peer[0]]} {peer[1]:.3f} ({better} is "
                     f"better): ours {'>=' if wins else '<'} peer, **{verdict}**")
        verdicts.append(text + ".")
    note = ["", "(--quick: reduced grid, budgets and seeds; not the reference numbers.)"] \
        if quick else []
    return [*header, *rows, "", "Targets (mean over seeds):", "", *verdicts, *note]


def _time_lines(runs: list[dict[str, Any]]) -> list[str]:
    secs = [(r.get("train_seconds") or 0, r["name"]) for r in runs]
    if not secs:
        return []
    worst, name = max(secs)
    total = sum(s for s, _ in secs)
    return [f"Longest single run: {worst:.0f} s ({name}; target <= 300 s: "
            f"**{'met' if worst <= 300 else 'missed'}**). Training time of all runs together: "
            f"{total / 60:.0f} min."]


def _published_lines() -> list[str]:
    lines = ["| data set | split | model | published | source |", "|---|---|---|---|---|"]
    lines += [f"| {d} | {s} | {m} | {v} | {src} |" for d, s, m, v, src in PUBLISHED]
    return [*lines, "", "Our random splits are seeded 80/10/10 draws, not MoleculeNet's own; "
            "our Cora splits are seeded Planetoid-style draws (20 per class / 500 / 1,000) on "
            "a Cora copy without Planetoid's fixed public split, so published numbers are "
            "context, not a like-for-like comparison."]


def _copy_figures(runs: list[dict[str, Any]], run_root: Path, out_dir: Path) -> list[str]:
    lines = []
    for dataset in ("esol", "cora"):
        for model in ("edge", "full"):
            run = next((r for r in runs if r.get("dataset") == dataset
                        and r.get("model") == model and r.get("seed") == 0
                        and _split(r) != "scaffold"), None)
            if run is None:
                continue
            for figure in ("test_molecule_attention", "test_attention_vs_adjacency"):
                source = run_root / run["name"] / "media" / f"{figure}.png"
                if source.is_file():
                    target = out_dir / f"{dataset}_{model}_{figure.removeprefix('test_')}.png"
                    shutil.copyfile(source, target)
                    lines.append(f"![{dataset} {model} {figure}]({target.name})")
    return lines


def analysis(results: dict[str, Any]) -> str:
    """Markdown: per data set and split, every model's metric (mean +- sd over seeds),
    parameters and time; the targets in words; published figures; attention figures."""
    quick = is_quick(results)
    name = results["experiment"]
    out_dir = ROOT / ("runs/quick-reports" if quick else "reports") / name
    run_root = ROOT / "runs" / "graph" / (f"{name}-quick" if quick else name)
    runs = results["runs"]
    parts = ["Test metric per data set and split (mean +- sd over seeds; cell: metric, "
             "parameters, longest run's training seconds):", "",
             *_dataset_lines(_collect(runs), quick), "", *_time_lines(runs), "",
             "### Published figures (context)", "", *_published_lines()]
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _copy_figures(runs, run_root, out_dir)
    if figures:
        parts += ["", "### Attention (seed 0, test data)", "",
                  "Molecules: last-layer attention averaged over heads, drawn on the "
                  "structure; heatmaps: learned attention next to the adjacency (+ self) and, "
                  "for full attention, the shortest-path distances it was given as a bias.",
                  "", *figures]
    return "\n".join(parts)
