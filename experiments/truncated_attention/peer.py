"""Stage ``pocketsphinx``: the peer recogniser (CMU Sphinx, HMM/GMM acoustic model trained on
real US English speech, with its bundled en-us trigram LM and dictionary) on the Asterisk
real-speech set.

Its hypotheses are normalised with the same :func:`tasks.asr.text.normalize` as the
references, and scored with the same torchmetrics WER/CER as our model. Decoding all prompts
is slow, so results are cached in the data cache keyed by the pocketsphinx version and the
number of prompts; ``python -m experiments.truncated_attention.peer [N]`` fills the cache
ahead of an experiment.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from typing import Any

from torchmetrics.text import CharErrorRate, WordErrorRate

from suite.data import atomic_write_bytes, cache_dir
from tasks.asr.data import load_asterisk
from tasks.asr.features import SAMPLE_RATE
from tasks.asr.text import normalize


def transcribe(audio: list[Any]) -> list[str]:
    """pocketsphinx hypotheses (normalised) for int16 16 kHz tensors."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    out = []
    for wave in audio:
        decoder.start_utt()
        decoder.process_raw(wave.numpy().tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        out.append(normalize(hyp.hypstr) if hyp is not None else "")
    return out


def score(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """``{"cer": ..., "wer": ...}`` with torchmetrics, corpus-level (errors / reference length)."""
    return {"cer": float(CharErrorRate()(hypotheses, references)),
            "wer": float(WordErrorRate()(hypotheses, references))}


def asterisk_results(limit: int | None = None) -> dict[str, Any]:
    """pocketsphinx on the first ``limit`` (default all) Asterisk prompts: metrics, decode
    seconds, audio seconds and the hypotheses; computed once per version and cached."""
    real = load_asterisk()
    n = len(real["texts"]) if limit is None else min(limit, len(real["texts"]))
    path = cache_dir() / "asr" / f"pocketsphinx-{version('pocketsphinx')}-n{n}.json"
    if path.is_file():
        return json.loads(path.read_text())
    start = time.perf_counter()
    hypotheses = transcribe(real["audio"][:n])
    result = {"utterances": n, "seconds": round(time.perf_counter() - start, 1),
              "audio_seconds": round(sum(len(a) for a in real["audio"][:n]) / SAMPLE_RATE, 1),
              "version": version("pocketsphinx"), **score(hypotheses, real["texts"][:n]),
              "hypotheses": hypotheses, "references": real["texts"][:n]}
    atomic_write_bytes(path, json.dumps(result, indent=1).encode())
    return result


def rows(limit: int | None = None) -> list[dict[str, Any]]:
    """The peer's row: CER and WER on the first ``limit`` (default all) Asterisk prompts."""
    peer = asterisk_results(limit)
    print(f"  pocketsphinx: cer {peer['cer']:.4f} wer {peer['wer']:.4f} "
          f"({peer['utterances']} prompts, {peer['seconds']} s)", flush=True)
    return [{"name": "pocketsphinx", "group": "peer", "head": "asr",
             "model": f"pocketsphinx-{peer['version']}", "dataset": "asterisk",
             "precision": None, "train_seconds": None,
             "metrics": {"test/cer_real": peer["cer"], "test/wer_real": peer["wer"],
                         "utterances": peer["utterances"], "decode_seconds": peer["seconds"],
                         "audio_seconds": peer["audio_seconds"]}}]


if __name__ == "__main__":
    done = asterisk_results(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(json.dumps({k: v for k, v in done.items() if k not in ("hypotheses", "references")}))
