"""The G.722 round trip: what the real test set's telephone codec keeps, loses and adds."""

from __future__ import annotations

import numpy as np
import pytest

from suite.errors import DataError, UsageError
from tasks.asr.channel import CODEC_DELAY, SAMPLE_RATE, g722_round_trip


def _tone(freq: float, seconds: float = 0.5, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _snr_db(clean: np.ndarray, coded: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2)
                               / np.sum((coded - clean).astype(np.float64) ** 2)))


def _band_power(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_a_1khz_tone_survives_sample_aligned():
    # compared without any shift: a delay left in would cost the SNR far more than 20 dB
    tone = _tone(1000)
    coded = g722_round_trip(tone)
    assert coded.dtype == np.float32
    assert _snr_db(tone, coded) > 20


def test_the_codec_delay_is_removed():
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    # low-passed by a moving average, so most of it lies in the accurately coded low band
    speechlike = np.convolve(noise, np.ones(4) / 4, mode="same").astype(np.float32)
    coded = g722_round_trip(speechlike)
    lags = range(-2 * CODEC_DELAY, 2 * CODEC_DELAY + 1)
    corr = [np.dot(np.roll(speechlike, lag), coded) for lag in lags]
    assert list(lags)[int(np.argmax(corr))] == 0


@pytest.mark.parametrize("n", [1, 2, 3, 1001, 16_000])
def test_length_is_kept(n):
    assert g722_round_trip(_tone(440, seconds=1.0)[:n]).shape == (n,)


def test_low_band_is_kept_and_high_band_coded_coarsely():
    """G.722 codes 0-4 kHz with 6 bits a sample and 4-8 kHz with 2: white noise keeps both
    bands' power, but the high band comes back far noisier."""
    noise = np.random.default_rng(1).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    coded = g722_round_trip(noise)
    error = coded - noise
    low_snr = 10 * np.log10(_band_power(noise, 0, 4000) / _band_power(error, 0, 4000))
    high_snr = 10 * np.log10(_band_power(noise, 4000, 8000) / _band_power(error, 4000, 8000))
    assert low_snr > high_snr + 8
    assert _band_power(coded, 0, 4000) == pytest.approx(_band_power(noise, 0, 4000), rel=0.05)


def test_the_codec_itself_does_not_low_pass_at_7khz():
    # a 7 kHz band limit has to come from a filter before the codec, not from the codec
    tone = _tone(7500)
    coded = g722_round_trip(tone)
    assert _band_power(coded, 7000, 8000) == pytest.approx(_band_power(tone, 7000, 8000),
                                                           rel=0.1)


def test_each_call_starts_from_a_fresh_codec_state():
    speech, other = _tone(300), _tone(2500)
    first = g722_round_trip(speech)
    g722_round_trip(other)
    np.testing.assert_array_equal(g722_round_trip(speech), first)


def test_out_of_range_input_clips_rather_than_wrapping():
    coded = g722_round_trip(_tone(200, amplitude=2.0))
    assert coded.max() < 1.05 and coded.min() > -1.05
    assert coded.max() > 0.9  # still a full-scale wave, not wrapped round to negative values


@pytest.mark.parametrize("audio, rate, error, words", [
    (np.zeros(100, np.float32), 8000, UsageError, "8000 Hz"),
    (np.zeros(0, np.float32), SAMPLE_RATE, DataError, "non-empty"),
    (np.zeros((100, 2), np.float32), SAMPLE_RATE, DataError, "mono"),
    (np.array([0.0, np.nan], np.float32), SAMPLE_RATE, DataError, "NaN"),
])
def test_bad_input_is_one_clear_line(audio, rate, error, words):
    with pytest.raises(error, match=words) as info:
        g722_round_trip(audio, sample_rate=rate)
    assert "\n" not in str(info.value)
