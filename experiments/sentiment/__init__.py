"""``sentiment``: a from-scratch Transformer against TF-IDF + logistic regression on the same
splits, beside the published figures on this sentence set."""
