"""The natural voices (Piper joe, hibari heart) and their pseudo-speakers.

Each engine speaks one short sentence a few ways; renderings are cached for the module, so the
engines load once. Piper's phonemes come from the espeak-ng program (installed by the
Makefile), so its tests skip where that program is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import numpy as np
import pytest
import torch

from suite.errors import DataError, UsageError
from tasks.asr import voices
from tasks.asr.voices import SAMPLE_RATE, Voice, parse_voice, pseudo_speakers, render

TEXT = "please enter your four digit pin"
ENGINES = [pytest.param("piper", marks=pytest.mark.skipif(
               shutil.which("espeak-ng") is None, reason="espeak-ng not installed")),
           "hibari"]


@pytest.fixture(scope="module")
def speak() -> Callable[..., np.ndarray]:
    """``speak(engine, semitones=0, speed=1, seed=0)``: TEXT rendered once per argument set."""
    cache: dict[tuple, np.ndarray] = {}

    def rendered(engine: str, semitones: float = 0.0, speed: float = 1.0,
                 seed: int = 0) -> np.ndarray:
        key = (engine, semitones, speed, seed)
        if key not in cache:
            cache[key] = voices.synthesize(engine, TEXT, semitones=semitones, speed=speed,
                                           seed=seed)
        return cache[key]

    return rendered


def _median_f0(audio: np.ndarray) -> float:
    """Median pitch (Hz) of the loud frames, from the real cepstrum's peak quefrency in
    60-400 Hz (torchaudio's detect_pitch_frequency makes octave errors on these voices)."""
    frames = torch.from_numpy(audio).unfold(0, 1024, 256) * torch.hann_window(1024)
    energy = frames.pow(2).mean(dim=1)
    frames = frames[energy > 0.05 * energy.max()]  # (frames, 1024)
    cepstrum = torch.fft.irfft(torch.log(torch.fft.rfft(frames).abs() + 1e-6), n=1024)
    shortest, longest = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    period = cepstrum[:, shortest:longest].argmax(dim=1) + shortest  # samples
    return float((SAMPLE_RATE / period.float()).median())


# ----------------------------------------------------------------------------- voice ids


def test_a_voice_id_names_engine_voice_pitch_and_speed():
    assert parse_voice("piper:joe+p2-s0.9") == Voice("piper", "joe", 2.0, 0.9)
    assert parse_voice("hibari:heart+p-1.5-s1.1") == Voice("hibari", "heart", -1.5, 1.1)
    assert parse_voice("hibari:heart") == Voice("hibari", "heart", 0.0, 1.0)
    assert parse_voice("piper:joe+p0-s1").id == "piper:joe"


@pytest.mark.parametrize("engine", ["piper", "hibari"])
def test_each_engine_has_a_small_grid_of_pseudo_speakers(engine):
    ids = pseudo_speakers(engine)
    assert len(ids) == len(set(ids)) == len(voices.SEMITONES) * len(voices.SPEEDS)
    assert f"{engine}:{voices.VOICES[engine]}" in ids
    assert all(parse_voice(i).id == i and parse_voice(i).engine == engine for i in ids)


@pytest.mark.parametrize("bad", ["", "piper", "piper:bob", "espeak:en-us", "piper:joe+p2",
                                 "piper:joe-s1.1", "piper:joe+p2-s0.9x", "piper:joe+p13-s1",
                                 "hibari:heart+p0-s3"])
def test_a_bad_voice_id_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="voice id") as info:
        parse_voice(bad)
    assert "\n" not in str(info.value)


def test_pseudo_speakers_of_an_unknown_engine_is_a_usage_error():
    with pytest.raises(UsageError, match="espeak"):
        pseudo_speakers("espeak")


# ----------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("engine", ENGINES)
def test_a_sentence_is_audible_16khz_speech_of_plausible_length(engine, speak):
    audio = speak(engine)
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = audio.size / SAMPLE_RATE
    assert 1.0 < seconds < 4.0  # six words
    assert np.abs(audio).max() == pytest.approx(voices.PEAK, rel=1e-3)
    assert np.sqrt(np.mean(audio ** 2)) > 0.02
    assert 60 < _median_f0(audio) < 400  # a voice, not noise or a tone


@pytest.mark.parametrize("engine", ENGINES)
def test_the_same_call_gives_the_same_samples_and_the_seed_varies_them(engine, speak):
    again = voices.synthesize(engine, TEXT)
    np.testing.assert_array_equal(again, speak(engine))
    other = speak(engine, seed=1)
    assert other.size != again.size or not np.array_equal(other, again)


@pytest.mark.parametrize("engine", ENGINES)
def test_speed_shortens_the_utterance(engine, speak):
    base = speak(engine).size
    slow, fast = speak(engine, speed=0.8).size / base, speak(engine, speed=1.25).size / base
    # the engines' length knobs respond less than in proportion, never backwards or beyond
    assert 1.05 < slow <= 1.25 * 1.05
    assert 0.8 / 1.05 <= fast < 0.95


@pytest.mark.parametrize("engine", ENGINES)
def test_semitones_raise_and_lower_the_pitch(engine, speak):
    low, base, high = (_median_f0(speak(engine, semitones=p)) for p in (-4.0, 0.0, 4.0))
    assert low < base < high
    assert high / low == pytest.approx(2 ** (8 / 12), rel=0.15)


def test_render_parses_the_voice_id_and_multiplies_in_the_rate(speak):
    shifted = render("hibari:heart+p2-s0.8", TEXT, rate=1.25)
    np.testing.assert_array_equal(shifted, speak("hibari", semitones=2.0, speed=1.0))


@pytest.mark.parametrize("text", ["", "   ", "...?"])
def test_text_without_words_is_a_usage_error(text):
    with pytest.raises(UsageError, match="nothing to speak"):
        render("hibari:heart", text)


def test_a_non_positive_rate_or_speed_is_a_usage_error():
    with pytest.raises(UsageError, match="rate"):
        render("hibari:heart", TEXT, rate=0.0)
    with pytest.raises(UsageError, match="speed"):
        voices.synthesize("piper", TEXT, speed=-1.0)


def test_piper_without_espeak_is_a_data_error_naming_the_fix(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(DataError, match="apt-get install espeak-ng"):
        render("piper:joe", TEXT)


def test_a_failing_engine_is_a_one_line_data_error(monkeypatch):
    class Broken:
        sample_rate = 24_000

        def __call__(self, text: str, speed: float, seed: int) -> np.ndarray:
            raise RuntimeError("model exploded\nwith a traceback-like second line")

    monkeypatch.setattr(voices, "_hibari", Broken)
    with pytest.raises(DataError, match="hibari voice failed") as info:
        render("hibari:heart", TEXT)
    assert "\n" not in str(info.value)


def test_silence_from_an_engine_is_a_data_error(monkeypatch):
    quiet = voices._Engine(lambda: 24_000, lambda text, length, seed: np.zeros(24_000, np.float32))
    monkeypatch.setitem(voices._ENGINES, "hibari", quiet)
    with pytest.raises(DataError, match="silence"):
        render("hibari:heart", TEXT)
