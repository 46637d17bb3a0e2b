"""``truncated_attention``: a window sweep of speech recognisers, the encoder's scaling with
audio length, and pocketsphinx on the same real speech."""
