"""Speech recognition head: a Transformer encoder with truncated (windowed) self-attention over
80-bin log-mel frames (25 ms windows, 10 ms hop), trained with CTC on a synthesized corpus and
tested on unseen synthetic voices and on real recorded speech (the Asterisk prompts).
"""

MODULE = "tasks.asr.module.ASRModule"
DATAMODULE = "tasks.asr.data.ASRDataModule"
