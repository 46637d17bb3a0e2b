"""ASR model, decoding, streaming and the CLI: shapes, CTC on hand-made emissions (characters
and word pieces), streaming == offline, and a tiny train -> predict round trip through
``suite.cli.main``.

The CLI test writes a fake packed corpus (random features) straight into a temporary data
cache, so it needs no synthesisers and runs in seconds.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from suite.blocks import LayerConfig
from suite.cli import main
from tasks.asr import data
from tasks.asr.decode import (
    CharNGram,
    beam_decode,
    collapse,
    ctc_min_frames,
    emission_from_path,
    greedy_decode,
    prefix_beam_search,
)
from tasks.asr.model import ASREncoder, ConvSubsampling
from tasks.asr.text import VOCAB, encode
from tasks.asr.units import train_units

TEXTS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog",
         "the cat ate the rat"]


def _ids(text: str) -> list[int]:
    return encode(text).tolist()


def _size(depth: int = 2) -> LayerConfig:
    return LayerConfig(dim=32, depth=depth, num_heads=2, ffn_dim=64)


@pytest.mark.parametrize("factor,receptive", [(1, 1), (2, 3), (4, 7), (8, 15)])
def test_subsampling_lengths_match_the_conv_arithmetic(factor, receptive):
    sub = ConvSubsampling(80, 32, factor, channels=4)
    assert sub.receptive == receptive
    for frames in (receptive, receptive + 1, 100, 101, 317):
        out = sub(torch.randn(2, frames, 80))
        assert out.shape == (2, sub.out_length(frames), 32)
    assert sub.out_length(100) == {1: 100, 2: 49, 4: 24, 8: 11}[factor]
    assert sub.out_length(receptive) == 1  # one output frame sees `receptive` input frames
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        ConvSubsampling(80, 32, 16)


def test_8x_output_frame_sees_exactly_its_15_input_frames():
    """Output frame j of 8x subsampling depends on input frames [8j, 8j + 15) only."""
    torch.manual_seed(3)
    sub = ConvSubsampling(80, 16, 8, channels=4).eval()
    features = torch.randn(1, 120, 80)
    changed = features.clone()
    changed[0, 40] += 5.0  # seen by output frames j with 8j <= 40 < 8j + 15: j = 4, 5
    with torch.no_grad():
        moved = (sub(changed) - sub(features)).abs().amax(-1)[0]  # (T',)
    assert moved.nonzero().flatten().tolist() == [4, 5]


@pytest.mark.parametrize("window,conv_kernel,utterance_norm",
                         [((4, 4), 0, False), (None, 0, False), ((4, 4), 5, True)])
def test_encoder_forward_shapes_and_padding_invariance(window, conv_kernel, utterance_norm):
    torch.manual_seed(0)
    model = ASREncoder(len(VOCAB), _size(), conv_channels=4, window=window,
                       conv_kernel=conv_kernel, utterance_norm=utterance_norm).eval()
    features = torch.randn(3, 240, 80)
    lengths = torch.tensor([240, 160, 50])
    log_probs, out_lengths, maps = model(features, lengths, need_weights=True)
    assert log_probs.shape == (3, 59, len(VOCAB)) and log_probs.dtype == torch.float32
    assert out_lengths.tolist() == [59, 39, 11]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 59), atol=1e-5)
    assert len(maps) == 2 and maps[0].shape == (3, 2, 59, 59)
    if window is not None:  # nothing outside the window is attended to
        band = torch.ones(59, 59).triu(-window[0]).tril(window[1]).bool()
        assert maps[0][0, :, ~band].abs().max() == 0
    alone, _, _ = model(features[2:, :50], lengths[2:])  # padding changes nothing
    assert torch.allclose(alone[0], log_probs[2, :11], atol=1e-5)


def test_ctc_collapse_and_greedy_on_a_hand_made_emission():
    assert collapse([0, 3, 3, 0, 3, 1, 1, 0]) == [3, 3, 1]
    c, a, t, space = _ids("c")[0], _ids("a")[0], _ids("t")[0], _ids(" ")[0]
    path = [0, c, c, 0, a, 0, t, t, space, 0, a, a, 0, 0]
    emission = emission_from_path(path)[None]
    assert greedy_decode(emission, torch.tensor([len(path)])) == ["cat a"]
    assert greedy_decode(emission, torch.tensor([4])) == ["c"]  # lengths respected


def test_beam_search_sums_paths_that_greedy_misses():
    # Two frames of {blank 0.6, "a" 0.4}: greedy emits blank twice (""), but the paths
    # "aa", "a_", "_a" all collapse to "a": P("a") = 0.16 + 0.24 + 0.24 = 0.64 > P("") = 0.36.
    a = _ids("a")[0]
    probs = torch.full((2, len(VOCAB)), 1e-6)
    probs[:, 0], probs[:, a] = 0.6, 0.4
    emission = (probs / probs.sum(-1, keepdim=True)).log()
    assert greedy_decode(emission[None], torch.tensor([2])) == [""]
    assert prefix_beam_search(emission, beam=4) == "a"
    assert beam_decode(emission[None], torch.tensor([2]), beam=4) == ["a"]
    path = [0, *_ids("a"), 0, *_ids("a")]  # blank between repeats keeps both
    assert prefix_beam_search(emission_from_path(path), beam=4) == "aa"


def test_character_lm_is_normalised_and_steers_the_beam():
    lm = CharNGram(["the cat sat", "the cat ran", "a cat"], order=4)
    symbols = set("the cat sarn") | {"$"}
    assert math.isclose(sum(math.exp(lm.log_prob("the c", s)) for s in symbols), 1.0,
                        rel_tol=1e-9)
    assert lm.log_prob("the c", "a") > lm.log_prob("the c", "o")
    # Acoustically ambiguous between "cat" and "cot": the LM resolves it.
    c, a, o, t = (_ids(ch)[0] for ch in "caot")
    emission = emission_from_path([c, 0, a, 0, t]).exp()
    emission[2, a], emission[2, o] = 0.45, 0.5
    emission = emission.log()
    assert prefix_beam_search(emission, beam=8) == "cot"
    assert prefix_beam_search(emission, beam=8, lm=lm, alpha=1.0, beta=0.0) == "cat"


def _piece_path(ids: list[int]) -> list[int]:
    """A frame path: each piece once, a blank after each."""
    path = []
    for piece in ids:
        path += [piece, 0]
    return path


def test_greedy_and_beam_with_the_character_lm_over_word_pieces():
    """Pieces write their text (a word start writes the space before it); the character LM
    scores a piece's characters in turn, so it picks "rat" over the acoustically likelier
    piece sequence "rog" that no training text contains."""
    units = train_units("bpe-40", TEXTS * 5)
    text = "the cat ate the rat"
    path = _piece_path(units.encode(text).tolist())
    at, og = units.symbols.index("at"), units.symbols.index("og")
    assert path[-2] == at and units.texts[units.symbols.index("\u2581cat")] == " cat"
    emission = emission_from_path(path, len(units))
    frames = torch.tensor([len(path)])
    assert greedy_decode(emission[None], frames, units.texts) == [text]
    assert beam_decode(emission[None], frames, beam=4, vocab=units.texts) == [text]
    probs = emission.exp()
    probs[-2, at], probs[-2, og] = 0.45, 0.5
    ambiguous = probs.log()
    assert greedy_decode(ambiguous[None], frames, units.texts) == ["the cat ate the rog"]
    assert prefix_beam_search(ambiguous, beam=8, vocab=units.texts) == "the cat ate the rog"
    lm = CharNGram(TEXTS, order=4)
    assert prefix_beam_search(ambiguous, beam=8, lm=lm, alpha=1.0, beta=0.0,
                              vocab=units.texts) == text


def test_ctc_min_frames_counts_a_blank_between_repeats():
    targets = torch.tensor([[3, 3, 4, 4, 4], [5, 6, 5, 0, 0], [7, 7, 0, 0, 0]])
    lengths = torch.tensor([5, 3, 1])  # the last one's padding repeats the label: not counted
    assert ctc_min_frames(targets, lengths).tolist() == [5 + 3, 3, 1]


def test_word_pieces_fit_8x_frames_where_characters_do_not():
    """Spoken at 16 characters a second (a rate set here), 8x subsampling leaves 12.5 frames
    a second: too few for character CTC, enough for word pieces."""
    units = train_units("bpe-50", TEXTS * 5)
    sub = ConvSubsampling(80, 16, 8, channels=4)
    for text in TEXTS:
        frames = int(sub.out_length(round(100 * len(text) / 16)))  # 10 ms input frames
        as_chars, as_pieces = encode(text)[None], units.encode(text)[None]
        assert frames < ctc_min_frames(as_chars, torch.tensor([as_chars.shape[1]]))
        assert frames >= ctc_min_frames(as_pieces, torch.tensor([as_pieces.shape[1]]))


def test_tiny_word_piece_model_forward_and_ctc_loss():
    """A bpe-40 model at 8x: log-probs over its 40 outputs, a finite CTC loss on the data
    module's piece targets, and gradients that reach the subsampling convolutions."""
    from tasks.asr.module import ASRModule

    torch.manual_seed(4)
    module = ASRModule(encoder=_size(), units="bpe-40", subsampling=8, conv_channels=4)
    module.units = train_units("bpe-40", TEXTS * 5)
    packed = data._pack([torch.randn(300 + 40 * i, 80) for i in range(len(TEXTS))])
    dataset = data.FeatureDataset(packed, TEXTS, list(range(len(TEXTS))), torch.zeros(80),
                                  torch.ones(80), units=module.units)
    batch = data.collate([dataset[i] for i in range(len(TEXTS))])
    assert batch["targets"][0, : batch["target_lengths"][0]].tolist() == \
        module.units.encode(TEXTS[0]).tolist()
    log_probs, lengths, _ = module.model(batch["features"], batch["feature_lengths"])
    assert log_probs.shape == (4, int(lengths.max()), 40)
    assert (lengths >= ctc_min_frames(batch["targets"], batch["target_lengths"])).all()
    loss = module.step(batch, "train")
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert module.model.subsample.conv[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("subsampling,window,conv_kernel,utterance_norm",
                         [(4, (3, 2), 0, False), (2, (4, 0), 0, False), (1, (2, 2), 0, False),
                          (4, (3, 2), 5, True), (2, (4, 0), 7, False), (8, (3, 2), 0, False),
                          (8, (4, 0), 5, True)])
def test_streaming_equals_offline(subsampling, window, conv_kernel, utterance_norm):
    torch.manual_seed(1)
    model = ASREncoder(len(VOCAB), _size(depth=3), subsampling=subsampling, conv_channels=4,
                       window=window, conv_kernel=conv_kernel,
                       utterance_norm=utterance_norm).eval()
    frames = 300 * subsampling  # 300 encoder frames: ~20 chunks of 16
    features = torch.randn(frames, 80) * 3
    with torch.no_grad():
        offline, lengths, _ = model(features[None], torch.tensor([frames]))
        streamed = model.stream(features, chunk=16)
    assert streamed.shape == offline[0].shape
    assert torch.allclose(streamed, offline[0], atol=1e-4)
    assert greedy_decode(streamed[None], lengths) == greedy_decode(offline, lengths)
    with pytest.raises(ValueError, match="truncated window"):
        ASREncoder(len(VOCAB), _size(depth=1), window=None).stream(features)


def test_conv_module_context_and_causality():
    """The convolution widens each layer's context by its padding; with a window that looks
    no frame ahead it is causal, so a change at frame t leaves earlier outputs alone."""
    model = ASREncoder(len(VOCAB), _size(), subsampling=1, window=(3, 0), conv_kernel=5).eval()
    assert model.context() == (2 * (3 + 4), 0)
    assert ASREncoder(len(VOCAB), _size(), window=(3, 1),
                      conv_kernel=5).context() == (2 * (3 + 2), 2 * (1 + 2))
    features = torch.randn(1, 40, 80)
    changed = features.clone()
    changed[0, 30:] += torch.randn(10, 80)
    lengths = torch.tensor([40])
    with torch.no_grad():
        before, _, _ = model(features, lengths)
        after, _, _ = model(changed, lengths)
    assert torch.allclose(before[0, :30], after[0, :30], atol=1e-5)
    assert not torch.allclose(before[0, 30:], after[0, 30:], atol=1e-3)
    with pytest.raises(ValueError, match="odd"):
        ASREncoder(len(VOCAB), _size(depth=1), conv_kernel=4)


@pytest.fixture
def fake_corpus(planted):
    """A packed 24-utterance corpus of random features in a temporary data cache."""
    generator = torch.Generator().manual_seed(0)
    texts = ["one two", "three", "the cat sat", "press one"] * 6
    splits = ["train"] * 16 + ["val"] * 4 + ["test"] * 4
    features = [torch.randn(60 + 7 * i, 80, generator=generator) for i in range(24)]
    rows = [{"text": t, "split": s, "voice": "fake", "path": f"{i}.flac"}
            for i, (t, s) in enumerate(zip(texts, splits, strict=True))]
    root = data.corpus_dir(24, 0)
    root.mkdir(parents=True)
    torch.save({"rows": rows, "mean": torch.zeros(80), "std": torch.ones(80),
                **data._pack(features)}, root / "features.pt")
    planted.add(root / "features.pt")


@pytest.mark.parametrize("units", [["--model.units=char", "--model.subsampling=4"],
                                   ["--model.units=bpe-40"]], ids=["char-4x", "bpe-8x"])
def test_train_then_predict_through_the_cli(tmp_path, fake_corpus, capsys, units):
    """Word pieces are learned from the training split in setup, travel in the checkpoint and
    serve test (its lexicons too: the training text's and the general English one) and
    predict without the corpus."""
    config = "configs/asr/quick.yaml"
    code = main(["train", "asr", "-c", config, *units, "--trainer.max_steps=2",
                 "--trainer.val_check_interval=2", "--trainer.limit_test_batches=1",
                 "--trainer.precision=32-true", "--model.encoder.depth=1",
                 "--model.encoder.dim=32", "--model.encoder.num_heads=2",
                 "--model.encoder.ffn_dim=64", "--model.conv_channels=4",
                 "--model.decoding.beam_size=2", "--model.decoding.lm_order=3",
                 "--model.decoding.word_lm_order=2",
                 "--data.corpus_size=24",
                 "--data.test_set=unseen_voices", "--data.max_frames=400",
                 "--run.root", str(tmp_path / "runs"), "--run.name=t", "--run.wandb=disabled"])
    assert code == 0
    run_dir = tmp_path / "runs" / "asr" / "adhoc" / "t"
    metrics = (run_dir / "summary.json").read_text()
    for key in ("test/cer_unseen", "test/wer_unseen", "test/cer_unseen_beam",
                "test/wer_unseen_word", "test/wer_unseen_general"):
        assert key in metrics
    assert (run_dir / "media" / "test_ctc_alignment_unseen.png").is_file()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    word_pieces = units == ["--model.units=bpe-40"]
    assert len(saved["vocab"]) == (40 if word_pieces else len(VOCAB))
    assert ("asr_tokenizer" in saved) == word_pieces
    wav = tmp_path / "tone.wav"
    t = np.arange(24_000) / 48_000
    sf.write(wav, np.stack([0.3 * np.sin(2 * np.pi * 300 * t)] * 2, 1), 48_000)
    capsys.readouterr()
    assert main(["predict", "asr", "--ckpt", str(ckpt), str(wav)]) == 0
    offline = capsys.readouterr().out.splitlines()
    assert len(offline) == 1 and offline[0].startswith(f"{wav}\t")
    assert main(["predict", "asr", "--ckpt", str(ckpt), "--stream", str(wav)]) == 0
    assert capsys.readouterr().out.splitlines() == offline
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio at all\n" * 40)
    assert main(["predict", "asr", "--ckpt", str(ckpt), str(notes)]) == 1
    assert str(notes) in capsys.readouterr().err


def test_recipe_options_train_through_the_cli(tmp_path, fake_corpus):
    """SortaGrad, intermediate CTC and the SpecAugment ramp, set from the command line: the
    ramp's scale is 0 through the warmup step and grows by 1/2 a step after it; the
    intermediate loss is logged every step."""
    import csv

    code = main(["train", "asr", "-c", "configs/asr/quick.yaml", "--trainer.max_steps=4",
                 "--trainer.val_check_interval=4", "--trainer.limit_test_batches=1",
                 "--trainer.log_every_n_steps=1", "--trainer.precision=32-true",
                 "--model.encoder.depth=2", "--model.encoder.dim=32",
                 "--model.encoder.num_heads=2", "--model.encoder.ffn_dim=64",
                 "--model.conv_channels=4", "--model.decoding.beam_size=0",
                 "--model.units=bpe-40", "--model.warmup_steps=1", "--model.inter_ctc_layer=1",
                 "--data.sorted_first_epoch=true", "--data.spec_augment_ramp=2",
                 "--data.corpus_size=24", "--data.test_set=unseen_voices",
                 "--data.max_frames=400", "--run.root", str(tmp_path / "runs"),
                 "--run.name=t", "--run.wandb=disabled"])
    assert code == 0
    run_dir = tmp_path / "runs" / "asr" / "adhoc" / "t"
    with open(run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    scales = [float(r["train/spec_augment_scale"]) for r in rows
              if r.get("train/spec_augment_scale")]
    assert scales == [0.0, 0.0, 0.5, 1.0]
    assert sum(bool(r.get("train/ctc_inter")) for r in rows) == 4
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["inter_ctc_layer"] == 1


def test_utterance_norm_removes_a_constant_channel_offset():
    torch.manual_seed(2)
    model = ASREncoder(len(VOCAB), _size(), conv_channels=4, utterance_norm=True).eval()
    features, lengths = torch.randn(2, 120, 80), torch.tensor([120, 90])
    channel = torch.randn(80)  # one offset per mel bin, as a microphone's response adds
    with torch.no_grad():
        plain, _, _ = model(features, lengths)
        shifted, _, _ = model(features + channel, lengths)
    assert torch.allclose(plain, shifted, atol=1e-4)


def test_checkpoints_with_the_former_layer_names_load():
    """The layers, their convolutions and the final norm were the encoder's own attributes
    before it used the shared stack; their state dicts still load."""
    model = ASREncoder(len(VOCAB), _size(), conv_channels=4, conv_kernel=5)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    renames = [(r"^encoder\.extras\.", "convs."),
               (r"^encoder\.layers\.", "layers."), (r"^encoder\.norm\.", "norm."),
               (r"\.norm1\.", ".attention_block.norm."), (r"\.norm2\.", ".ffn_block.norm.")]
    former = {}
    for key, value in state.items():
        for pattern, old in renames:
            key = re.sub(pattern, old, key)
        former[key] = value
    assert "convs.0.depthwise.weight" in former and "layers.1.ffn_block.norm.bias" in former
    model.load_state_dict(former)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_help_shows_the_nested_encoder_and_decoding_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "asr", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model.encoder.dim" in out and "--model.decoding.beam_size" in out
    assert "--model.dim " not in out


def test_model_name_says_window_and_convolution():
    from tasks.asr.module import ASRModule

    def name(**kwargs):
        return ASRModule(encoder=_size(depth=1), **kwargs).hparams["model"]

    assert name(window=[16, 16]) == "ctc-w16-16"
    assert name(window=None, conv_kernel=5) == "conformer-ctc-full"
    assert name(window=[16, 0], conv_kernel=5) == "conformer-ctc-w16-0"
