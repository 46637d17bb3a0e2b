"""``graph_attention``: edge and full graph self-attention against PyG's attention layers
(whose models are the graph head's, trained as its runs)."""
