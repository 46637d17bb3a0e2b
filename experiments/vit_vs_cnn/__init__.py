"""``vit_vs_cnn``: does a CNN win on small data and patch self-attention catch up with more?"""
