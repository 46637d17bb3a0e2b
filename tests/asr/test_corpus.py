"""The ASR corpus plan and rendering: engine mix, held-out voices, the G.722 channel, short
prompts, and one neural utterance of each engine through the real post-processing.

Planning runs on stand-in sentences (no WordNet download); rendering needs sox, espeak-ng (the
Piper voice's phonemes) and the neural voices' packages, and skips where sox or espeak-ng is
missing.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from suite.errors import UsageError
from tasks.asr import corpus, prompts
from tasks.asr.channel import g722_round_trip
from tasks.asr.text import normalize
from tasks.asr.voices import pseudo_speakers

pytestmark = pytest.mark.usefixtures("data_cache")

DEBIAN_VOICES = ["espeak:en-us", "espeak:en-us+m3", "espeak:en-029", "espeak:en-029+f2",
                 "espeak:en-gb-scotland", "flite:kal16", "flite:awb", "flite:rms",
                 "festival:kal_diphone"]
VOICES = DEBIAN_VOICES + pseudo_speakers("piper") + pseudo_speakers("hibari")
EXCLUDED = {"goodbye", "please hold", "press one", "yes", "no", "x y"}
N = 2000


@pytest.fixture(scope="module")
def planned() -> list[corpus.Utterance]:
    """A 2000-utterance plan on stand-in sentences and voices (planning only)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus, "wordnet_examples", lambda: [
            f"The {i} cats of Mrs. Smith's house sat on mat number {i % 7}." for i in range(400)])
        patch.setattr(corpus, "english_voices", lambda: VOICES)
        return corpus.plan(N, seed=5, exclude=EXCLUDED)


def _shares(counts: Counter) -> dict[str, float]:
    return {key: count / sum(counts.values()) for key, count in counts.items()}


# ----------------------------------------------------------------------------- plan


def test_the_engine_mix_follows_the_weights(planned):
    shares = _shares(Counter(u.voice.split(":")[0] for u in planned))
    assert set(shares) == set(corpus.ENGINE_WEIGHTS)
    for engine, weight in corpus.ENGINE_WEIGHTS.items():
        assert shares[engine] == pytest.approx(weight, abs=0.035), engine
    used = {u.voice for u in planned}
    assert set(pseudo_speakers("piper")) <= used and set(pseudo_speakers("hibari")) <= used


def test_every_voice_id_the_corpus_offers_includes_the_neural_pseudo_speakers():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    offered = set(corpus.english_voices())
    assert set(pseudo_speakers("piper")) | set(pseudo_speakers("hibari")) <= offered
    assert set(corpus.HELD_OUT_SPEAKERS) <= offered


def test_held_out_pseudo_speakers_are_exact_ids():
    assert corpus.is_held_out("piper:joe+p-2-s0.9") and corpus.is_held_out("hibari:heart+p2-s1.1")
    assert not corpus.is_held_out("piper:joe") and not corpus.is_held_out("hibari:heart")
    assert not corpus.is_held_out("piper:joe+p-2-s1.1")
    assert corpus.is_held_out("espeak:en-029+f2") and corpus.is_held_out("flite:awb")
    assert not corpus.is_held_out("espeak:en-us")
    held = [v for v in VOICES if corpus.is_held_out(v)]
    for engine in ("piper", "hibari"):  # one or two of each grid, never the whole grid
        assert 1 <= sum(v.startswith(f"{engine}:") for v in held) <= 2


def test_held_out_voices_are_only_in_the_test_split(planned):
    held = {u.voice for u in planned if u.split == "test"}
    assert {u.split for u in planned if corpus.is_held_out(u.voice)} == {"test"}
    assert held == {v for v in VOICES if corpus.is_held_out(v)}  # each one is tested
    trained = {u.voice for u in planned if u.split in ("train", "val")}
    assert not trained & held
    assert {"piper:joe", "hibari:heart"} <= trained


def test_a_share_of_utterances_goes_through_the_codec(planned):
    assert sum(u.codec for u in planned) / N == pytest.approx(corpus.CODEC_SHARE, abs=0.035)
    assert {u.codec for u in planned if u.voice.startswith("piper:")} == {True, False}


def test_short_prompt_kinds_make_about_a_fifth_to_a_quarter(planned):
    shares = _shares(Counter(u.kind for u in planned))
    assert set(shares) == set(prompts.KIND_WEIGHTS)
    assert 0.19 <= 1 - shares["sentence"] <= 0.27
    by_kind = {kind: [u.text for u in planned if u.kind == kind] for kind in shares}
    assert all(len(t.split()) == 1 for t in by_kind["word"])
    assert all(all(len(w) == 1 for w in t.split()) for t in by_kind["letters"])
    assert any(t.startswith("press ") for t in by_kind["command"])


def test_every_text_is_normalised_spoken_as_itself_and_not_a_test_transcript(planned):
    for u in planned:
        assert u.text and normalize(u.text) == u.text
        assert normalize(u.spoken) == u.text
    assert not {u.text for u in planned} & EXCLUDED


def test_the_plan_is_a_function_of_the_seed(monkeypatch):
    monkeypatch.setattr(corpus, "wordnet_examples", lambda: ["one sentence about cats"] * 5)
    monkeypatch.setattr(corpus, "english_voices", lambda: VOICES)
    first = corpus.plan(50, seed=1)
    assert first == corpus.plan(50, seed=1)
    assert first != corpus.plan(50, seed=2)


# ----------------------------------------------------------------------------- prompts


def test_spelled_letters_are_said_by_name():
    # "a" on its own would be read as the article; "A," is read as the letter by every engine
    assert prompts.spoken_form("letters", "x a y") == "X, A, Y"
    assert prompts.spoken_form("word", "apple") == "apple"
    text = prompts.spelled_letters(random.Random(0))
    assert normalize(prompts.spoken_form("letters", text)) == text


def test_isolated_words_are_the_sentences_word_types():
    words = prompts.lemma_like_words(["the cat sat", "the dog's bone a"])
    assert words == ["bone", "cat", "sat", "the"]


def test_an_unknown_short_kind_is_a_usage_error():
    with pytest.raises(UsageError, match="short text kind 'poem'"):
        prompts.short_text("poem", random.Random(0), ["cat"])


# ----------------------------------------------------------------------------- rendering


def _utterance(voice: str, **settings) -> corpus.Utterance:
    base = dict(index=7, text="x a y", voice=voice, split="train", kind="letters", rate=1.1,
                pitch=120, speed=1.1, reverb=30, bandwidth=7000, snr_db=20.0, codec=False,
                seed=11)
    return corpus.Utterance(**{**base, **settings})


def test_synthesisers_are_handed_the_spoken_form_and_only_festival_gets_sox_tempo(
        monkeypatch, tmp_path):
    commands = []

    def run(cmd, **kwargs):
        commands.append(cmd)
        stdout = np.full(1600, 0.1, dtype=np.float32).tobytes()
        return subprocess.CompletedProcess(cmd, 0, stdout=stdout, stderr=b"")

    monkeypatch.setattr(corpus, "_run", run)
    corpus._raw_render(_utterance("flite:kal16"), tmp_path)
    corpus._raw_render(_utterance("espeak:en-us"), tmp_path)
    assert all("X, A, Y" in cmd for cmd in commands)
    for voice in ("festival:kal_diphone", "flite:kal16", "hibari:heart+p2-s0.9", "espeak:en-us"):
        corpus._post_process(_utterance(voice), tmp_path / "raw.wav")
    # the rate is applied once: by sox for festival, by each other engine's own length knob
    assert ["tempo" in cmd for cmd in commands[-4:]] == [True, False, False, False]


needs_tools = pytest.mark.skipif(
    shutil.which("sox") is None or shutil.which("espeak-ng") is None,
    reason="sox or espeak-ng not installed")


@needs_tools
@pytest.mark.parametrize("voice", ["piper:joe+p2-s1.1", "hibari:heart+p-2-s0.9"])
def test_a_neural_utterance_goes_through_the_real_post_processing(voice, tmp_path):
    plain = _utterance(voice, text="press four to leave a message", kind="command")
    raw = corpus._raw_render(plain, tmp_path)
    clean = corpus._post_process(plain, raw)
    coded = corpus._post_process(dataclasses.replace(plain, codec=True), raw)
    for audio in (clean, coded):
        assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
        assert 0.5 < audio.size / corpus.SAMPLE_RATE < 5.0
        assert np.abs(audio).max() <= corpus.PEAK + 1e-6
    assert np.abs(clean).max() == pytest.approx(corpus.PEAK, rel=1e-4)
    by_hand = g722_round_trip(clean)
    by_hand = by_hand * min(1.0, corpus.PEAK / np.abs(by_hand).max())
    np.testing.assert_allclose(coded, by_hand, atol=1e-6)
    assert not np.allclose(coded, clean, atol=1e-3)


@needs_tools
def test_a_rendered_chunk_is_16khz_flac_and_the_same_plan_gives_the_same_bytes(tmp_path):
    utterance = _utterance("piper:joe+p-2-s1.1", text="please hold", kind="command", codec=True)
    outputs = []
    for name in ("first", "second"):
        (tmp_path / name / "audio").mkdir(parents=True)
        [row] = corpus._render_chunk([utterance], tmp_path / name)
        outputs.append((tmp_path / name / row["path"]).read_bytes())
    audio, rate = sf.read(tmp_path / "first" / row["path"], dtype="float32")
    assert rate == 16_000 and np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert row["codec"] is True and row["kind"] == "command" and row["voice"] == utterance.voice
    assert row["duration"] == pytest.approx(audio.size / rate, abs=1e-3)
    assert outputs[0] == outputs[1]


def test_a_corpus_of_an_older_version_is_rendered_again(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    (root / "manifest.jsonl").write_text("")
    (root / "features.pt").write_text("stale")
    (root / "build.json").write_text(json.dumps({"seed": 0, "n_utterances": 0}))
    monkeypatch.setattr(corpus, "missing_tools", lambda: [])
    monkeypatch.setattr(corpus, "plan", lambda *args: [])
    manifest = corpus.build_corpus(root, 0, seed=0, workers=1)
    assert json.loads((root / "build.json").read_text())["version"] == corpus.CORPUS_VERSION
    assert not (root / "features.pt").exists() and manifest.read_text() == ""
    stamp = manifest.stat().st_mtime_ns
    assert corpus.build_corpus(root, 0, seed=0, workers=1) == manifest
    assert manifest.stat().st_mtime_ns == stamp  # current: kept
