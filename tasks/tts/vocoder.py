"""Griffin-Lim vocoder: log-mel back to a waveform, and writing it as a WAV.

The TTS model predicts the ASR head's features (``tasks.asr.features.log_mel``: natural log of
an 80-bin HTK mel *power* spectrogram, 25 ms windows every 10 ms at 16 kHz). Undoing them takes
two steps: the mel filterbank is inverted by least squares (``InverseMelScale``) to a linear
power spectrogram, and Griffin-Lim then finds a phase consistent with it by alternating
projections between the spectrogram and waveform domains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import Tensor

from suite.data import atomic_path
from suite.errors import DataError
from tasks.asr.features import HOP_LENGTH, N_MELS, SAMPLE_RATE, WIN_LENGTH

PEAK = 0.9
SILENCE = 1e-4  # -80 dBFS: below this the output is left as it is, never amplified
_LOG_FLOOR = 1e-6  # what log_mel adds before the log


class GriffinLimVocoder(torch.nn.Module):
    """``forward(log_mel (T, 80)) -> audio (samples,)`` float32, peak-normalised to 0.9.

    ``log_mel`` is un-normalised, as ``log_mel`` gives it. The inverse filterbank matches the
    ASR front end's ``MelSpectrogram`` (n_fft 400, hop 160, f_min 0, HTK scale, no filter
    normalisation, power 2). Griffin-Lim starts from zero phase (``rand_init=False``) rather
    than random phase, so the same mel always gives the same samples and two runs of
    ``predict`` write identical WAVs.
    """

    def __init__(self, n_iter: int = 32) -> None:
        super().__init__()
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=WIN_LENGTH // 2 + 1, n_mels=N_MELS, sample_rate=SAMPLE_RATE, f_min=0.0,
            norm=None, mel_scale="htk", driver="gelsd")
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=WIN_LENGTH, win_length=WIN_LENGTH, hop_length=HOP_LENGTH, power=2.0,
            n_iter=n_iter, rand_init=False)
        # The filterbank and window follow from the settings above: kept out of the state
        # dict, so a model holding a vocoder saves and loads the same checkpoint keys either way.
        self.inverse_mel.register_buffer("fb", self.inverse_mel.fb, persistent=False)
        self.griffin_lim.register_buffer("window", self.griffin_lim.window, persistent=False)

    def forward(self, log_mel: Tensor) -> Tensor:
        if log_mel.dim() != 2 or log_mel.shape[1] != N_MELS or log_mel.shape[0] == 0:
            raise DataError(f"vocoder: expected a log-mel of shape (frames, {N_MELS}), got "
                            f"{tuple(log_mel.shape)}")
        if not torch.isfinite(log_mel).all():
            raise DataError("vocoder: log-mel holds NaN or infinite values (expected finite)")
        with torch.no_grad():
            mel_power = (log_mel.float().exp() - _LOG_FLOOR).clamp(min=0).T  # (80, T)
            power = self.inverse_mel(mel_power)  # (201, T)
            audio = self.griffin_lim(power)  # (samples,)
        peak = audio.abs().max()
        return audio * (PEAK / peak) if peak > SILENCE else audio


def write_wav(path: str | Path, audio: Tensor, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono ``audio`` ``(samples,)`` in [-1, 1] as 16-bit PCM WAV, atomically (a reader
    sees no file or the whole file). Returns the path."""
    path = Path(path)
    samples = audio.detach().float().cpu().numpy()
    if samples.ndim != 1 or not np.isfinite(samples).all():
        raise DataError(f"{path}: expected finite mono audio (samples,), got shape "
                        f"{samples.shape}")
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return path
