"""The real test set's telephone channel, applied to any 16 kHz audio: a G.722 round trip.

The Asterisk prompts reach the recogniser as G.722 at 64 kbit/s (ITU-T wideband telephony: two
ADPCM sub-bands, 0-4 kHz and 4-8 kHz, with content above about 7 kHz removed). Passing training
audio through the same encoder and decoder gives it the test set's band limit and quantisation
noise, rather than an imitation of them by a low-pass filter.
"""

from __future__ import annotations

import G722
import numpy as np

from suite.errors import DataError, UsageError

SAMPLE_RATE = 16_000
BIT_RATE = 64_000
"""The Asterisk prompts' mode (G.722's highest rate; 1 byte per 2 samples)."""
CODEC_DELAY = 22
"""Samples by which the decoded signal lags its input (the sub-band filter banks' group delay)."""
_FULL_SCALE = 32768.0  # int16 <-> float, as the Asterisk test set is decoded in tasks.asr.data


def g722_round_trip(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Encode 16 kHz mono float audio ``(samples,)`` in [-1, 1] with G.722 and decode it again.

    The input is quantised to int16 (values beyond [-1, 1] clip), as the codec takes 16-bit
    PCM. The codec's :data:`CODEC_DELAY` is removed, so the output ``(samples,)`` float32 lines
    up with the input sample for sample and has its length. A fresh encoder and decoder per call
    (both carry ADPCM state) make the result a function of ``audio`` alone.
    """
    if sample_rate != SAMPLE_RATE:
        raise UsageError(f"g722_round_trip: sample rate {sample_rate} Hz; G.722 needs "
                         f"{SAMPLE_RATE} Hz audio (resample first)")
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.size == 0:
        raise DataError(f"g722_round_trip: audio of shape {audio.shape}; expected a non-empty "
                        "mono signal (samples,)")
    if not np.isfinite(audio).all():
        raise DataError("g722_round_trip: audio holds NaN or infinite samples; expected finite "
                        "floats in [-1, 1]")
    n = audio.size
    # Zeros after the end flush the delayed tail out of the codec; G.722 codes sample pairs,
    # so the padded length is even (an odd last sample would be dropped).
    padded = n + CODEC_DELAY + (n + CODEC_DELAY) % 2
    pcm = np.zeros(padded, dtype=np.int16)
    pcm[:n] = np.clip(np.round(audio * _FULL_SCALE), -32768, 32767)
    coded = G722.G722(SAMPLE_RATE, BIT_RATE).encode(pcm)
    decoded = np.asarray(G722.G722(SAMPLE_RATE, BIT_RATE).decode(coded), dtype=np.int16)
    return (decoded[CODEC_DELAY:CODEC_DELAY + n] / _FULL_SCALE).astype(np.float32)
