"""ASR data layer: framing, text normalisation, corpus synthesis, user-file errors, batching.

Everything runs offline on files made here; the corpus test renders a handful of utterances
with the Debian synthesisers (installed by the Makefile) into a temporary cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from tqdm import tqdm

from suite import cache
from suite.data import RemoteFile
from suite.errors import DataError, UsageError
from tasks.asr import corpus, data
from tasks.asr import features as af
from tasks.asr.text import VOCAB, decode, encode, normalize, number_to_words, ordinal_words
from tasks.asr.units import train_units

pytestmark = pytest.mark.usefixtures("data_cache")


def _tone(seconds: float, rate: int = 16_000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


# ----------------------------------------------------------------------------- features


@pytest.mark.parametrize("samples", [400, 16_000, 16_159, 16_160, 48_321])
def test_log_mel_frames_are_25ms_windows_every_10ms(samples):
    features = af.log_mel(torch.randn(samples))
    assert features.shape == (1 + samples // 160, 80)
    assert af.num_frames(samples) == features.shape[0]
    assert (af.WIN_LENGTH, af.HOP_LENGTH) == (400, 160)  # 25 ms and 10 ms at 16 kHz
    assert torch.isfinite(features).all()


def test_load_audio_file_resamples_44k_stereo(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, _tone(1.5, rate=44_100, channels=2), 44_100)
    audio = af.load_audio(path)
    assert abs(audio.numel() - 24_000) <= 1
    spectrum = torch.fft.rfft(audio).abs()
    assert abs(int(spectrum.argmax()) * 16_000 / audio.numel() - 440) < 2  # pitch survives
    features = af.load_audio_file(path)
    assert features.shape == (af.num_frames(audio.numel()), 80)
    mean, std = features.mean(0), features.std(0) + 1e-3
    normalised = af.load_audio_file(path, mean, std)
    assert normalised.mean().abs() < 1e-3


@pytest.mark.parametrize("name,content,message", [
    ("empty.wav", b"", "empty file"),
    ("notes.wav", b"this is a text file, not audio\n" * 20, "not a readable audio file"),
])
def test_load_audio_file_rejects_non_audio(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        af.load_audio_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_audio_file_rejects_silent_truncated_short_missing(tmp_path):
    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(16_000, dtype=np.float32), 16_000)
    with pytest.raises(DataError, match="silent"):
        af.load_audio_file(silent)
    full = tmp_path / "full.wav"
    sf.write(full, _tone(1.0), 16_000, subtype="PCM_16")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(full.read_bytes()[:10_000])
    with pytest.raises(DataError, match="truncated"):
        af.load_audio_file(truncated)
    flac = tmp_path / "full.flac"
    sf.write(flac, np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32), 16_000)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated|not a readable"):
        af.load_audio_file(cut)
    short = tmp_path / "short.wav"
    sf.write(short, _tone(0.01), 16_000)
    with pytest.raises(DataError, match="too short"):
        af.load_audio_file(short)
    with pytest.raises(DataError, match="no such file"):
        af.load_audio_file(tmp_path / "absent.wav")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_load_audio_file_rejects_non_finite_samples(tmp_path, value, subtype):
    audio = _tone(1.0)
    audio[100:103] = value
    path = tmp_path / "bad.wav"
    sf.write(path, audio, 16_000, subtype=subtype)
    with pytest.raises(DataError, match="3 of 16000 samples are NaN or infinite") as err:
        af.load_audio_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize("raw,spoken", [
    ("42", "forty two"),
    ("3.5", "three point five"),
    ("It rose 50% in 1990.", "it rose fifty percent in nineteen ninety"),
    ("Press # to enter, * to cancel", "press pound to enter star to cancel"),
    ("dial 500 or extension 1234", "dial five zero zero or extension one two three four"),
    ("call 555-1234", "call five five five one two three four"),
    ("a 28.8 kilobit modem", "a twenty eight point eight kilobit modem"),
    ("3D audio", "three d audio"),
    ("visit www.asterisk.org.", "visit w w w dot asterisk dot org"),
    ("the PBX, 7 A.M.", "the p b x seven a m"),
    ("It costs $3.50 & more", "it costs three dollars and fifty cents and more"),
    ("the 21st of 1,000,000", "the twenty first of one million"),
    ("I'm sorry, that's \u201cnot\u201d valid!", "i'm sorry that's not valid"),
    ("'quoted' re-record", "quoted re record"),
])
def test_normalize(raw, spoken):
    assert normalize(raw) == spoken
    assert set(normalize(raw)) <= set(VOCAB[1:])


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(1_000_017) == "one million seventeen"
    assert number_to_words(2375) == "two thousand three hundred seventy five"
    assert [ordinal_words(n) for n in (1, 12, 40, 103)] == [
        "first", "twelfth", "fortieth", "one hundred third"]


def test_vocab_has_blank_first_and_round_trips():
    assert VOCAB[0] == "_" and len(VOCAB) == len(set(VOCAB)) == 29
    ids = encode("don't stop")
    assert ids.dtype == torch.long and (ids > 0).all()
    assert decode(ids) == "don't stop"
    with pytest.raises(ValueError, match="normalize"):
        encode("Hello!")


def test_asterisk_transcript_parsing():
    raw = ("; header\n\nsilence/1: (1 second of silence)\nbeep: [this is a simple beep tone]\n"
           "letters/at: at [@]\nconfbridge-join: <beep ascending>\n"
           "spy-iax2: IAX (note: does not say \"2\")\nspy-h323: H.323\n"
           "demo: dial 1234 then press #.\n")
    assert data.parse_asterisk_transcripts(raw) == {
        "letters/at": "at", "spy-iax2": "i a x", "spy-h323": "h three two three",
        "demo": "dial one two three four then press pound"}


# ----------------------------------------------------------------------------- corpus


def test_plan_is_seeded_and_excludes_test_transcripts(monkeypatch):
    sentences = [f"sentence number {i} about cats" for i in range(50)] + ["press one"] * 50
    monkeypatch.setattr(corpus, "wordnet_examples", lambda: sentences)
    monkeypatch.setattr(corpus, "english_voices", lambda: [
        "espeak:en-us", "espeak:en-029+m1", "flite:awb", "flite:rms", "festival:kal_diphone"])
    first = corpus.plan(60, seed=3, exclude={"press one"})
    assert first == corpus.plan(60, seed=3, exclude={"press one"})
    assert first != corpus.plan(60, seed=4, exclude={"press one"})
    assert all(u.text != "press one" for u in first)
    assert {u.split for u in first if corpus.is_held_out(u.voice)} == {"test"}
    assert {u.split for u in first if not corpus.is_held_out(u.voice)} <= {"train", "val"}
    assert all(set(u.text) <= set(VOCAB[1:]) for u in first)
    digits = {number_to_words(i) for i in range(10)}
    assert any(set(u.text.split()) <= digits for u in first)  # some digit strings


def test_english_voices_cover_every_engine():
    if corpus.missing_tools():
        pytest.skip(f"synthesisers not installed: {corpus.missing_tools()}")
    voices = corpus.english_voices()
    assert {v.split(":")[0] for v in voices} == {"espeak", "flite", "festival", "piper", "hibari"}
    assert {"flite:kal16", "flite:awb", "flite:rms", "flite:slt"} <= set(voices)
    assert {f"espeak:{a}" for a in corpus.ESPEAK_ACCENTS} <= set(voices)
    assert len(voices) > 100  # accents x variants


@pytest.fixture
def tiny_wordnet(tmp_path, monkeypatch):
    """A stand-in for the WordNet data files, so the corpus test needs no package download."""
    line = ('00001 03 n 01 thing 0 000 | a gloss; "the cat sat on the mat"; '
            '"she paid 42 dollars"  \n')
    path = tmp_path / "data.noun"
    path.write_text("  1 licence header\n" + line)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    fake = RemoteFile("asr/wordnet/data.noun", digest, ())
    monkeypatch.setattr(corpus, "WORDNET_FILES", (fake,))
    fake.local.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, fake.local)


def test_build_corpus_is_atomic_idempotent_and_valid(tmp_path, tiny_wordnet, monkeypatch):
    if corpus.missing_tools():
        pytest.skip(f"synthesisers not installed: {corpus.missing_tools()}")
    voices = ["espeak:en-us+f2", "espeak:en-029", "flite:kal16", "festival:kal_diphone"]
    monkeypatch.setattr(corpus, "english_voices", lambda: voices)
    root = tmp_path / "corpus"
    manifest = corpus.build_corpus(root, n_utterances=6, seed=0)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 6 and not list(tmp_path.glob(".corpus*"))
    for row in rows:
        audio, rate = sf.read(root / row["path"])
        assert rate == 16_000 and audio.ndim == 1
        assert math.isclose(len(audio) / rate, row["duration"], abs_tol=1e-3)
        assert 0.3 < row["duration"] < 20 and np.abs(audio).max() > 0.1
        assert row["voice"] in voices and row["split"] in {"train", "val", "test"}
        assert set(row["text"]) <= set(VOCAB[1:])
    assert {r["text"] for r in rows} & {"the cat sat on the mat", "she paid forty two dollars"}
    stamp = manifest.stat().st_mtime_ns
    assert corpus.build_corpus(root, n_utterances=6, seed=0) == manifest
    assert manifest.stat().st_mtime_ns == stamp  # already built: untouched
    again = corpus.build_corpus(tmp_path / "again", n_utterances=6, seed=0, workers=1)
    for row in rows:  # same seed: identical bytes (noise comes from per-utterance seeds)
        assert (root / row["path"]).read_bytes() == (again.parent / row["path"]).read_bytes()


def test_corpus_synthesis_shows_progress(tmp_path, tiny_wordnet, monkeypatch, capsys):
    if corpus.missing_tools():
        pytest.skip(f"synthesisers not installed: {corpus.missing_tools()}")
    monkeypatch.setattr(corpus, "english_voices", lambda: ["espeak:en-us", "flite:kal16"])
    corpus.build_corpus(tmp_path / "serial", n_utterances=3, seed=0, workers=1)
    assert "synthesising the ASR corpus" in capsys.readouterr().err
    utterances = corpus.plan(4, seed=0)
    (tmp_path / "pool" / "audio").mkdir(parents=True)
    out = io.StringIO()
    with tqdm(total=4, file=out) as bar:  # pool workers report each utterance as it is done
        chunks = corpus._render_pool([utterances[:2], utterances[2:]], tmp_path / "pool", 2, bar)
        assert bar.n == 4
    assert [len(c) for c in chunks] == [2, 2] and "4/4" in out.getvalue()


# ----------------------------------------------------------------------------- batching


def _packed(lengths: list[int]) -> dict:
    features = [torch.full((n, 80), float(i)) for i, n in enumerate(lengths)]
    return data._pack(features)


def test_frame_budget_sampler_buckets_by_length():
    lengths = [50, 400, 60, 390, 55, 1500, 70]
    sampler = data.FrameBudgetSampler(lengths, max_frames=800, shuffle=True, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 800
    assert [5] in batches  # longer than the budget: a batch of its own
    sampler.set_epoch(0)
    assert list(sampler) == batches


def test_dataset_batches_are_normalised_and_padded():
    packed = _packed([30, 50])
    texts = ["hello", "a cat"]
    mean, std = torch.full((80,), 0.5), torch.full((80,), 2.0)
    dataset = data.FeatureDataset(packed, texts, [0, 1], mean, std)
    batch = data.collate([dataset[0], dataset[1]])
    assert batch["features"].shape == (2, 50, 80) and batch["features"].dtype == torch.float32
    assert batch["feature_lengths"].tolist() == [30, 50]
    assert torch.allclose(batch["features"][1, :50], torch.full((50, 80), 0.25))
    assert batch["targets"].shape == (2, 5) and batch["target_lengths"].tolist() == [5, 5]
    assert decode(batch["targets"][0]) == "hello" and batch["texts"] == texts
    augmented = data.FeatureDataset(packed, texts, [1], mean, std, data.spec_augment_masks())
    torch.manual_seed(0)
    masked = augmented[0][0]
    assert masked.shape == (50, 80) and (masked == 0).any()


def test_spec_augment_policy_sets_mask_count_and_width():
    policy = data.spec_augment_masks(freq_masks=1, freq_width=15, time_masks=3, time_width=25)
    kinds = [type(m).__name__ for m in policy]
    assert kinds == ["FrequencyMasking"] + ["TimeMasking"] * 3
    assert policy[0].mask_param == 15 and policy[1].mask_param == 25
    for seed in range(20):
        torch.manual_seed(seed)
        masked = policy(torch.ones(80, 400))  # (mel, frames)
        assert (masked == 0).all(dim=1).sum() <= 15  # one band of at most 15 bins
        assert (masked == 0).all(dim=0).sum() <= 3 * 25  # three spans of at most 25 frames


def test_prepare_rejects_unknown_dataset_and_reports_availability():
    with pytest.raises(UsageError, match="unknown ASR data set"):
        data.prepare("librispeech")
    assert data.available() == {"synthetic": "missing", "asterisk": "missing"}


def test_damaged_corpus_features_are_not_read():
    """A truncated features.pt is corrupt, and reading it is one line naming the fix."""
    path = data.corpus_dir(8, 0) / "features.pt"
    path.parent.mkdir(parents=True)
    torch.save({"rows": [], **_packed([3, 4])}, path)
    cache.record(path, inputs=data.synthetic_inputs(8, 0))
    module = data.ASRDataModule(corpus_size=8, corpus_seed=0)
    assert module._load()["offsets"].tolist() == [0, 3, 7]
    path.write_bytes(path.read_bytes()[:200])
    assert cache.check(path, inputs=data.synthetic_inputs(8, 0)).state == "corrupt"
    with pytest.raises(DataError, match=r"features.pt: ASR corpus features .*sha256 .*"
                                        r"run `suite data prepare asr`"):
        data.ASRDataModule(corpus_size=8, corpus_seed=0)._load()
    assert cache.check(path, inputs=data.synthetic_inputs(8, 1)).state == "missing"


def test_datamodule_end_to_end_on_a_tiny_corpus(tiny_wordnet, monkeypatch):
    if corpus.missing_tools():
        pytest.skip(f"synthesisers not installed: {corpus.missing_tools()}")
    monkeypatch.setattr(corpus, "english_voices", lambda: ["espeak:en-us", "flite:kal16"])
    monkeypatch.setattr(data, "asterisk_transcripts", lambda: {"press one": "press one"})
    module = data.ASRDataModule(corpus_size=8, test_set="unseen_voices", max_frames=4000,
                                spec_augment=True, seed=1, corpus_seed=2)
    module.prepare_data()
    module.setup("fit")
    assert module.vocab == VOCAB
    assert module.feature_mean.shape == module.feature_std.shape == (80,)
    assert (module.feature_std > 0).all()
    batches = list(module.train_dataloader())
    assert batches and sum(len(b["texts"]) for b in batches) == len(module._split("train"))
    batch = batches[0]
    assert batch["features"].dtype == torch.float32 and batch["features"].shape[2] == 80
    assert batch["targets"].dtype == batch["target_lengths"].dtype == torch.long
    assert batch["feature_lengths"].max() == batch["features"].shape[1]
    assert len(module.test_dataloader()) == 1


def test_unseen_voice_test_set_is_capped_in_corpus_order():
    rows = [{"text": f"utterance {i}", "split": "test" if i % 2 else "train"} for i in range(10)]
    packed = data._pack([torch.zeros(5, 80) for _ in rows])
    module = data.ASRDataModule(max_test_utterances=3)
    module._synthetic = {"rows": rows, "mean": torch.zeros(80), "std": torch.ones(80), **packed}
    assert module._split("test").indices == [1, 3, 5]
    assert module._split("train").indices == [0, 2, 4, 6, 8]  # other splits are not capped
    module.max_test_utterances = None
    assert module._split("test").indices == [1, 3, 5, 7, 9]


def test_targets_are_encoded_in_the_units_the_model_hands_over():
    """Characters until the model's setup gives its word pieces, learned from
    :meth:`train_texts` (the training split only); then every split's targets are pieces."""
    rows = [{"text": t, "split": split} for t, split in (
        ("press one", "train"), ("the cat sat", "train"), ("dial zero", "val"),
        ("hold the line", "test"))]
    packed = data._pack([torch.zeros(20, 80) for _ in rows])
    module = data.ASRDataModule()
    module._synthetic = {"rows": rows, "mean": torch.zeros(80), "std": torch.ones(80), **packed}
    assert module.train_texts() == ["press one", "the cat sat"]
    assert module.vocab == VOCAB
    assert module._split("val")[0][1].tolist() == encode("dial zero").tolist()
    module.units = train_units("bpe-36", module.train_texts() * 3)
    assert module.vocab == module.units.symbols
    for split in ("train", "val", "test"):
        _, targets, text = module._split(split)[0]
        assert targets.tolist() == module.units.encode(text).tolist()
        assert module.units.decode(targets) == text
    batch = data.collate([module._split("train")[i] for i in range(2)])
    assert batch["target_lengths"].tolist() == [len(module.units.encode(t)) for t in
                                                batch["texts"]]
