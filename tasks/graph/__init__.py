"""Graph head: self-attention over molecules (graph-level property prediction) and social
networks (node classification).

Nodes are tokens. Attention is either restricted to graph neighbours (an ``allowed`` mask from
the adjacency) or runs over all node pairs with a learned bias per shortest-path distance and
bond type ("full" graph attention); Laplacian or random-walk positional encodings say where a
node sits. Data: ESOL, FreeSolv, Lipophilicity, B3DB (molecules), Cora, polblogs, karate club.
"""

MODULE = "tasks.graph.module.GraphModule"
DATAMODULE = "tasks.graph.data.GraphDataModule"
