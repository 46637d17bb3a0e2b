"""Graph head: self-attention over molecules (graph-level property prediction) and social
networks (node classification).

Nodes are tokens. Attention is either restricted to graph neighbours (an ``allowed`` mask from
the adjacency) or runs over all node pairs with a learned bias per shortest-path distance and
bond type ("full" graph attention); Laplacian or random-walk positional encodings say where a
node sits. Data: ESOL, FreeSolv, Lipophilicity, B3DB (molecules), Cora, polblogs, karate club.
"""

from suite.head import Head, PredictOption

HEAD = Head("graph", "graph attention: molecule properties and node classification",
            module="GraphModule", datamodule="GraphDataModule", monitor=("val/loss", "min"),
            predict_options=(PredictOption("out", "write every node's predicted label to this CSV "
                                           "(node tasks)"),),
            # task, input and output sizes, encodings: the network is built for the data served
            links=(("data.data_info", "model.data_info"),))
