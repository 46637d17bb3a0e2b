"""Graph Transformers from the shared core: nodes are tokens, the graph is the attention mask.

Two ways to put the graph into self-attention (:class:`GraphTransformer`):

- ``edge``: node i attends only to its neighbours and itself,

  .. math::
      \\alpha_{ij} = \\operatorname{softmax}_{j \\in \\mathcal{N}(i) \\cup \\{i\\}}
      \\Big(\\frac{q_i^\\top k_j}{\\sqrt{d_k}} + b^{h}_{e_{ij}}\\Big), \\qquad
      h_i' = W^O \\big\\Vert_h \\sum_j \\alpha_{ij} v_j

  with a learned per-head bias :math:`b^h_e` for the bond type of edge (j, i). Densely, on
  padded batches, this is the core's :class:`~suite.attention.MultiHeadAttention` with the
  adjacency (+ self-loops) as ``AttentionMask.allowed`` and the bond bias as
  ``AttentionMask.bias`` (needed when a [CLS] token attends to every atom); described as an
  edge list (``AttentionMask(edges=EdgeList(...))``, :mod:`suite.edge_list`) the same
  attention runs over ``edge_index`` with PyG's sparse ``softmax`` and ``scatter``, so memory
  and time grow with edges, not nodes^2 - on one large graph (Cora, polblogs) and on pooled
  batches of molecules alike.
- ``full``: every node attends to every node of its graph; structure enters as positional
  encodings (Laplacian eigenvectors / random-walk return probabilities, added to the node
  vectors) and as a Graphormer-style bias :math:`b^h_{\\phi(i,j)}` learned per head for each
  shortest-path distance :math:`\\phi(i,j)` (plus the bond bias on direct bonds), so the model
  can learn how local to be instead of being told.

Graph-level outputs are read out from a [CLS] token (a virtual node that attends to every
node) or by mean/sum pooling; node-level outputs are the node vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_add_pool, global_mean_pool
from torch_geometric.utils import (
    add_self_loops,
    remove_self_loops,
    scatter,
    to_dense_adj,
    to_dense_batch,
)

from suite.attention import AttentionMask
from suite.blocks import LayerConfig, TransformerEncoder
from suite.edge_list import EdgeList
from tasks.graph.structure import dense_spd

Readout = Literal["cls", "mean", "sum"]


class CategoricalEmbedding(nn.Module):
    """Sum of one embedding per categorical column: ``(n, len(dims))`` long -> ``(n, dim)``.

    How molecules enter (OGB's AtomEncoder/BondEncoder): each atom feature (element,
    degree, charge, ...) has its own vocabulary and the atom vector is the sum of its columns'
    vectors.
    """

    def __init__(self, dims: Sequence[int], dim: int, init_std: float | None = None) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in dims)
        for table in self.tables:
            nn.init.normal_(table.weight, std=init_std if init_std is not None else dim**-0.5)

    def forward(self, features: Tensor) -> Tensor:
        return sum(table(features[:, i]) for i, table in enumerate(self.tables))


class NodeEncoder(nn.Module):
    """Node input vectors ``(N, dim)``: the features plus a linear map of the positional
    encoding.

    Args:
        dim: model width.
        atom_feature_dims: vocabularies of categorical features (molecules); empty for float
            features.
        num_node_features: width of float features (node tasks).
        pe_attr: the batch attribute holding the positional encoding (``lap_pe``/``rw_pe``).
        pe_dim: its width.
        input_dropout: dropout on float features (Cora's sparse bag of words overfits).
        normalise_features: LayerNorm on the float features' embedding. Global attention
            (``full``, GPS) needs it: early layers add the same all-node average to every node, and
            Cora's row-normalised word vectors embed tiny - the node's own signal drowns
            (outputs barely vary across nodes at initialisation and training collapses).
        flip_pe_signs: flip each Laplacian eigenvector's sign at random per graph while
            training (eigenvectors are defined up to sign; molecules see many graphs).
    """

    def __init__(self, dim: int, atom_feature_dims: Sequence[int] = (),
                 num_node_features: int = 0, pe_attr: str | None = None, pe_dim: int = 0,
                 input_dropout: float = 0.0, flip_pe_signs: bool = False,
                 normalise_features: bool = False) -> None:
        super().__init__()
        if atom_feature_dims:
            self.features: nn.Module = CategoricalEmbedding(atom_feature_dims, dim)
        else:
            self.features = nn.Sequential(
                nn.Dropout(input_dropout), nn.Linear(num_node_features, dim),
                nn.LayerNorm(dim) if normalise_features else nn.Identity())
        self.pe_attr = pe_attr
        self.pe = nn.Linear(pe_dim, dim) if pe_attr else None
        self.flip_pe_signs = flip_pe_signs

    def forward(self, batch: Batch) -> Tensor:
        h = self.features(batch.x)  # (N, dim)
        if self.pe is not None:
            pe = batch[self.pe_attr]  # (N, pe_dim)
            if self.flip_pe_signs and self.training:
                signs = torch.randint(0, 2, (batch.num_graphs, pe.shape[1]), device=pe.device)
                pe = pe * (2 * signs - 1)[batch.batch]
            h = h + self.pe(pe)
        return h


def with_self_loops(edge_index: Tensor, num_nodes: int, *edge_values: Tensor
                    ) -> tuple[Tensor, list[Tensor]]:
    """Every node also attends to itself: existing self-loops are replaced by one per node,
    whose values (bias, edge vectors; each ``(E, F_k)``) are 0, as the dense path's diagonal.
    Returns the new ``edge_index`` and the values re-aligned to it."""
    widths = [v.shape[-1] for v in edge_values]
    joined = torch.cat(edge_values, dim=-1) if edge_values else None  # (E, sum F_k)
    edge_index, joined = remove_self_loops(edge_index, joined)
    edge_index, joined = add_self_loops(edge_index, joined, fill_value=0.0,
                                        num_nodes=num_nodes)
    return edge_index, list(joined.split(widths, dim=-1)) if edge_values else []


def propagate(z: Tensor, edge_index: Tensor, weights: Tensor, steps: int, teleport: float
              ) -> Tensor:
    """Personalised propagation (APPNP, Klicpera et al. 2019) along attention weights.

    .. math::
        z^{(0)} = z, \\qquad z^{(k+1)}_i = (1 - \\beta) \\sum_{j \\to i} \\alpha_{ji}
        z^{(k)}_j + \\beta z_i

    ``steps`` rounds spread each node's prediction over its ``steps``-hop neighbourhood at no
    parameter cost, while the teleport ``beta`` keeps some of the node's own prediction (so
    the result does not wash out to the graph average). With few labels (Cora's 140) the
    reach of deep propagation helps where deeper, parameterised layers overfit.

    Args:
        z: ``(N, C)`` per-node outputs.
        edge_index: ``(2, E)`` edges ``j -> i``, self-loops included.
        weights: ``(E,)`` attention weights summing to 1 over each target's incoming edges.
        steps: propagation rounds.
        teleport: ``beta``, the share of the node's own output kept at each round.
    """
    src, dst = edge_index
    start = z
    for _ in range(steps):
        spread = scatter(weights[:, None].to(z.dtype) * z[src], dst, dim=0,
                         dim_size=z.shape[0], reduce="sum")
        z = (1 - teleport) * spread + teleport * start
    return z


class PredictionHead(nn.Sequential):
    """Linear -> GELU -> dropout -> Linear on the pooled graph vector or each node vector,
    with the molecule's whole-molecule descriptors (``batch.descriptors``, ``(B, F)``)
    appended to the graph vector when ``graph_features`` = F > 0."""

    def __init__(self, dim: int, out_dim: int, dropout: float, graph_features: int = 0
                 ) -> None:
        super().__init__(nn.Linear(dim + graph_features, dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(dim, out_dim))
        self.graph_features = graph_features

    def forward(self, h: Tensor, batch: Batch | None = None) -> Tensor:
        if self.graph_features:
            h = torch.cat([h, batch.descriptors.to(h.dtype)], dim=-1)  # (B, D + F)
        return super().forward(h)


def pool(h: Tensor, batch: Tensor, readout: Readout, num_graphs: int) -> Tensor:
    """Mean or sum of each graph's node vectors ``(N, D)`` -> ``(B, D)``."""
    if readout == "sum":
        return global_add_pool(h, batch, num_graphs)
    return global_mean_pool(h, batch, num_graphs)


class GraphTransformer(nn.Module):
    """Pre-norm Transformer encoder (:class:`suite.blocks.TransformerEncoder`) over nodes.

    Args:
        attention: ``edge`` (neighbours + self) or ``full`` (all nodes, SPD-biased).
        config: the core's encoder stack: its layers' sizes and their number.
        node_encoder: the node input encoder.
        out_dim: outputs per graph (graph-level) or per node.
        graph_level: predict one vector per graph (molecules) or per node.
        readout: ``cls`` (virtual node), ``mean`` or ``sum`` for graph-level outputs.
        bond_feature_dims: vocabularies of categorical edge features (bias per head).
        spd_max: largest shortest-path distance with its own bias (``full``).
        edge_list: compute ``edge`` attention over the edge list instead of a dense mask.
        propagation_steps: rounds of :func:`propagate` of the outputs along the last layer's
            attention weights (averaged over heads); node tasks on the edge-list path.
        teleport: :func:`propagate`'s ``beta``.
        graph_features: width of ``batch.descriptors`` read beside the graph vector
            (:class:`PredictionHead`); graph-level only.
        bond_messages: each layer also embeds the bond features into a vector added to the
            key and value of every edge (:class:`suite.edge_list.EdgeList`'s ``kv``); needs
            the edge-list path and bond features.
    """

    def __init__(self, attention: Literal["edge", "full"], *, config: LayerConfig,
                 node_encoder: NodeEncoder, out_dim: int, graph_level: bool,
                 readout: Readout = "cls", bond_feature_dims: Sequence[int] = (), spd_max: int = 0,
                 edge_list: bool = False, propagation_steps: int = 0,
                 teleport: float = 0.1, graph_features: int = 0,
                 bond_messages: bool = False) -> None:
        super().__init__()
        if attention not in ("edge", "full"):
            raise ValueError(f"unknown graph attention {attention!r}; expected edge|full")
        if edge_list and (attention != "edge" or readout == "cls" and graph_level):
            raise ValueError("the edge-list path serves 'edge' attention with mean/sum readout")
        if graph_features and not graph_level:
            raise ValueError("whole-graph descriptors need a graph-level task")
        if propagation_steps and (graph_level or not edge_list):
            raise ValueError("propagation spreads node outputs along attention weights: it "
                             "needs a node task on the edge-list path")
        if bond_messages and not (edge_list and bond_feature_dims):
            raise ValueError("bond messages are computed over the edge list: they need the "
                             "edge-list path and bond features")
        if attention == "full" and spd_max < 1:
            raise ValueError("full attention needs shortest-path distances (data.spd=true)")
        self.attention, self.readout, self.graph_level = attention, readout, graph_level
        self.edge_list = edge_list
        self.propagation_steps, self.teleport = propagation_steps, teleport
        heads = config.num_heads
        self.encoder = node_encoder
        self.stack = TransformerEncoder(config)
        self.bond_bias = (CategoricalEmbedding(bond_feature_dims, heads, init_std=0.02)
                          if bond_feature_dims else None)
        self.bond_messages = nn.ModuleList(
            CategoricalEmbedding(bond_feature_dims, config.dim) for _ in range(config.depth)
        ) if bond_messages else None
        self.spd_bias = nn.Embedding(spd_max + 1, heads) if attention == "full" else None
        if self.spd_bias is not None:
            nn.init.zeros_(self.spd_bias.weight)
        self.use_cls = graph_level and readout == "cls"
        self.cls = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02) if self.use_cls else None
        self.cls_bias = nn.Parameter(torch.zeros(heads)) if self.use_cls else None
        self.head = PredictionHead(config.dim, out_dim, config.dropout, graph_features)

    def forward(self, batch: Batch, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Outputs ``(B, out_dim)`` (graph-level) or ``(N, out_dim)`` and per-layer attention
        weights if asked: ``(B, H, T, T)`` on the dense path (T = 1 + N_max with [CLS] first),
        ``(E + N, H)`` over :func:`with_self_loops` edges on the edge-list path."""
        h = self.encoder(batch)  # (N, D)
        edge_bias = self.bond_bias(batch.edge_attr) if self.bond_bias is not None else None
        if not self.edge_list:
            h, maps = self._dense(h, batch, edge_bias, need_weights)
            if self.graph_level and not self.use_cls:
                h = pool(h, batch.batch, self.readout, batch.num_graphs)
            return self.head(h, batch), maps
        h, edge_index, maps = self._edge_list(h, batch, edge_bias,
                                              need_weights or self.propagation_steps > 0)
        if self.graph_level:
            h = pool(h, batch.batch, self.readout, batch.num_graphs)
        out = self.head(h, batch)
        if self.propagation_steps:
            out = propagate(out, edge_index, maps[-1].mean(-1), self.propagation_steps,
                            self.teleport)
        return out, maps if need_weights else []

    def _edge_list(self, h: Tensor, batch: Batch, edge_bias: Tensor | None,
                   need_weights: bool) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The stack over ``batch``'s edges plus self-loops (the batch as one graph): node
        vectors ``(N, D)``, that edge index and, if asked, each layer's weights ``(E + N, H)``."""
        values = [] if edge_bias is None else [edge_bias]
        if self.bond_messages is not None:
            values += [embed(batch.edge_attr) for embed in self.bond_messages]  # (E, D) each
        edge_index, values = with_self_loops(batch.edge_index, h.shape[0], *values)
        bias = values.pop(0) if edge_bias is not None else None
        kvs = values or [None] * len(self.stack.layers)  # each layer's own bond messages
        masks = [AttentionMask(edges=EdgeList(edge_index, bias, kv)) for kv in kvs]
        h, maps = self.stack(h[None], masks, need_weights)  # (1, N, D)
        return h[0], edge_index, maps

    def _dense(self, h: Tensor, batch: Batch, edge_bias: Tensor | None, need_weights: bool
               ) -> tuple[Tensor, list[Tensor]]:
        x, valid = to_dense_batch(h, batch.batch, batch_size=batch.num_graphs)  # (B, N, D)
        n_max = x.shape[1]
        lengths = valid.sum(1)  # (B,)
        bias = None
        if edge_bias is not None:  # (B, N_src, N_dst, H) -> (B, H, N_query, N_key)
            bias = to_dense_adj(batch.edge_index, batch.batch, edge_bias, n_max,
                                batch.num_graphs).permute(0, 3, 2, 1)
        allowed = None
        if self.attention == "edge":  # query i may see key j iff j -> i is an edge, or j = i
            adjacency = to_dense_adj(batch.edge_index, batch.batch, None, n_max,
                                     batch.num_graphs)
            eye = torch.eye(n_max, dtype=torch.bool, device=x.device)
            allowed = (adjacency.transpose(1, 2) > 0) | eye  # (B, N, N)
        else:
            spd = dense_spd(batch.spd, batch.ptr)  # (B, N, N)
            spd_bias = self.spd_bias(spd).permute(0, 3, 1, 2)  # (B, H, N, N)
            bias = spd_bias if bias is None else bias + spd_bias
        if self.use_cls:
            x, allowed, bias = self._prepend_cls(x, allowed, bias)
            lengths = lengths + 1
        mask = AttentionMask(key_lengths=lengths, allowed=allowed, bias=bias)
        out, maps = self.stack(x, mask, need_weights)  # (B, T, D)
        if self.use_cls:
            return out[:, 0], maps
        return out[valid], maps

    def _prepend_cls(self, x: Tensor, allowed: Tensor | None, bias: Tensor | None
                     ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """[CLS] at position 0: it attends to every node; in ``full`` attention every node
        also attends to it, with a learned bias per head in both directions (Graphormer's
        virtual-node distance); in ``edge`` attention nodes keep to their neighbours."""
        b, n, _ = x.shape
        x = torch.cat([self.cls.expand(b, 1, -1).to(x.dtype), x], dim=1)
        if allowed is not None:
            allowed = F.pad(allowed, (1, 0, 1, 0), value=False)
            allowed[:, 0, :] = True
        if self.attention == "full":
            heads = self.cls_bias.shape[0]
            bias = F.pad(bias if bias is not None else x.new_zeros(b, heads, n, n),
                         (1, 0, 1, 0))
            edge = self.cls_bias.view(1, heads, 1).to(bias.dtype)
            bias[:, :, 0, :] = edge
            bias[:, :, :, 0] = edge
        elif bias is not None:
            bias = F.pad(bias, (1, 0, 1, 0))
        return x, allowed, bias
