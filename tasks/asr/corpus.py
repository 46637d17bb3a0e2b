"""Synthetic training corpus for the ASR head, rendered on this machine.

No transcribed speech corpus is reachable from an offline machine, so the training set is spoken by
every English voice the Debian synthesisers offer: espeak-ng (8 accents x all its variants,
with rate and pitch variety), flite (kal16, awb, rms, slt: native 16 kHz) and festival (kal,
ked diphones, the slt HTS voice). Each rendering is then speed-perturbed and sometimes
reverberated by sox, and noised in torch at a random SNR, so the model cannot lean on the clean,
exactly repeatable signal a synthesiser gives; some renderings are low-passed at telephone
bandwidths, like the real-speech test set (G.722, 7 kHz).

Text: example sentences of WordNet 3.0 (Debian ``wordnet-base``, WordNet 3.0 licence: free use
with the copyright notice kept), 1-3 joined per utterance, plus digit strings and numbers, all
written out as words by :func:`tasks.asr.text.normalize` before synthesis so the audio says
exactly the transcript. Texts equal (after normalisation) to a real-speech test transcript are
dropped. Whole voices are held out as the unseen-voice test split (:data:`HELD_OUT`).

Everything random is drawn up front in :func:`plan` from the seed, and each utterance's noise
from its own seeded generator, so a corpus is byte-identical however its rendering is spread
over processes.
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
from tasks.asr.text import digits_to_words, normalize

SAMPLE_RATE = 16_000
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
HELD_OUT = ("espeak:en-gb-scotland", "espeak:en-029", "flite:awb")
"""Voice-id prefixes whose utterances form the unseen-voice test split (never trained on)."""
ENGINE_WEIGHTS = {"espeak": 0.45, "flite": 0.35, "festival": 0.20}
VAL_FRACTION = 0.05
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
    voice: str  # "engine:name", e.g. "espeak:en-us+m3", "flite:rms"
    split: str
    rate: float  # speaking-rate factor (espeak -s, else sox tempo)
    pitch: int  # espeak -p 0-99, flite target f0 (Hz); unused by festival
    speed: float  # sox speed perturbation (rate and pitch together)
    reverb: int  # sox reverberance 0-100; 0 = dry
    bandwidth: int | None  # low-pass cut-off in Hz (wideband telephony is 7 kHz); None = full
    snr_db: float | None  # None = no added noise
    seed: int


def missing_tools() -> list[str]:
    """The synthesis programs absent from PATH (install the Debian packages to fix)."""
    return [t for t in ("espeak-ng", "flite", "festival", "sox") if shutil.which(t) is None]


def english_voices() -> list[str]:
    """Every English voice id the installed synthesisers offer (espeak variants discovered)."""
    proc = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True,
                          check=True)
    variants = sorted(re.findall(r"!v/(\S+)", proc.stdout))
    espeak = [f"espeak:{a}{'+' + v if v else ''}" for a in ESPEAK_ACCENTS for v in ["", *variants]]
    return (espeak + [f"flite:{v}" for v in FLITE_VOICES]
            + [f"festival:{v}" for v in FESTIVAL_VOICES])


def is_held_out(voice: str) -> bool:
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


def _number_text(rng: random.Random) -> str:
    """A digit string (phone number, PIN) read digit by digit, or a number read as words."""
    kind = rng.random()
    if kind < 0.6:
        return digits_to_words("".join(rng.choice("0123456789") for _ in range(rng.randint(3, 10))))
    if kind < 0.85:
        return normalize(str(rng.choice([rng.randint(0, 99), rng.randint(100, 9999),
                                         rng.randint(10_000, 10**7)])))
    return normalize(f"{rng.randint(0, 999)}.{rng.randint(0, 99)}")


def plan(n_utterances: int, seed: int, exclude: Iterable[str] = ()) -> list[Utterance]:
    """Draw texts, voices and augmentation settings for ``n_utterances`` from ``seed``."""
    rng = random.Random(seed)
    excluded = set(exclude)
    sentences = [s for s in (normalize(e) for e in wordnet_examples()) if s]
    rng.shuffle(sentences)
    voices = english_voices()
    by_engine = {e: [v for v in voices if v.startswith(e + ":")] for e in ENGINE_WEIGHTS}
    engines = [e for e in ENGINE_WEIGHTS if by_engine[e]]
    cursor, out = 0, []
    while len(out) < n_utterances:
        if rng.random() < 0.2:
            text = _number_text(rng)
        else:
            parts = rng.choices([1, 2, 3], weights=[0.5, 0.3, 0.2])[0]
            text = " ".join(sentences[(cursor + i) % len(sentences)] for i in range(parts))
            cursor += parts
        if text in excluded or not text:
            continue
        engine = rng.choices(engines, weights=[ENGINE_WEIGHTS[e] for e in engines])[0]
        voice = rng.choice(by_engine[engine])
        split = ("test" if is_held_out(voice)
                 else "val" if rng.random() < VAL_FRACTION else "train")
        pitch = rng.randint(25, 75) if engine == "espeak" else rng.randint(85, 160)
        out.append(Utterance(
            index=len(out), text=text, voice=voice, split=split,
            rate=round(rng.uniform(0.8, 1.25), 3), pitch=pitch,
            speed=rng.choice([0.9, 1.0, 1.1]),
            reverb=rng.choice([0, 0, 0, 30, 60, 90]),
            bandwidth=rng.choice([None, None, 7000, 7000, 5500]),
            snr_db=None if rng.random() < 0.2 else round(rng.uniform(5.0, 35.0), 2),
            seed=rng.randrange(2**62)))
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
        # Normalised text holds only a-z, apostrophe and space: safe inside a Scheme string.
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{u.text}")) '
                     f'"{paths[u.index]}" \'riff)')
    script = workdir / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    _run(["festival", "-b", str(script)])
    return paths


def _raw_render(u: Utterance, workdir: Path) -> Path:
    engine, name = u.voice.split(":", 1)
    path = workdir / f"raw-{u.index}.wav"
    if engine == "espeak":
        _run(["espeak-ng", "-v", name, "-s", str(round(165 * u.rate)), "-p", str(u.pitch),
              "-w", str(path), u.text])
    elif engine == "flite":
        _run(["flite", "-voice", name, "-t", u.text, "-o", str(path),
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


def _post_process(u: Utterance, raw: Path) -> np.ndarray:
    """sox: tempo (non-espeak), speed perturbation, reverb, band limit, 16 kHz mono; then
    noise in torch (sox's own noise repeats the same samples every run)."""
    effects = ["speed", str(u.speed)]
    if not u.voice.startswith("espeak:"):
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
    generator = torch.Generator().manual_seed(u.seed)
    if u.snr_db is not None:
        noise = _coloured_noise(audio.numel(), int(torch.randint(3, (), generator=generator)),
                                generator)
        signal_power = audio.pow(2).mean().clamp_min(1e-10)
        scale = torch.sqrt(signal_power / (noise.pow(2).mean() * 10 ** (u.snr_db / 10)))
        audio = audio + scale * noise
    peak = audio.abs().max().clamp_min(1e-6)
    return (audio * (0.9 / peak)).numpy()


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


def build_corpus(root: Path, n_utterances: int, seed: int, exclude: Iterable[str] = (),
                 workers: int = 2) -> Path:
    """Render the corpus into ``root`` (manifest.jsonl + audio/) unless it is already there.

    Built in a temporary sibling directory and renamed into place, so an interrupted build
    leaves nothing that looks finished. Returns the manifest path.
    """
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        return manifest
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
        meta = {"seed": seed, "n_utterances": n_utterances, "held_out": list(HELD_OUT)}
        (tmp / "build.json").write_text(json.dumps(meta, indent=1))
        with open(tmp / "manifest.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    return manifest
