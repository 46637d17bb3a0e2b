"""PyG's own graph-attention layers as peers, with our input encoder, readout and head.

Only the message-passing stack differs from :class:`tasks.graph.model.GraphTransformer`, so a
comparison at about the same parameter count isolates the attention layer:

- ``gat``: :class:`~torch_geometric.nn.GATConv` (Velickovic et al. 2018), additive attention
  :math:`\\alpha_{ij} = \\operatorname{softmax}_j(\\mathrm{LeakyReLU}(a^\\top[W x_i \\Vert
  W x_j \\Vert W_e e_{ij}]))`;
- ``transformer_conv``: :class:`~torch_geometric.nn.TransformerConv` (Shi et al. 2021),
  dot-product attention over neighbours with edge features added to keys and values;
- ``gps``: :class:`~torch_geometric.nn.GPSConv` (Rampasek et al. 2022), a local GINE
  message-passing layer plus global multi-head attention over each graph, summed.

GAT and TransformerConv layers are wrapped as ``x + dropout(ELU(LayerNorm(conv(x))))``;
GPSConv brings its own residuals, norms and MLP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import GATConv, GINConv, GINEConv, GPSConv, TransformerConv

from tasks.graph.model import CategoricalEmbedding, NodeEncoder, PredictionHead, pool

PEERS = ("gat", "transformer_conv", "gps")
PeerKind = Literal["gat", "transformer_conv", "gps"]


def _gin_mlp(dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))


class PeerGNN(nn.Module):
    """A stack of PyG attention layers between our encoder and prediction head.

    Args:
        kind: ``gat``, ``transformer_conv`` or ``gps``.
        dim: hidden width (divisible by ``heads``).
        depth: number of layers.
        heads: attention heads per layer.
        dropout: dropout after each layer (and inside GPS's MLP).
        attention_dropout: dropout on attention weights.
        encoder: the shared node input encoder.
        out_dim: outputs per graph or per node.
        graph_level: pool to one vector per graph (``mean``/``sum`` readout).
        readout: ``mean`` or ``sum``.
        bond_feature_dims: categorical edge features, embedded to ``dim`` for the layers.
        graph_features: width of the whole-molecule descriptors the head reads.
    """

    def __init__(self, kind: PeerKind, dim: int, depth: int, heads: int, dropout: float,
                 attention_dropout: float, encoder: NodeEncoder, out_dim: int,
                 graph_level: bool, readout: str = "mean",
                 bond_feature_dims: Sequence[int] = (), graph_features: int = 0) -> None:
        super().__init__()
        if kind not in PEERS:
            raise ValueError(f"unknown peer {kind!r}; expected one of {PEERS}")
        if graph_level and readout not in ("mean", "sum"):
            raise ValueError(f"PyG peers read out by mean or sum pooling, not {readout!r}")
        self.kind, self.graph_level, self.readout = kind, graph_level, readout
        self.encoder = encoder
        edge_dim = dim if bond_feature_dims else None
        self.bonds = CategoricalEmbedding(bond_feature_dims, dim) if bond_feature_dims else None
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(depth):
            if kind == "gat":
                conv: nn.Module = GATConv(dim, dim // heads, heads=heads, edge_dim=edge_dim,
                                          dropout=attention_dropout)
            elif kind == "transformer_conv":
                conv = TransformerConv(dim, dim // heads, heads=heads, edge_dim=edge_dim,
                                       dropout=attention_dropout)
            else:
                local = (GINEConv(_gin_mlp(dim), edge_dim=dim) if edge_dim
                         else GINConv(_gin_mlp(dim)))
                conv = GPSConv(dim, local, heads=heads, dropout=dropout,
                               attn_kwargs={"dropout": attention_dropout})
            self.convs.append(conv)
            self.norms.append(nn.LayerNorm(dim) if kind != "gps" else nn.Identity())
        self.dropout = nn.Dropout(dropout)
        self.head = PredictionHead(dim, out_dim, dropout, graph_features)

    def forward(self, batch: Batch, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """``(B, out_dim)`` or ``(N, out_dim)``; no attention maps (``need_weights`` is
        accepted for the common interface)."""
        h = self.encoder(batch)  # (N, dim)
        edge_attr = self.bonds(batch.edge_attr) if self.bonds is not None else None  # (E, dim)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            if self.kind == "gps":
                extra = {"edge_attr": edge_attr} if edge_attr is not None else {}
                h = conv(h, batch.edge_index, batch.batch, **extra)
            else:
                out = conv(h, batch.edge_index, edge_attr=edge_attr)
                h = h + self.dropout(nn.functional.elu(norm(out)))
        if self.graph_level:
            h = pool(h, batch.batch, self.readout, batch.num_graphs)
        return self.head(h, batch), []
