"""The TTS head's corpus: one voice (flite ``slt``) reading WordNet example sentences.

Texts are the example sentences the ASR corpus uses (:func:`tasks.asr.corpus.wordnet_examples`),
normalised by :func:`tasks.asr.text.normalize` so the audio says exactly the text. One flite
call per utterance (``flite -voice slt -psdur``) renders the audio *and* prints every phone with
its end time: the true alignment, against which the model's attention is scored.

Input units (:func:`vocabulary`): flite's phones (``pau`` pauses kept) or, as an ablation, the
normalised text's characters; ``PAD`` and ``EOS`` come first, and every sequence ends with EOS.

:func:`plan` draws everything from the seed (held-out sentences first, so none can reach
training), and :func:`render` is deterministic per utterance, so a corpus is identical however
its rendering is spread over processes.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from suite.errors import DataError, UsageError
from tasks.asr.features import N_MELS, SAMPLE_RATE, log_mel
from tasks.asr.text import VOCAB as ASR_VOCAB
from tasks.asr.text import normalize

VOICE = "slt"
PAD = 0
EOS = 1
SPECIALS = ("<pad>", "<eos>")
PHONES: tuple[str, ...] = (
    "pau", "aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "b", "ch", "d", "dh", "dx", "eh",
    "el", "em", "en", "er", "ey", "f", "g", "hh", "hv", "ih", "ix", "iy", "jh", "k", "l", "m",
    "n", "nx", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v", "w", "y", "z",
    "zh", "h#", "brth")
"""The CMU US phone set flite's English voices use (``pau`` = pause)."""
CHARS: tuple[str, ...] = tuple(ASR_VOCAB[1:])
"""Every character :func:`normalize` can produce: space, apostrophe, a-z."""
UNITS = ("phones", "chars")

FRAMES_PER_SECOND = 100  # the log-mel hop is 10 ms
MAX_WORDS = 20
"""Training candidates are picked by word count, a proxy for the 10 s limit enforced after
rendering (:data:`MAX_TRAIN_SECONDS`)."""
MAX_TRAIN_SECONDS = 10.0
LONG_SECONDS = (10.0, 20.0)
LONG_SENTENCES = (3, 5)
LONG_MIN_WORDS = 5
"""Long items join sentences of at least this many words, so most land in :data:`LONG_SECONDS`."""
LONG_CANDIDATES = 3
"""Long items planned per one kept: those outside :data:`LONG_SECONDS` once rendered are dropped
(their sentences stay held out)."""
TRAIN_MARGIN = 0.02
"""Extra training candidates rendered to make up for those over :data:`MAX_TRAIN_SECONDS`."""


# ----------------------------------------------------------------------------- units


def vocabulary(units: str) -> list[str]:
    """Token names of ``units`` (``"phones"`` or ``"chars"``): PAD, EOS, then the units."""
    if units not in UNITS:
        raise UsageError(f"unknown TTS input units {units!r}; expected one of: {', '.join(UNITS)}")
    return [*SPECIALS, *(PHONES if units == "phones" else CHARS)]


_PHONE_ID = {p: i for i, p in enumerate(vocabulary("phones"))}
_CHAR_ID = {c: i for i, c in enumerate(vocabulary("chars"))}


def require_flite() -> None:
    """Raise :class:`DataError` when the ``flite`` program is not installed."""
    if shutil.which("flite") is None:
        raise DataError("flite not found: install the Debian package `flite` "
                        "(apt-get install flite)")


def speakable(text: str) -> str:
    """Normalise each sentence and join them with ". ", so flite still pauses between them."""
    parts = (normalize(s) for s in re.split(r"(?<=[.!?;:])\s+", text))
    return ". ".join(p for p in parts if p)


def _flite(args: list[str]) -> str:
    require_flite()
    proc = subprocess.run(["flite", "-voice", VOICE, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()[-1:]
        raise DataError(f"flite failed ({proc.returncode}): {err}")
    return proc.stdout


def _check_phone(phone: str) -> str:
    if phone not in _PHONE_ID:
        raise DataError(f"flite gave the phone {phone!r}, which is not in PHONES "
                        f"(expected one of: {' '.join(PHONES)})")
    return phone


def phonemize(text: str) -> list[str]:
    """flite's phone sequence for ``text`` (``flite -ps``), pauses included; no audio made."""
    spoken = speakable(text)
    if not spoken:
        raise UsageError(f"cannot phonemize {text!r}: empty text after normalisation "
                         "(expected words to speak)")
    return [_check_phone(p) for p in _flite(["-ps", "-t", spoken, "-o", "none"]).split()]


def parse_psdur(output: str) -> list[tuple[str, float]]:
    """``flite -psdur`` output (``pau:0.184 dh:0.236 ...``) -> [(phone, end time in s)]."""
    pairs = []
    for token in output.split():
        phone, sep, end = token.partition(":")
        try:
            seconds = float(end)
        except ValueError:
            seconds = math.nan
        if not sep or not math.isfinite(seconds):
            raise DataError(f"flite -psdur: malformed item {token!r} (expected phone:seconds)")
        pairs.append((_check_phone(phone), seconds))
    if not pairs:
        raise DataError("flite -psdur printed no phones")
    return pairs


def end_frames(ends: Sequence[float], n_frames: int) -> list[int]:
    """Phone end times (s) -> exclusive end frames: rounded to the 10 ms hop, clipped to the
    ``n_frames`` the audio has, and never decreasing."""
    out, last = [], 0
    for seconds in ends:
        last = max(last, min(n_frames, round(seconds * FRAMES_PER_SECOND)))
        out.append(last)
    return out


def ids(units: str, symbols: Iterable[str]) -> torch.Tensor:
    """Token ids of phone names or characters, EOS appended: ``(tokens,)`` long."""
    table = _PHONE_ID if units == "phones" else _CHAR_ID
    return torch.tensor([*(table[s] for s in symbols), EOS], dtype=torch.long)


SILENT = ("pau", " ")
"""Units that are not sounds: a pause, a word space. Reading them is optional, so an attention
that never rests on one has not skipped anything (:func:`tasks.tts.alignment.attention_errors`)."""


def silent_ids(units: str) -> frozenset[int]:
    """Token ids of ``units`` that are :data:`SILENT`."""
    return frozenset(i for i, name in enumerate(vocabulary(units)) if name in SILENT)


def encode(units: str, text: str) -> torch.Tensor:
    """A user's text -> token ids ``(tokens,)``, as training saw it: phones from flite, or the
    normalised characters; EOS appended."""
    vocabulary(units)
    if units == "phones":
        return ids(units, phonemize(text))
    chars = normalize(text)
    if not chars:
        raise UsageError(f"cannot encode {text!r}: empty text after normalisation "
                         "(expected words to speak)")
    return ids(units, chars)


# ----------------------------------------------------------------------------- planning


def sentences() -> list[str]:
    """The normalised WordNet example sentences, empty and duplicate ones dropped."""
    # imported here: it pulls in Lightning, which render workers, spawned, would import too
    from tasks.asr import corpus as asr_corpus

    return list(dict.fromkeys(s for s in map(normalize, asr_corpus.wordnet_examples()) if s))


@dataclass(frozen=True)
class Item:
    """One planned utterance: ``role`` is ``train`` (a training or validation candidate),
    ``short`` or ``long`` (held out)."""

    index: int
    text: str
    role: str


def plan(pool: Sequence[str], n_train: int, seed: int, n_short: int, n_long: int) -> list[Item]:
    """Shuffle ``pool`` from ``seed`` and take, in this order, the short test sentences, the
    long candidates (3-5 sentences joined with ". "), then ``n_train`` training candidates
    plus a margin. Each sentence is used once, so held-out text never reaches training."""
    rng = random.Random(seed)
    order = list(pool)
    rng.shuffle(order)
    fits = [s for s in order if len(s.split()) <= MAX_WORDS]
    short = fits[:n_short]
    used = set(short)
    items = [Item(i, s, "short") for i, s in enumerate(short)]
    rest = iter([s for s in fits if s not in used and len(s.split()) >= LONG_MIN_WORDS])
    starved = False  # the pool ran out in the middle of the long items
    for _ in range(n_long * LONG_CANDIDATES):
        parts = [s for _, s in zip(range(rng.randint(*LONG_SENTENCES)), rest, strict=False)]
        used.update(parts)
        starved |= len(parts) < LONG_SENTENCES[0]
        items.append(Item(len(items), ". ".join(parts), "long"))
    wanted = n_train + math.ceil(n_train * TRAIN_MARGIN) + 4
    train = [s for s in fits if s not in used][:wanted]
    if len(train) < n_train or len(short) < n_short or starved:
        raise DataError(f"only {len(pool)} sentences: too few for {n_train} training and "
                        f"{n_short} + {n_long} held-out utterances")
    return items + [Item(len(items) + i, s, "train") for i, s in enumerate(train)]


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Rendered:
    """An utterance as flite spoke it: log-mel ``(frames, 80)`` in float16, its phones and
    their exclusive end frames, and its duration."""

    index: int
    seconds: float
    mel: np.ndarray
    phones: list[str]
    ends: list[int]


def render(item: Item, wav: Path) -> Rendered:
    """Speak ``item`` into ``wav`` with one flite call and read back audio and alignment."""
    pairs = parse_psdur(_flite(["-psdur", "-t", item.text, "-o", str(wav)]))
    audio, rate = sf.read(wav, dtype="float32")
    if rate != SAMPLE_RATE or audio.ndim != 1 or len(audio) == 0:
        raise DataError(f"{wav}: flite gave {rate} Hz audio of shape {audio.shape} "
                        f"(expected mono {SAMPLE_RATE} Hz)")
    mel = log_mel(torch.from_numpy(audio))  # (frames, 80)
    return Rendered(item.index, len(audio) / SAMPLE_RATE, mel.half().numpy(),
                    [p for p, _ in pairs], end_frames([t for _, t in pairs], len(mel)))


def _render_chunk(items: list[Item], wav_dir: Path) -> list[Rendered]:
    """Render ``items``; held-out items' WAVs stay in ``wav_dir`` as ``NNNNNN.wav``."""
    torch.set_num_threads(1)  # one process per core already
    out = []
    with tempfile.TemporaryDirectory(prefix="tts-render-") as tmp:
        for item in items:
            keep = item.role != "train"
            wav = wav_dir / f"{item.index:06d}.wav" if keep else Path(tmp) / "utt.wav"
            out.append(render(item, wav))
    return out


def render_all(items: list[Item], wav_dir: Path, workers: int, chunk: int = 32
               ) -> dict[int, Rendered]:
    """Render every item over ``workers`` processes with a progress bar; by item index."""
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    done: dict[int, Rendered] = {}
    with tqdm(total=len(items), desc=f"rendering the TTS corpus (flite {VOICE})", unit="utt",
              file=sys.stderr, mininterval=1.0, dynamic_ncols=True) as bar:
        if workers <= 1:
            for part in chunks:
                done.update((r.index, r) for r in _render_chunk(part, wav_dir))
                bar.update(len(part))
            return done
        # spawn, not fork: a forked child of a process whose torch thread pool has run can
        # deadlock in it.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_render_chunk, part, wav_dir): len(part) for part in chunks}
            for future in as_completed(futures):
                done.update((r.index, r) for r in future.result())
                bar.update(futures[future])
    return done


def _select(items: list[Item], rendered: dict[int, Rendered], n_train: int, val_size: int,
            n_long: int) -> list[tuple[Item, str]]:
    """Each kept item with its split: candidates over the length limits are dropped; the
    first ``val_size`` training candidates are validation, the next ``n_train`` training."""
    seconds = {i: r.seconds for i, r in rendered.items()}
    short = [(it, "short") for it in items if it.role == "short"]
    long = [(it, "long") for it in items if it.role == "long"
            and LONG_SECONDS[0] <= seconds[it.index] <= LONG_SECONDS[1]][:n_long]
    if len(long) < n_long:
        raise DataError(f"only {len(long)} long items of {LONG_SECONDS[0]:g}-"
                        f"{LONG_SECONDS[1]:g} s rendered; {n_long} needed")
    fit = [it for it in items if it.role == "train" and seconds[it.index] <= MAX_TRAIN_SECONDS]
    if len(fit) < val_size + n_train:
        raise DataError(f"only {len(fit)} training candidates of at most "
                        f"{MAX_TRAIN_SECONDS:g} s; {val_size} + {n_train} needed")
    val = [(it, "val") for it in fit[:val_size]]
    train = [(it, "train") for it in fit[val_size:val_size + n_train]]
    return train + val + short + long


def build(target: Path, wav_dir: Path, pool: Sequence[str], corpus_size: int, seed: int,
          val_size: int, n_short: int, n_long: int, workers: int) -> None:
    """Render a corpus of ``pool``'s sentences and save it to ``target``; the held-out items'
    flite WAVs go to ``wav_dir`` as ``short-NNN.wav`` and ``long-NNN.wav``, recorded by name.

    ``target`` holds the texts, splits, stable utterance ids, phones and their end frames
    (packed), log-mels (float16, packed with offsets) and per-bin training-set statistics.
    """
    require_flite()
    items = plan(pool, val_size + corpus_size, seed, n_short, n_long)
    rendered = render_all(items, wav_dir, workers)
    kept = _select(items, rendered, corpus_size, val_size, n_long)
    counters = {"short": 0, "long": 0}
    wavs = {}
    for item, split in kept:
        if split in counters:
            name = f"{split}-{counters[split]:03d}.wav"
            counters[split] += 1
            (wav_dir / f"{item.index:06d}.wav").rename(wav_dir / name)
            wavs[item.index] = name
    for dropped in wav_dir.glob("[0-9]*.wav"):  # long candidates out of range
        dropped.unlink()
    mels = [torch.from_numpy(rendered[it.index].mel) for it, _ in kept]  # (frames, 80) each
    total = torch.zeros(N_MELS, dtype=torch.float64)
    squares, count = torch.zeros(N_MELS, dtype=torch.float64), 0
    for mel, (_, split) in zip(mels, kept, strict=True):
        if split == "train":  # per utterance: a float64 copy of all frames would be large
            total += mel.sum(0, dtype=torch.float64)
            squares += mel.double().pow(2).sum(0)
            count += len(mel)
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp_min(1e-6).sqrt()
    ends = [torch.tensor(rendered[it.index].ends, dtype=torch.long) for it, _ in kept]
    torch.save({
        "texts": [it.text for it, _ in kept], "splits": [s for _, s in kept],
        "ids": torch.tensor([it.index for it, _ in kept]),
        "phones": [" ".join(rendered[it.index].phones) for it, _ in kept],
        "wavs": [wavs.get(it.index, "") for it, _ in kept],
        "ends": torch.cat(ends), "end_offsets": _offsets(ends),
        "mel": torch.cat(mels), "mel_offsets": _offsets(mels),
        "mean": mean.float(), "std": std.float(),
    }, target)


def _offsets(parts: list[torch.Tensor]) -> torch.Tensor:
    """Start of each part in their concatenation, and the total: ``(parts + 1,)``."""
    lengths = torch.tensor([len(p) for p in parts], dtype=torch.long)
    return torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
