"""Griffin-Lim vocoder: a harmonic signal survives log-mel -> audio -> log-mel, runs are
bit-identical, silence stays silent, and write_wav writes a readable 16 kHz PCM file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf
import torch

from suite.errors import DataError
from tasks.asr.features import SAMPLE_RATE, log_mel
from tasks.tts.vocoder import GriffinLimVocoder, write_wav


def sawtooth(f0: float, seconds: float = 1.0) -> torch.Tensor:
    """A voice-like harmonic signal: a sawtooth at ``f0`` Hz with 5 Hz, 3% vibrato."""
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    frequency = f0 * (1 + 0.03 * torch.sin(2 * math.pi * 5 * t))
    phase = torch.cumsum(frequency / SAMPLE_RATE, 0)
    return 0.5 * (2 * (phase - phase.floor()) - 1)


def level_free_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean |log-mel difference| after removing the overall gain (the vocoder peak-normalises,
    so the level is not kept by design)."""
    diff = a - b
    return (diff - diff.mean()).abs().mean().item()


@pytest.fixture(scope="module")
def mel() -> torch.Tensor:
    return log_mel(sawtooth(150.0))


def test_round_trip_keeps_the_spectrum(mel: torch.Tensor) -> None:
    audio = GriffinLimVocoder(n_iter=32)(mel)
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert audio.abs().max().item() == pytest.approx(0.9, abs=1e-5)
    again = log_mel(audio)
    assert again.shape == mel.shape
    # Measured about 0.17 nats; another pitch (220 Hz) is about 1.3 away.
    assert level_free_l1(again, mel) < 0.25
    assert level_free_l1(log_mel(sawtooth(220.0)), mel) > 1.0


def test_two_runs_give_identical_wavs(tmp_path: Path, mel: torch.Tensor) -> None:
    first = write_wav(tmp_path / "a.wav", GriffinLimVocoder(n_iter=8)(mel))
    second = write_wav(tmp_path / "b.wav", GriffinLimVocoder(n_iter=8)(mel.clone()))
    assert first.read_bytes() == second.read_bytes()


def test_vocoder_adds_nothing_to_a_checkpoint() -> None:
    vocoder = GriffinLimVocoder()
    assert vocoder.state_dict() == {}
    assert len(list(vocoder.buffers())) == 2  # still moved by .to(device)


def test_silence_stays_silent() -> None:
    audio = GriffinLimVocoder(n_iter=4)(log_mel(torch.zeros(SAMPLE_RATE // 2)))
    assert audio.abs().max().item() < 1e-4


def test_vocoder_rejects_bad_mels(mel: torch.Tensor) -> None:
    vocoder = GriffinLimVocoder(n_iter=1)
    with pytest.raises(DataError, match=r"shape \(frames, 80\)"):
        vocoder(mel.T)
    bad = mel.clone()
    bad[3, 4] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        vocoder(bad)


def test_write_wav_round_trip(tmp_path: Path, mel: torch.Tensor) -> None:
    audio = GriffinLimVocoder(n_iter=4)(mel)
    path = write_wav(tmp_path / "out" / "sample.wav", audio)
    assert path == tmp_path / "out" / "sample.wav"
    assert [p.name for p in path.parent.iterdir()] == ["sample.wav"]  # no temp file left
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    data, _ = sf.read(path, dtype="float32")
    assert torch.allclose(torch.from_numpy(data), audio, atol=1 / 2**15)
    first = path.read_bytes()
    write_wav(path, audio)
    assert path.read_bytes() == first


def test_write_wav_rejects_non_finite(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="finite"):
        write_wav(tmp_path / "bad.wav", torch.tensor([0.0, float("inf")]))
    assert not (tmp_path / "bad.wav").exists()
