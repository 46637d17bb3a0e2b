"""``guided_attention``: guided vs unguided vs pre-aligned attention for Transformer TTS, with
ablations, the inference window's share, and intelligibility measured by pocketsphinx."""
