"""TTS data layer: flite's phones and alignment, units, the held-out plan, the cached corpus
and its batches. Corpora are tiny (tests/tts/conftest.py) and rendered by the real flite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from suite import cache
from suite.errors import DataError, UsageError
from tasks.asr.text import normalize
from tasks.tts import corpus, data

FLITE_LINE = ("pau:0.184 dh:0.236 ax:0.270 k:0.388 ae:0.492 t:0.543 s:0.676 ae:0.779 t:0.826 "
              "pau:0.923 aa:1.065 n:1.138 dh:1.173 ax:1.204 m:1.335 ae:1.450 t:1.496 pau:1.641 \n")
"""What ``flite -voice slt -psdur -t "the cat sat. on the mat"`` prints."""

needs_flite = pytest.mark.skipif(shutil.which("flite") is None,
                                 reason="flite not installed (Debian package `flite`)")


# ----------------------------------------------------------------------------- units


def test_parse_psdur_reads_a_real_flite_line():
    pairs = corpus.parse_psdur(FLITE_LINE)
    assert pairs[:3] == [("pau", 0.184), ("dh", 0.236), ("ax", 0.270)]
    assert pairs[-1] == ("pau", 1.641) and len(pairs) == 18
    assert [p for p, _ in pairs].count("pau") == 3  # pauses kept, the sentence break included


@pytest.mark.parametrize("line,message", [
    ("pau:0.1 qq:0.2", "phone 'qq', which is not in PHONES"),
    ("pau:0.1 dh", "malformed item 'dh'"),
    ("pau:abc", "malformed item 'pau:abc'"),
    ("  \n", "printed no phones"),
])
def test_parse_psdur_rejects_bad_output_in_one_line(line, message):
    with pytest.raises(DataError, match=message) as err:
        corpus.parse_psdur(line)
    assert "\n" not in str(err.value)


def test_end_frames_round_clip_and_never_decrease():
    assert corpus.end_frames([0.184, 0.236, 0.2349, 1.641], n_frames=150) == [18, 24, 24, 150]
    assert corpus.end_frames([0.005, 0.0149], n_frames=10) == [0, 1]


def test_vocabularies_start_with_pad_and_eos():
    phones, chars = corpus.vocabulary("phones"), corpus.vocabulary("chars")
    assert phones[corpus.PAD] == chars[corpus.PAD] == "<pad>"
    assert phones[corpus.EOS] == chars[corpus.EOS] == "<eos>"
    assert phones[2:] == list(corpus.PHONES) and "pau" in phones
    assert len(set(corpus.PHONES)) == len(corpus.PHONES)
    assert set(normalize("It's 42, OK?")) <= set(chars[2:])
    with pytest.raises(UsageError, match="unknown TTS input units 'letters'"):
        corpus.vocabulary("letters")


@needs_flite
def test_encode_phones_round_trip_matches_flite_alignment():
    text = "The cat sat. On the mat!"
    tokens = corpus.encode("phones", text)
    names = [corpus.vocabulary("phones")[i] for i in tokens]
    assert names[-1] == "<eos>" and corpus.EOS not in tokens[:-1].tolist()
    assert names[:-1] == corpus.phonemize(text)
    # the same phones -psdur gives for the rendered audio, the pause between sentences kept
    assert names[:-1] == [p for p, _ in corpus.parse_psdur(FLITE_LINE)]


def test_encode_chars_round_trip():
    text = "Hello, World: 42 cats."
    tokens = corpus.encode("chars", text)
    vocab = corpus.vocabulary("chars")
    assert tokens.dtype == torch.long and tokens[-1] == corpus.EOS
    assert "".join(vocab[i] for i in tokens[:-1]) == normalize(text) == "hello world forty two cats"


@pytest.mark.parametrize("units", ["phones", "chars"])
@pytest.mark.parametrize("text", ["", "   ", "?!..."])
def test_empty_text_is_a_usage_error(units, text):
    with pytest.raises(UsageError, match="empty text") as err:
        corpus.encode(units, text)
    assert repr(text) in str(err.value) and "\n" not in str(err.value)


def test_missing_flite_says_to_install_the_debian_package(data_cache, tiny_sentences,
                                                         monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="install the Debian package `flite`"):
        corpus.phonemize("hello")
    with pytest.raises(DataError, match="install the Debian package `flite`"):
        data.prepare_corpus(corpus_size=12, val_size=4)
    assert not list(data_cache.rglob("*.pt")) and not list(data_cache.rglob("*.wav"))


# ----------------------------------------------------------------------------- plan


def _sentences_of(items):
    return {s for it in items for s in it.text.split(". ")}


def test_plan_holds_sentences_out_and_is_seeded():
    pool = [f"sentence {i} is about {i % 7} cats" for i in range(120)] + ["word " * 30]
    items = corpus.plan(pool, n_train=20, seed=3, n_short=5, n_long=2)
    assert items == corpus.plan(pool, n_train=20, seed=3, n_short=5, n_long=2)
    assert items != corpus.plan(pool, n_train=20, seed=4, n_short=5, n_long=2)
    by_role = {r: [it for it in items if it.role == r] for r in ("short", "long", "train")}
    assert len(by_role["short"]) == 5 and len(by_role["long"]) == 2 * corpus.LONG_CANDIDATES
    assert all(3 <= len(it.text.split(". ")) <= 5 for it in by_role["long"])
    held_out = _sentences_of(by_role["short"]) | _sentences_of(by_role["long"])
    assert not held_out & _sentences_of(by_role["train"])
    assert len(by_role["train"]) > 20  # a margin for candidates over 10 s
    assert all(len(it.text.split()) <= corpus.MAX_WORDS for it in by_role["train"])
    assert [it.index for it in items] == list(range(len(items)))
    with pytest.raises(DataError, match="too few"):
        corpus.plan(pool[:30], n_train=20, seed=3, n_short=5, n_long=2)


def test_bucket_sampler_groups_similar_lengths_and_is_seeded():
    lengths = [(i * 37) % 101 + 1 for i in range(200)]
    sampler = data.BucketSampler(lengths, batch_size=8, seed=5)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(200))
    assert len(first) == len(sampler) == 25
    padded = sum(len(b) * max(lengths[i] for i in b) for b in first)
    assert padded < 1.1 * sum(lengths)  # random batches would pad about half as much again
    second = list(sampler)
    assert second != first  # each epoch draws its own batches
    sampler.set_epoch(0)
    assert list(sampler) == first


# ----------------------------------------------------------------------------- corpus


@needs_flite
def test_corpus_splits_and_held_out_texts(tiny_corpus):
    payload = torch.load(tiny_corpus.features, weights_only=True)
    splits = payload["splits"]
    assert [splits.count(s) for s in ("train", "val", "short", "long")] == [12, 4, 3, 1]
    texts = {s: [t for t, x in zip(payload["texts"], splits, strict=True) if x == s]
             for s in set(splits)}
    held_out = {s for t in texts["short"] + texts["long"] for s in t.split(". ")}
    assert held_out and not held_out & set(texts["train"] + texts["val"])
    assert not set(texts["train"]) & set(texts["val"])
    assert set(texts["train"]) <= set(tiny_corpus.sentences)
    lengths = payload["mel_offsets"].diff()
    train = torch.tensor([s in ("train", "val") for s in splits])
    long = torch.tensor([s == "long" for s in splits])
    assert lengths[train].max() <= 1 + 100 * corpus.MAX_TRAIN_SECONDS
    assert 100 * corpus.LONG_SECONDS[0] <= lengths[long].min() <= 1 + 100 * corpus.LONG_SECONDS[1]
    assert lengths[long].min() > lengths[train].max()  # longer than anything trained on
    mel = payload["mel"].float()
    assert payload["mean"].shape == payload["std"].shape == (80,)
    assert torch.isfinite(mel).all() and (payload["std"] > 0).all()


@needs_flite
def test_token_ends_are_flite_alignment(tiny_corpus):
    module = tiny_corpus.module()
    for name in ("train", "long"):
        dataset = module.dataset(name)
        for i in range(len(dataset)):
            item = dataset[i]
            ends, frames = item["token_ends"], len(item["mel"])
            assert len(ends) == len(item["tokens"]) and item["tokens"][-1] == corpus.EOS
            assert (ends.diff() >= 0).all() and ends[-1] == frames and ends[0] > 0
            assert ends[-2] >= frames - 2  # the last pause ends with the audio
    item = module.dataset("train")[0]
    assert item["tokens"].tolist() == corpus.encode("phones", item["text"]).tolist()


@needs_flite
def test_prepare_reports_missing_then_ready_and_builds_identically(
        data_cache, tiny_sentences, tiny_corpus, monkeypatch, capsys):
    tiny = tiny_corpus.settings
    monkeypatch.setattr(data, "DEFAULT_CORPUS_SIZE", tiny["corpus_size"])
    monkeypatch.setattr(data, "DEFAULT_VAL_SIZE", tiny["val_size"])
    monkeypatch.setattr(data, "POOL_MIN_UTTERANCES", 0)  # render over two processes this time
    monkeypatch.setattr(data, "workers", lambda: 2)
    assert data.available() == {"flite-slt": "missing"}
    data.prepare("flite-slt")
    assert "rendering the TTS corpus" in capsys.readouterr().err
    assert data.available() == {"flite-slt": "ready"}
    root = data.corpus_dir(tiny["corpus_size"], tiny["seed"])
    first = torch.load(tiny_corpus.features, weights_only=True)
    again = torch.load(root / "features.pt", weights_only=True)
    assert first.keys() == again.keys()
    for key, value in first.items():
        same = torch.equal(value, again[key]) if torch.is_tensor(value) else value == again[key]
        assert same, key
    for name in data.wav_names():
        assert (root / "test" / name).read_bytes() == \
            (tiny_corpus.features.parent / "test" / name).read_bytes()
    (root / "test" / "long-000.wav").unlink()
    assert data.available() == {"flite-slt": "missing"}
    with pytest.raises(UsageError, match="unknown TTS data set 'ljspeech'"):
        data.prepare("ljspeech")


@needs_flite
def test_damaged_features_are_corrupt_and_loading_says_how_to_fix(data_cache, tiny_corpus):
    tiny = tiny_corpus.settings
    root = data.corpus_dir(tiny["corpus_size"], tiny["seed"])
    shutil.copytree(tiny_corpus.features.parent, root)
    assert data._verdict(**tiny).state == "missing"  # not in this cache's manifest
    cache.record(root / "features.pt", inputs=data.corpus_inputs(**tiny))
    assert data._verdict(**tiny).state == "ready"
    with open(root / "features.pt", "r+b") as fh:
        fh.write(b"damaged")
    assert data._verdict(**tiny).state == "corrupt"
    with pytest.raises(DataError, match=r"features.pt: TTS corpus .*suite data prepare tts"):
        data.TTSDataModule(**tiny).setup("fit")


# ----------------------------------------------------------------------------- batches


@needs_flite
def test_batches_have_the_documented_shapes(tiny_corpus):
    module = tiny_corpus.module()
    assert module.vocab_size == len(corpus.PHONES) + 2
    assert module.mel_mean.dtype == module.mel_std.dtype == torch.float32
    assert module.mel_mean.shape == (80,)
    batches = list(module.train_dataloader())
    train = module.dataset("train")
    assert sorted(i for b in batches for i in b["index"].tolist()) == sorted(
        int(train[i]["index"]) for i in range(len(train)))
    batch = batches[0]
    assert set(batch) == {"tokens", "token_lengths", "mel", "mel_lengths", "token_ends",
                          "index", "text"}
    size, steps = batch["tokens"].shape
    assert batch["mel"].shape == (size, int(batch["mel_lengths"].max()), 80)
    assert batch["token_ends"].shape == (size, steps) and len(batch["text"]) == size
    assert all(t.dtype == torch.long for k, t in batch.items() if k not in ("mel", "text"))
    for row in range(size):
        n, t = int(batch["token_lengths"][row]), int(batch["mel_lengths"][row])
        assert batch["tokens"][row, n - 1] == corpus.EOS
        assert (batch["tokens"][row, n:] == corpus.PAD).all()
        assert batch["token_ends"][row, n - 1] == t and (batch["token_ends"][row, n:] == 0).all()
        assert (batch["mel"][row, t:] == 0).all()
    frames = torch.cat([b["mel"][r, :b["mel_lengths"][r]] for b in batches
                        for r in range(len(b["text"]))])
    assert frames.mean(0).abs().max() < 1e-2 and (frames.std(0) - 1).abs().max() < 1e-2
    val = [b for b in module.val_dataloader()]
    assert [len(b["text"]) for b in val] == [4]
    assert val[0]["index"].tolist() == [int(module.dataset("val")[i]["index"])
                                        for i in range(4)]


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_join_groups_partition_the_utterances_within_the_frame_cap(share: float) -> None:
    indices = list(range(100, 140))
    frames = [300 + 37 * k % 500 for k in range(40)]
    groups = data.join_groups(indices, frames, share, seed=3)
    assert sorted(j for g in groups for j in g) == indices
    assert all(1 <= len(g) <= data.JOIN_MAX_UTTERANCES for g in groups)
    assert all(len(g) == 1 or sum(frames[j - 100] for j in g) <= data.JOIN_MAX_FRAMES
               for g in groups)
    joined = sum(len(g) > 1 for g in groups)
    assert (joined == 0) if share == 0 else joined > 0
    assert groups == data.join_groups(indices, frames, share, seed=3)


def test_join_share_out_of_range_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="join_share"):
        data.TTSDataModule(join_share=1.5)


@needs_flite
def test_a_joined_item_reads_its_utterances_in_turn_with_one_pause_between(tiny_corpus):
    single = tiny_corpus.module(join_share=0.0).dataset("train")
    joined = tiny_corpus.module(join_share=1.0).dataset("train")
    i = next(k for k in range(len(joined)) if len(joined.groups[k]) > 1)
    first, second = (single[single.groups.index((j,))] for j in joined.groups[i][:2])
    item = joined[i]
    n_first = len(first["tokens"]) - 1  # without its EOS
    assert item["tokens"][:n_first].tolist() == first["tokens"][:-1].tolist()
    # the second's leading pause merges into the first's final one
    assert (item["tokens"][n_first:n_first + len(second["tokens"]) - 2].tolist()
            == second["tokens"][1:-1].tolist())
    assert corpus.vocabulary("phones")[int(item["tokens"][n_first - 1])] == "pau"
    frames = len(first["mel"])
    assert torch.equal(item["mel"][:frames], first["mel"])
    assert item["token_ends"][n_first - 1] == frames + second["token_ends"][0]
    assert torch.equal(item["token_ends"][n_first:n_first + len(second["tokens"]) - 2],
                       second["token_ends"][1:-1] + frames)
    assert (item["token_ends"].diff() >= 0).all() and item["token_ends"][-1] == len(item["mel"])
    assert item["text"].startswith(first["text"] + ". ") and "wav" not in item
    assert len(joined.tokens(i)) == len(item["tokens"])


@needs_flite
def test_test_batches_carry_flites_wavs_and_chars_have_no_alignment(tiny_corpus):
    short, long = tiny_corpus.module().test_dataloader()
    batches = {"short": next(iter(short)), "long": next(iter(long))}
    assert len(batches["short"]["text"]) == 3 and len(batches["long"]["text"]) == 1
    for name, batch in batches.items():
        assert all(f"/{name}-" in w and Path(w).is_file() for w in batch["wav"])
    assert ". " in batches["long"]["text"][0]
    chars = tiny_corpus.module(units="chars")
    assert chars.vocab_size == len(corpus.CHARS) + 2
    batch = next(iter(chars.test_dataloader()[1]))
    assert (batch["token_ends"] == -1).all()
    assert batch["tokens"][0].tolist() == corpus.encode("chars", batch["text"][0]).tolist()
    with pytest.raises(UsageError, match="unknown TTS input units"):
        data.TTSDataModule(units="graphemes")
