"""Sequence-to-sequence on a corpus the suite synthesizes: sort or reverse digit strings.

The smallest complete encoder-decoder: masked self-attention, cross-attention to the encoder
memory, and greedy generation with a key/value cache. It trains in seconds, so it is also the
head the core's CLI, distributed and experiment tests run.
"""

from suite.head import Head

HEAD = Head("seq2seq", "sort or reverse digit strings: the smallest encoder-decoder",
            module="Seq2SeqModule", datamodule="Seq2SeqDataModule",
            monitor=("val/exact_match", "max"))
