"""Speech recognition head: a Transformer encoder with truncated (windowed) self-attention over
80-bin log-mel frames (25 ms windows, 10 ms hop), trained with CTC on a synthesized corpus and
tested on unseen synthetic voices and on real recorded speech (the Asterisk prompts).
"""

from suite.head import Head, PredictOption

HEAD = Head("asr", "speech recognition: truncated self-attention over log-mel frames, CTC",
            module="ASRModule", datamodule="ASRDataModule", monitor=("val/cer", "min"),
            predict_options=(PredictOption("stream", "decode in chunks, as a live stream arrives "
                                           "(needs a truncated attention window)", flag=True),))
