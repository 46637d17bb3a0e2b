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

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE

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


def positional_encoding(data: Data, kind: str, dim: int) -> Tensor:
    """``(N, dim)`` float32 Laplacian-eigenvector or random-walk encoding of one graph.

    Laplacian: PyG's ``AddLaplacianEigenvectorPE`` with the k smallest non-trivial eigenvectors
    of the symmetric normalised Laplacian; graphs with ``N <= dim`` have fewer, so the missing
    columns are zeros (PyG's transform fails on them). PyG draws a random sign per column from
    the global torch generator: call this under a seeded ``torch.random.fork_rng`` for
    reproducible encodings (:class:`~tasks.graph.data.GraphDataModule` does). Random walk:
    PyG's ``AddRandomWalkPE``, the return probability after 1..dim steps.
    """
    num_nodes = int(data.num_nodes)
    graph = Data(edge_index=data.edge_index, num_nodes=num_nodes)
    if kind == "laplacian":
        k = min(dim, num_nodes - 1)
        out = torch.zeros(num_nodes, dim)
        if k >= 1:
            pe = AddLaplacianEigenvectorPE(k, attr_name="pe", is_undirected=True)(graph).pe
            out[:, :k] = pe.float()
        return out
    if kind == "random_walk":
        return AddRandomWalkPE(dim, attr_name="pe")(graph).pe.float()
    raise ValueError(f"unknown positional encoding {kind!r}; use 'laplacian' or 'random_walk'")
