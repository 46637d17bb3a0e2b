"""The ASR head's 25 ms / 10 ms 80-bin log-mel front end, and reading a user's audio file.

Features are 80-bin log-mel spectra of 16 kHz audio with 25 ms windows (400 samples) every
10 ms (160 samples), so ``n`` samples give ``1 + n // 160`` frames.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from suite.errors import DataError

SAMPLE_RATE = 16_000
N_MELS = 80
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms


@lru_cache(maxsize=1)
def _mel() -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE, n_fft=WIN_LENGTH, win_length=WIN_LENGTH, hop_length=HOP_LENGTH,
        n_mels=N_MELS)


def num_frames(num_samples: int) -> int:
    """Frames the centred STFT gives for ``num_samples`` samples at a 10 ms hop."""
    return 1 + num_samples // HOP_LENGTH


def log_mel(audio: torch.Tensor) -> torch.Tensor:
    """Mono 16 kHz audio ``(samples,)`` -> log-mel ``(frames, 80)`` (natural log, floor 1e-6)."""
    with torch.no_grad():
        return torch.log(_mel()(audio.float()) + 1e-6).T.contiguous()


def _riff_truncated(path: Path, size: int) -> bool:
    """A WAV whose header promises more bytes than the file has (libsndfile reads it quietly)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] != b"RIFF":
        return False
    declared = int.from_bytes(head[4:8], "little")
    return declared not in (0, 0xFFFFFFFF) and declared + 8 > size


def load_audio(path: str | Path) -> torch.Tensor:
    """Read any sample rate, mono or stereo, as mono 16 kHz float ``(samples,)``.

    Raises :class:`DataError` with one line naming the file for anything a user could hand
    over by mistake: a missing, empty, non-audio, truncated, too short, silent file, or a float
    file holding NaN/Inf samples (they would turn every log-prob into NaN, an empty transcript).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty file")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        reason = str(err).splitlines()[0].replace(f"Error opening {str(path)!r}: ", "")
        raise DataError(f"{path}: not a readable audio file, or truncated ({reason})") from err
    if _riff_truncated(path, size):
        raise DataError(f"{path}: truncated audio file (header size exceeds the file)")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise DataError(f"{path}: {bad} of {data.size} samples are NaN or infinite "
                        "(expected finite samples, float audio in [-1, 1])")
    audio = torch.from_numpy(data).mean(dim=1)
    if rate != SAMPLE_RATE:
        audio = torchaudio.functional.resample(audio, rate, SAMPLE_RATE)
    if audio.numel() < WIN_LENGTH:
        raise DataError(f"{path}: too short ({audio.numel()} samples at 16 kHz; at least "
                        f"{WIN_LENGTH} needed)")
    if audio.abs().max() < 1e-4:
        raise DataError(f"{path}: audio is silent (peak below -80 dBFS)")
    return audio


def load_audio_file(path: str | Path, mean: torch.Tensor | None = None,
                    std: torch.Tensor | None = None) -> torch.Tensor:
    """Features ``(frames, 80)`` of a user's audio file for predict; normalised with the
    checkpoint's ``mean``/``std`` when given (they must be, to match training batches)."""
    features = log_mel(load_audio(path))
    return features if mean is None or std is None else (features - mean) / std
