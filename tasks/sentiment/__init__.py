"""Sentiment head: one label for a whole sentence from a Transformer encoder over subword tokens.

The data are the Rotten Tomatoes sentences of Pang & Lee's movie-review set with the mean of
~20 human ratings each (from the vaderSentiment sdist, see ``tasks.sentiment.data``): binary
polarity by default, five classes from the mean rating as the harder variant. A TF-IDF +
logistic-regression baseline (``experiments.sentiment.baselines``) is the number to beat.
"""

from suite.head import Head, PredictOption

HEAD = Head("sentiment", "sentence sentiment: a Transformer encoder over subword tokens",
            module="SentimentModule", datamodule="SentimentDataModule", monitor=("val/acc", "max"),
            predict_options=(PredictOption("documents", "each input is a text file, classified "
                                           "whole (a review), not a string", flag=True),),
            # the classifier, embedding, positions and lexicon prior are sized for the data served
            links=(("data.classes", "model.classes"), ("data.vocab_size", "model.vocab_size"),
                   ("data.max_length", "model.max_length"), ("data.lexicon", "model.lexicon"),
                   # predict cuts a long text as training did
                   ("data.head_tokens", "model.head_tokens"),
                   # pretraining or classifying; a pretrained encoder with its tokenizer
                   ("data.objective", "model.objective"), ("data.pretrained", "model.init_from")))
