r"""Attention over an edge list: each node attends to the nodes with an edge into it.

.. math::
    \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
    \Big(\frac{q_i^\top (k_j + e_{ij})}{\sqrt{d}} + b_{ij}\Big), \qquad
    \text{out}_i = \sum_{j \in \mathcal{N}(i)} \alpha_{ij} (v_j + e_{ij})

per head, where :math:`\mathcal{N}(i)` are the sources of the edges ``j -> i``, :math:`b_{ij}`
an optional bias on that edge's logit and :math:`e_{ij}` an optional vector added to its key
and value (as in PyG's ``TransformerConv`` with ``edge_dim``: the message from j says which
edge it came over, something no per-pair mask or bias can express). Without :math:`e` it is
the dense masked attention ``AttentionMask(allowed=A^T, bias=b)`` on the adjacency A, at O(E)
memory and time instead of O(N^2): the softmax over each node's incoming edges and the sum of
the messages are PyG's sparse ``softmax`` and ``scatter``.

Callers select it by describing the mask as an edge list,
``AttentionMask(edges=EdgeList(edge_index, bias, kv))``; :func:`suite.attention.attend` then
runs :func:`edge_list_attention`. A batch of graphs is one disconnected graph (PyG's
``Batch``), so queries, keys and values are ``(1, heads, N, d)`` over all N nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True, eq=False)
class EdgeList:
    """Which keys each query sees, as edges: query ``i`` attends to key ``j`` iff ``j -> i``.

    Attributes:
        index: ``(2, E)`` long, row 0 the sources ``j`` (keys, values), row 1 the targets
            ``i`` (queries). A node with no incoming edge gets zeros; add self-loops for a
            node to see itself.
        bias: ``(E, heads)`` added to each edge's logit, or None.
        kv: ``(E, heads * d)`` added to each edge's key and value, or None.
    """

    index: Tensor
    bias: Tensor | None = None
    kv: Tensor | None = None


def edge_list_attention(q: Tensor, k: Tensor, v: Tensor, edges: EdgeList,
                        dropout: float = 0.0) -> tuple[Tensor, Tensor]:
    """The module docstring's attention over ``edges``, with ``dropout`` on the weights.

    ``q``/``k``/``v`` ``(1, heads, N, d)``. Returns the output ``(1, heads, N, d)`` and the
    weights ``(E, heads)``, which sum to 1 over each target's incoming edges.
    """
    from torch_geometric.utils import scatter, softmax  # PyG loads only for graphs (seconds)

    if q.shape[0] != 1:
        raise ValueError("edge-list attention takes one (batched) graph: batch size 1, "
                         f"not {q.shape[0]}")
    n, heads, head_dim = q.shape[2], q.shape[1], q.shape[3]
    q, k, v = (x[0].transpose(0, 1) for x in (q, k, v))  # (N, H, d) each
    src, dst = edges.index
    k, v = k[src], v[src]  # (E, H, d)
    if edges.kv is not None:
        kv = edges.kv.to(k.dtype).view(-1, heads, head_dim)
        k, v = k + kv, v + kv
    scores = (q[dst] * k).sum(-1).float() / math.sqrt(head_dim)  # (E, H)
    if edges.bias is not None:
        scores = scores + edges.bias
    weights = softmax(scores, dst, num_nodes=n)  # (E, H)
    messages = F.dropout(weights, dropout).to(v.dtype)[..., None] * v  # (E, H, d)
    out = scatter(messages, dst, dim=0, dim_size=n, reduce="sum")  # (N, H, d)
    return out.transpose(0, 1)[None], weights
