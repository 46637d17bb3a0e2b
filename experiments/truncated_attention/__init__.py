"""``truncated_attention``: a window sweep of speech recognisers, the encoder's scaling with
audio length, pocketsphinx on the same real speech, where a trained run's unseen-voice errors
lie (``breakdown``) and how much of the CPU its training step uses (``efficiency``)."""
