"""Structure encodings for graph attention: shortest-path distances and positional encodings.

A Transformer over a graph's nodes sees a set, not a graph; these tensors put the graph back.
Shortest-path distances (SPD) feed an attention bias per distance (Graphormer-style "full"
attention); Laplacian eigenvectors and random-walk return probabilities are added to node
embeddings. All are computed once per graph when the data are set up, never per step.

SPD layout: one flat ``(N*N,)`` uint8 tensor per graph, row-major (``spd[i*N + j]`` = hops
from node i to node j). PyG concatenates it across a batch without offsets, so a batch holds
``(sum_i N_i**2,)``; :func:`dense_spd` turns that and ``batch.ptr`` into ``(B, N_max, N_max)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE

from suite.data import single_thread

UNREACHABLE = 255
"""Stored distance for node pairs in different components (and distances >= 255)."""


def shortest_path_distances(edge_index: Tensor, num_nodes: int) -> Tensor:
    """All-pairs hop counts, flat row-major ``(N*N,)`` uint8; unreachable = :data:`UNREACHABLE`.

    Stored unclipped (up to 254) so one cache serves any clip; :func:`clip_spd` applies the
    model's maximum. Edges are treated as undirected.
    """
    if num_nodes == 0:
        return torch.zeros(0, dtype=torch.uint8)
    src, dst = edge_index.numpy()
    adj = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(num_nodes, num_nodes))
    dist = shortest_path(adj, unweighted=True, directed=False)
    dist[~np.isfinite(dist)] = UNREACHABLE
    return torch.from_numpy(np.minimum(dist, UNREACHABLE).astype(np.uint8).reshape(-1))


def clip_spd(spd: Tensor, max_distance: int) -> Tensor:
    """Clip stored distances to ``max_distance``; unreachable pairs become ``max_distance``."""
    if not 1 <= max_distance < UNREACHABLE:
        raise ValueError(f"spd_max must be in 1..{UNREACHABLE - 1}, got {max_distance}")
    return spd.clamp(max=max_distance)


def dense_spd(spd: Tensor, ptr: Tensor, pad: int = 0) -> Tensor:
    """Unflatten a batch's concatenated SPD into ``(B, N_max, N_max)`` long.

    ``spd`` is ``batch.spd`` (``(sum_i N_i**2,)``), ``ptr`` is ``batch.ptr`` (``(B+1,)``).
    Positions beyond a graph's own nodes hold ``pad``; they are key-padding positions that the
    attention mask removes anyway, so any valid embedding index will do.
    """
    sizes = ptr[1:] - ptr[:-1]
    squares = sizes * sizes
    if spd.numel() != int(squares.sum()):
        raise ValueError(f"spd has {spd.numel()} entries but the graph sizes need "
                         f"{int(squares.sum())}")
    n_max = int(sizes.max()) if sizes.numel() else 0
    out = torch.full((sizes.numel(), n_max, n_max), pad, dtype=torch.long, device=spd.device)
    graph = torch.repeat_interleave(torch.arange(sizes.numel(), device=spd.device), squares)
    starts = torch.cumsum(squares, 0) - squares
    local = torch.arange(spd.numel(), device=spd.device) - starts[graph]
    n = sizes[graph]
    out[graph, local // n, local % n] = spd.long()
    return out


def positional_encodings(graphs: Sequence[Data], kind: str, dim: int) -> list[Tensor]:
    """``(N_i, dim)`` float32 Laplacian-eigenvector or random-walk encodings, one per graph.

    Both match PyG's transforms; applied graph by graph those are slow on thousands of
    molecules, so this batches them. Random walk: ``AddRandomWalkPE`` (return probability
    after 1..dim steps) run once on the disjoint union, which is exact because walks never
    leave a component. Laplacian: the ``dim`` smallest non-trivial eigenvectors of the
    symmetric normalised Laplacian, as ``AddLaplacianEigenvectorPE``; graphs below PyG's
    sparse threshold (100 nodes) are solved densely in batches of equal size, larger ones by
    the PyG transform (sparse ``eigsh``). Graphs with ``N <= dim`` lack columns: they are
    zeros. Eigenvector signs are arbitrary, so each column gets a random sign from the global
    torch generator (which also draws ARPACK's start vector): run under a seeded
    ``torch.random.fork_rng`` for reproducible output (:class:`GraphDataModule` does).
    """
    with single_thread():
        return _encodings(graphs, kind, dim)


def _encodings(graphs: Sequence[Data], kind: str, dim: int) -> list[Tensor]:
    if kind == "random_walk":
        sizes = [int(g.num_nodes) for g in graphs]
        offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0).tolist()
        edge_index = torch.cat([g.edge_index + off
                                for g, off in zip(graphs, offsets, strict=True)], dim=1)
        union = Data(edge_index=edge_index, num_nodes=sum(sizes))
        return list(AddRandomWalkPE(dim, attr_name="pe")(union).pe.float().split(sizes))
    if kind != "laplacian":
        raise ValueError(f"unknown positional encoding {kind!r}; use 'laplacian' or "
                         "'random_walk'")
    out: list[Tensor] = [torch.zeros(0)] * len(graphs)
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, graph in enumerate(graphs):
        n = int(graph.num_nodes)
        if n >= AddLaplacianEigenvectorPE.SPARSE_THRESHOLD:
            # ARPACK's own random start vector would make the result vary from run to run
            start = torch.rand(n, dtype=torch.float64).numpy()
            transform = AddLaplacianEigenvectorPE(min(dim, n - 1), attr_name="pe",
                                                  is_undirected=True, v0=start)
            pe = transform(Data(edge_index=graph.edge_index, num_nodes=n)).pe.float()
            out[i] = torch.nn.functional.pad(pe, (0, dim - pe.size(1)))
        else:
            by_size[n].append(i)
    for n, index in by_size.items():
        encodings = _dense_laplacian_pe([graphs[i] for i in index], n, dim)
        for i, pe in zip(index, encodings, strict=True):
            out[i] = pe
    return out


def _dense_laplacian_pe(graphs: Sequence[Data], n: int, dim: int) -> Tensor:
    """``(G, n, dim)`` Laplacian encodings of ``G`` graphs that all have ``n`` nodes."""
    which = torch.cat([torch.full((g.edge_index.size(1),), j) for j, g in enumerate(graphs)])
    rows, cols = torch.cat([g.edge_index for g in graphs], dim=1)
    keep = rows != cols  # PyG drops self-loops before normalising
    adj = torch.zeros(len(graphs), n, n, dtype=torch.float64)
    adj.index_put_((which[keep], rows[keep], cols[keep]), torch.ones(int(keep.sum()),
                   dtype=torch.float64), accumulate=True)
    inv_sqrt = adj.sum(-1).pow(-0.5).nan_to_num(posinf=0.0)
    lap = torch.eye(n, dtype=torch.float64) - inv_sqrt[:, :, None] * adj * inv_sqrt[:, None, :]
    _, vectors = torch.linalg.eigh(lap)  # ascending eigenvalues
    k = min(dim, n - 1)
    pe = torch.zeros(len(graphs), n, dim)
    pe[..., :k] = vectors[..., 1:k + 1].float()
    return pe * (2 * torch.randint(0, 2, (len(graphs), 1, dim)) - 1)
