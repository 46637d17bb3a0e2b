"""Text-to-speech head: a Transformer text-to-mel model whose encoder-decoder attention is
pushed toward the diagonal by a guided attention loss (Tachibana et al. 2017), trained with
teacher forcing (scheduled sampling as an option) on one synthetic voice (flite ``slt``), whose
phone timings give the true alignment to score attention against; Griffin-Lim makes the audio.
"""

from suite.head import Head, PredictOption

HEAD = Head("tts", "text to speech: Transformer TTS with guided attention, Griffin-Lim audio",
            module="TTSModule", datamodule="TTSDataModule", monitor=("val/mel_l1", "min"),
            predict_options=(PredictOption("out", "directory for the WAV files and attention "
                                           "plots (default ./tts_output)"),),
            # the embedding and the units predict reads are those of the data served
            links=(("data.vocab_size", "model.vocab_size"), ("data.units", "model.units")))
