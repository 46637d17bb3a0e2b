"""Sentiment head: one label for a whole sentence from a Transformer encoder over subword tokens.

The data are the Rotten Tomatoes sentences of Pang & Lee's movie-review set with the mean of
~20 human ratings each (from the vaderSentiment sdist, see ``tasks.sentiment.data``): binary
polarity by default, five classes from the mean rating as the harder variant. A TF-IDF +
logistic-regression baseline (``tasks.sentiment.baseline``) is the number to beat. The CLI
imports the classes named below only when the head is used.
"""

MODULE = "tasks.sentiment.module.SentimentModule"
DATAMODULE = "tasks.sentiment.data.SentimentDataModule"
