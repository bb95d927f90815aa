"""Pitch-keeping sequence towers: the log-frequency / CQT front ends, the seq_cnn tower with lengths
and masks, the demo-seq registry entries, and the training batches that feed them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from PIL import Image, ImageDraw

from xmr.media.features import SpectrogramConfig, compute_features, logfreq_filterbank
from xmr.models import create_model, get_model_config, list_models, load_model, save_checkpoint
from xmr.models.sequence import MaskedBatchNorm, fitted_width, left_align

SR = 16000
TINY = {"blocks": [[4], [8]], "fold_dim": 16, "hidden": 8, "dropout": 0.0}


def _logfreq(**kw) -> SpectrogramConfig:
    base = dict(sample_rate=SR, kind="logfreq", n_fft=4096, win_length=4096, hop_length=320,
                f_min=30.0, f_max=6000.0, bins_per_octave=16)
    return SpectrogramConfig(**{**base, **kw})


def _tiny(name: str = "demo-seq", **kw):
    """demo-seq's preprocessing with a tiny CNN and no text tower (seconds on a CPU)."""
    cfg = get_model_config(name)
    over = {"audio.options": {"rows": cfg.spectrogram.n_bins, **TINY},
            "image.options": {"rows": cfg.image_preprocessing.size[0], **TINY}, "embed_dim": 32, "text": None,
            **kw}
    torch.manual_seed(0)
    return create_model(name, **over).eval()


def _tone(freq: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return 0.5 * torch.sin(2 * math.pi * freq * t)


# ---------------------------------------------------------------- front ends


def test_logfreq_keeps_semitones_apart_over_the_range_of_the_music():
    cfg = _logfreq()
    fb = logfreq_filterbank(cfg)
    assert fb.shape == (cfg.n_bins, cfg.n_fft // 2 + 1)
    np.testing.assert_allclose(fb.sum(1), 1.0, rtol=1e-5)
    centres = fb.argmax(1) * SR / cfg.n_fft
    assert np.all(np.diff(centres) > 0)
    for lo in (65.0, 130.0, 1000.0, 2900.0):  # >= 12 bands in every octave from C2 up
        assert ((centres >= lo) & (centres < 2 * lo)).sum() >= 12, lo
    assert cfg.hop_length / SR <= 0.05
    # a tone peaks at its own band, and a semitone higher peaks at another one
    peaks = []
    for midi in (40, 41, 57, 69, 81):  # E2, F2, A3, A4, A5
        freq = 440.0 * 2 ** ((midi - 69) / 12)
        spec = compute_features(_tone(freq), cfg)[0, 0].mean(-1)
        peak = int(spec.argmax())
        assert abs(centres[peak] - freq) / freq < 0.05, (midi, centres[peak], freq)
        peaks.append(peak)
    assert len(set(peaks)) == len(peaks)


@pytest.mark.parametrize("kind", ["logfreq", "cqt"])
def test_pitch_front_ends_give_an_item_the_same_frames_alone_and_padded(kind):
    pytest.importorskip("nnAudio") if kind == "cqt" else None
    cfg = _logfreq(kind=kind)
    wave = torch.randn(1, 20000) * 0.1
    alone = compute_features(wave, cfg)
    padded = compute_features(torch.cat([wave, torch.zeros(1, 13000)], 1), cfg)
    frames = cfg.num_frames(20000)
    assert alone.shape == (1, 1, cfg.n_bins, frames)
    assert torch.equal(alone, padded[..., :frames])


def test_spectrogram_configs_of_the_older_kinds_serialise_as_before():
    old = SpectrogramConfig(kind="logmel").to_dict()
    assert "bins_per_octave" not in old
    assert SpectrogramConfig.from_dict(old) == SpectrogramConfig(kind="logmel")
    new = _logfreq().to_dict()
    assert new["bins_per_octave"] == 16 and SpectrogramConfig.from_dict(new) == _logfreq()
    with pytest.raises(Exception, match="bins_per_octave"):
        SpectrogramConfig(kind="logfreq", f_min=30.0)
    with pytest.raises(Exception, match="f_min"):
        SpectrogramConfig(kind="cqt", bins_per_octave=12)


def _notes(*midis: int, seconds: float = 1.0, partials: int = 4) -> torch.Tensor:
    """Harmonic tones (``partials`` partials falling as 1/k) of the MIDI notes, sounding together."""
    wave = torch.zeros(int(seconds * SR))
    for midi in midis:
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        wave += sum(_tone(f0 * k, seconds) / k for k in range(1, partials + 1))
    return 0.2 * wave / len(midis)


def _fold() -> torch.Tensor:
    from xmr.media.features import PROFILE_BANDS, pitch_class_fold

    return torch.from_numpy(np.concatenate([pitch_class_fold(SR, *band) for band in PROFILE_BANDS.values()]))


def _profile(wave: torch.Tensor) -> torch.Tensor:
    from xmr.media.features import pitch_class_profile

    return pitch_class_profile(wave[None], torch.tensor([len(wave)]), _fold(), SR)[0]


def test_pitch_class_profiles_name_the_notes_and_the_bass():
    # a C major chord with C3 in the bass, E4 and G4 above: C, E, G are the strongest classes, C
    # the bass; the bass band holds nothing of a chord above C4
    chord = _profile(_notes(48, 64, 67))
    assert chord.shape == (24,) and float(chord.max()) == pytest.approx(1.0)
    assert set(chord[:12].topk(3).indices.tolist()) == {0, 4, 7}
    assert int(chord[12:].argmax()) == 0
    high = _profile(_notes(69, 76))  # A4 and E5
    assert set(high[:12].topk(2).indices.tolist()) == {9, 4}
    assert float(high[12:].max()) < 0.1 * float(high[:12].max())
    # a semitone up moves every class one up; the gain does not matter
    up = _profile(_notes(49, 65, 68))
    assert set(up[:12].topk(3).indices.tolist()) == {1, 5, 8} and int(up[12:].argmax()) == 1
    torch.testing.assert_close(_profile(3.0 * _notes(48, 64, 67)), chord, atol=1e-4, rtol=1e-4)
    for midi in range(36, 97):  # every note of the range, C2 to C7, alone, is its own class
        assert int(_profile(_notes(midi))[:12].argmax()) == midi % 12, midi


def test_a_pitch_class_profile_is_the_same_alone_and_padded_in_a_batch():
    from xmr.media.features import pitch_class_profile

    short = _notes(50, 62, 66, seconds=1.3)
    batch = torch.stack([torch.cat([short, torch.zeros(int(0.7 * SR))]), _notes(55, seconds=2.0)])
    profiles = pitch_class_profile(batch, torch.tensor([len(short), batch.shape[1]]), _fold(), SR)
    torch.testing.assert_close(profiles[0], _profile(short), atol=1e-5, rtol=1e-4)
    assert set(profiles[0][:12].topk(2).indices.tolist()) == {2, 6}  # D3 and D4, F#4
    assert int(profiles[1][:12].argmax()) == 7  # G
    silent = pitch_class_profile(torch.zeros(1, SR), torch.tensor([SR]), _fold(), SR)
    assert torch.equal(silent, torch.zeros(1, 24))


def _clicks(bpm: float, seconds: float = 10.0, accent: int = 3) -> torch.Tensor:
    """Short 880 Hz blips at ``bpm``, every ``accent``-th one louder (a bar of ``accent`` beats)."""
    wave = torch.zeros(int(seconds * SR))
    blip = torch.sin(2 * math.pi * 880 * torch.arange(400) / SR) * torch.exp(-torch.arange(400) / 80)
    for k in range(int(seconds * bpm / 60)):
        start = int(k * 60 / bpm * SR)
        wave[start:start + 400] += (1.0 if k % accent == 0 else 0.4) * blip[:len(wave) - start]
    return wave


def _lag_bin(seconds: float) -> int:
    from xmr.media.features import TEMPO_LAGS

    lo, hi, count = TEMPO_LAGS
    return round(math.log(seconds / lo) / math.log(hi / lo) * (count - 1))


@pytest.mark.parametrize("bpm", [72, 100, 132])
def test_a_tempo_profile_holds_the_beat_and_the_bar(bpm):
    from xmr.media.features import tempo_profile

    profile = tempo_profile(_clicks(bpm)[None], torch.tensor([10 * SR]), SR)[0]
    beat, bar = _lag_bin(60 / bpm), _lag_bin(3 * 60 / bpm)
    assert profile[beat] > 0.5 and profile[bar] > 0.5
    off_beat = _lag_bin(60 / bpm * 1.5)  # half-way between the beat and the second beat
    assert profile[off_beat] < 0.3 * profile[beat]
    assert int(profile[:_lag_bin(60 / bpm * 0.8)].argmax()) != beat  # no beat below the beat's period
    assert profile[:_lag_bin(60 / bpm * 0.8)].max() < 0.3 * profile[beat]


def test_a_tempo_profile_is_the_same_alone_and_padded_and_zero_for_silence():
    from xmr.media.features import tempo_profile

    short = _clicks(90, seconds=2.5)
    batch = torch.stack([torch.cat([short, torch.zeros(SR * 9 // 2)]), _clicks(120, seconds=7.0)])
    both = tempo_profile(batch, torch.tensor([len(short), 7 * SR]), SR)
    torch.testing.assert_close(both[0], tempo_profile(short[None], torch.tensor([len(short)]), SR)[0],
                               atol=1e-5, rtol=1e-4)
    assert both[0][_lag_bin(3.0)] == 0 and both[1][_lag_bin(3.0)] != 0  # 2.5 s cannot hold a lag of 3 s
    assert both[0][_lag_bin(60 / 90)] > 0.5
    assert not torch.allclose(both[0], both[1])
    assert torch.equal(tempo_profile(torch.zeros(1, SR), torch.tensor([SR]), SR), torch.zeros(1, 32))


# ---------------------------------------------------------------- tower


def test_a_tower_profile_widens_the_head_and_a_checkpoint_without_it_fits(tmp_path):
    from xmr.media.features import tempo_profile
    from xmr.models.heads import widen_head

    plain = _tiny()
    profiled = _tiny(**{"audio.profile": ["pitch_classes", "tempo"]})
    assert plain.config.heads_differ(profiled.config) == ["audio"]
    assert profiled.heads["audio"][0].in_features == plain.heads["audio"][0].in_features + 24 + 32
    assert profiled.config.to_dict()["audio"]["profile"] == ["pitch_classes", "tempo"]
    assert _tiny(**{"audio.profile": "tempo"}).config.audio.profile == ["tempo"]
    assert "profile" not in plain.config.to_dict()["audio"]  # older configs keep their fingerprint
    state = {k: v for k, v in plain.state_dict().items() if not k.startswith("heads.audio.")}
    assert profiled.load_state_dict(state, strict=False).missing_keys == ["heads.audio.0.weight",
                                                                          "heads.audio.0.bias"]
    widen_head(profiled.heads["audio"], plain.heads["audio"].state_dict())
    waves = [np.asarray(_notes(48, 64, 67, seconds=1.5)), np.asarray(_notes(57, seconds=0.6))]
    np.testing.assert_allclose(profiled.encode("audio", waves), plain.encode("audio", waves), atol=1e-6)
    batch = torch.from_numpy(np.stack([waves[0][:SR], np.pad(waves[1], (0, SR - len(waves[1])))]))
    feats = profiled.tower_features("audio", batch, torch.tensor([SR, len(waves[1])]))
    alone = torch.stack([_profile(batch[0]), _profile(torch.from_numpy(waves[1]))])
    torch.testing.assert_close(feats[:, -56:-32], alone, atol=1e-5, rtol=1e-4)
    tempo = torch.cat([tempo_profile(batch[:1], torch.tensor([SR]), SR),
                       tempo_profile(torch.from_numpy(waves[1])[None], torch.tensor([len(waves[1])]), SR)])
    torch.testing.assert_close(feats[:, -32:], tempo, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # the profile is read: the new columns move the embedding
        profiled.heads["audio"][0].weight[:, -56:].normal_()
    assert np.abs(profiled.encode("audio", waves) - plain.encode("audio", waves)).max() > 1e-2
    save_checkpoint(profiled, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config.audio.profile == ["pitch_classes", "tempo"]
    np.testing.assert_array_equal(loaded.encode("audio", waves), profiled.encode("audio", waves))
    with pytest.raises(Exception, match="profile is of audio"):
        _tiny(**{"image.profile": "pitch_classes"})
    for bad in ("chroma", [], ["tempo", "tempo"]):
        with pytest.raises(Exception, match="distinct known profiles"):
            _tiny(**{"audio.profile": bad})


def test_fitted_width_and_left_align_follow_the_pad_policy():
    from xmr.media.image import ImageConfig, prepare_image

    cfg = ImageConfig(size=(256, 1024), mode="L", resize="pad")
    img = Image.new("L", (300, 256), 0)  # black content on the white canvas
    x = prepare_image(img, cfg)[None]
    w = fitted_width(300, 256, cfg.size, "pad")
    assert w == 300
    cols = (x[0, 0] < 0.5).any(0).nonzero().flatten()
    assert (int(cols.min()), int(cols.max()) + 1) == ((1024 - 300) // 2, (1024 - 300) // 2 + 300)
    out = left_align(x, torch.tensor([w]))
    assert out.shape == (1, 1, 256, 300) and float(out.max()) == 0.0
    assert fitted_width(4000, 256, cfg.size, "pad") == 1024  # wider than the canvas: scaled to fit
    assert fitted_width(300, 256, cfg.size, "stretch") == 1024


def test_masked_batchnorm_counts_only_valid_steps():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 10)
    lengths = torch.tensor([10, 6])
    mask = (torch.arange(10)[None] < lengths[:, None]).float()[:, None, None, :]
    bn = MaskedBatchNorm(3).train()
    out = bn(x, mask)
    valid = torch.cat([x[0], x[1, :, :, :6]], dim=-1)  # (C, H, 16)
    ref = torch.nn.BatchNorm2d(3).train()(valid[None])[0]
    torch.testing.assert_close(torch.cat([out[0], out[1, :, :, :6]], dim=-1), ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(bn.running_mean, 0.1 * valid.mean(dim=(1, 2)), atol=1e-6)


@pytest.mark.parametrize("pooling", ["gru", "attention", "mean"])
def test_an_item_alone_and_padded_in_a_batch_gives_the_same_embedding(pooling):
    model = _tiny(**{"audio.pooling": pooling, "image.pooling": pooling})
    rng = np.random.default_rng(0)
    short, long = (rng.standard_normal(int(s * SR)).astype(np.float32) * 0.1 for s in (1.3, 4.0))
    alone = model.encode("audio", [short])
    both = model.encode("audio", [long, short])
    np.testing.assert_allclose(alone[0], both[1], atol=1e-5)
    assert np.abs(both[0] - both[1]).max() > 1e-3  # the padding is not what decides the embedding
    narrow = Image.fromarray((rng.random((256, 150)) * 255).astype(np.uint8))
    wide = Image.fromarray((rng.random((256, 700)) * 255).astype(np.uint8))
    alone = model.encode("image", [narrow])
    both = model.encode("image", [wide, narrow])
    np.testing.assert_allclose(alone[0], both[1], atol=1e-5)
    assert both.dtype == np.float32 and both.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["demo-seq", "demo-seq-lite"])
def test_the_registered_demo_seq_masks_padding_at_full_size(name):
    # demo-seq-lite's stride-2 first convolution on odd widths: ceil(width / 2) valid columns
    torch.manual_seed(0)
    model = create_model(name, text=None).eval()
    rng = np.random.default_rng(1)
    short, long = (rng.standard_normal(int(s * SR)).astype(np.float32) * 0.1 for s in (2.03, 6.0))
    np.testing.assert_allclose(model.encode("audio", [short])[0], model.encode("audio", [long, short])[1],
                               atol=1e-5)
    narrow = Image.fromarray((rng.random((256, 201)) * 255).astype(np.uint8))
    wide = Image.fromarray((rng.random((256, 600)) * 255).astype(np.uint8))
    np.testing.assert_allclose(model.encode("image", [narrow])[0], model.encode("image", [wide, narrow])[1],
                               atol=1e-5)


def test_height_and_frequency_are_folded_not_averaged():
    # Moving the content up the image (a note higher on the staff) or a tone up a few semitones
    # changes the folded features; a pooled-over-height CNN would be invariant to the shift.
    model = _tiny()
    tower = model.towers["image"]
    img = torch.zeros(1, 1, 256, 64)
    img[:, :, 100:104, 10:50] = 1.0
    moved = torch.roll(img, shifts=24, dims=2)
    a, b = tower(img, torch.tensor([64])), tower(moved, torch.tensor([64]))
    assert (a - b).abs().max() > 1e-3
    z = model.encode("audio", [_tone(220.0).numpy(), _tone(220.0 * 2 ** (4 / 12)).numpy()])
    assert float(z[0] @ z[1]) < 0.999


# ---------------------------------------------------------------- registry and checkpoint


def test_demo_seq_models_are_registered_with_pitch_preprocessing():
    names = list_models()
    for name in ("demo-seq", "demo-seq-attn", "demo-seq-cqt", "demo-seq-lite", "demo", "demo-small"):
        assert name in names
    lite = get_model_config("demo-seq-lite")
    assert lite.image.options["stem_stride"] == 2 and lite.image_preprocessing.size[0] == 256
    assert lite.spectrogram.hop_length / lite.sample_rate <= 0.05
    model = create_model("demo-seq", text=None)
    cfg = model.config
    assert get_model_config("demo-seq").text.kind == "hf_text"
    assert cfg.spectrogram.kind == "logfreq" and cfg.spectrogram.bins_per_octave >= 12
    assert cfg.spectrogram.hop_length / cfg.sample_rate <= 0.05
    assert cfg.image_preprocessing.size[0] == 256 and cfg.image_preprocessing.resize == "pad"
    for m in ("audio", "image"):
        assert cfg.tower(m).kind == "seq_cnn" and model.takes_lengths(m)
        weights = sum(p.numel() for p in model.towers[m].parameters())
        assert 3e5 <= weights <= 1.2e6, (m, weights)
    small = create_model("demo-small", text=None, **{"audio.backbone": "test_efficientnet",
                                                     "image.backbone": "test_efficientnet"})
    assert not small.takes_lengths("audio") and not small.takes_lengths("image")


def test_demo_seq_checkpoint_round_trip(tmp_path):
    model = _tiny()
    model.train()
    x = torch.randn(3, SR) * 0.1
    model.embed("audio", x, lengths=torch.tensor([SR, SR // 2, SR // 3]))  # move the running stats
    model.eval()
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config.spectrogram == model.config.spectrogram
    wave = [np.asarray(x[1, : SR // 2])]
    np.testing.assert_array_equal(loaded.encode("audio", wave), model.encode("audio", wave))


# ---------------------------------------------------------------- training batches


@pytest.fixture(scope="module")
def ragged_manifest(tmp_path_factory):
    """Six items whose audio lengths and image widths all differ."""
    folder = tmp_path_factory.mktemp("ragged")
    (folder / "audio").mkdir()
    (folder / "image").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for k in range(6):
        seconds = 0.8 + 0.5 * k
        wave = 0.2 * np.sin(2 * np.pi * 220 * 2 ** (k / 12) * np.arange(int(seconds * SR)) / SR)
        wave = (wave + 0.01 * rng.standard_normal(len(wave))).astype(np.float32)
        sf.write(folder / "audio" / f"i{k}.wav", wave, SR)
        img = Image.new("L", (120 + 90 * k, 128), 255)
        ImageDraw.Draw(img).line([(5, 10 + 9 * k), (100 + 80 * k, 110)], fill=0, width=3)
        img.save(folder / "image" / f"i{k}.png")
        rows.append({"id": f"i{k}", "split": "train", "audio": f"audio/i{k}.wav", "image": f"image/i{k}.png",
                     "caption": [f"tune {k}"]})
    pd.DataFrame(rows).to_parquet(folder / "manifest.parquet")
    return folder / "manifest.parquet"


def test_training_batches_carry_lengths_that_match_inference(ragged_manifest, tmp_path):
    from xmr.data.manifest import read_manifest
    from xmr.train.data import BatchSpec, ItemStore

    model = _tiny()
    pre = model.config.image_preprocessing
    items = ItemStore.from_manifest(ragged_manifest, split="train", sample_rate=SR, image_size=pre.size,
                                    image_mode=pre.mode, image_resize=pre.resize, cache_dir=tmp_path)
    window = int(2.5 * SR)
    batch = items.batch(list(range(6)), spec=BatchSpec(audio_samples=window), seed=0, step=0)
    expect_audio = [min(int((0.8 + 0.5 * k) * SR), window) for k in range(6)]
    assert batch.lengths["audio"].tolist() == expect_audio
    assert batch.lengths["image"].tolist() == [fitted_width(120 + 90 * k, 128, pre.size) for k in range(6)]
    # the rows of a training batch embed as the same files do through model.encode
    with torch.no_grad():
        z_img = model.embed("image", batch.image, lengths=batch.lengths["image"]).numpy()
    frame = read_manifest(ragged_manifest)
    np.testing.assert_allclose(z_img, model.encode("image", list(frame["image"])), atol=1e-5)
    with torch.no_grad():
        z_aud = model.embed("audio", batch.audio, lengths=batch.lengths["audio"]).numpy()
    waves = [items.crop(i, window)[:n] for i, n in enumerate(expect_audio)]  # centred crops
    np.testing.assert_allclose(z_aud, model.encode("audio", waves), atol=1e-5)
    # a cached store from before the widths sidecar existed gets them (from the file headers)
    next(tmp_path.rglob("images_widths.npy")).unlink()
    again = ItemStore.from_manifest(ragged_manifest, split="train", sample_rate=SR, image_size=pre.size,
                                    image_mode=pre.mode, image_resize=pre.resize, cache_dir=tmp_path)
    assert again.image_widths.tolist() == batch.lengths["image"].tolist()


def test_frozen_sequence_towers_are_cached_once_per_item_and_embed_as_uncached(ragged_manifest, tmp_path):
    """Head-only training on frozen sequence towers (e.g. a text-head refit): each item's features
    are computed once, found again in another batch, and equal the uncached embedding (the plain
    reference)."""
    from xmr.train.adapter import ModelAdapter
    from xmr.train.data import BatchSpec, ItemStore

    model = _tiny()
    pre = model.config.image_preprocessing
    items = ItemStore.from_manifest(ragged_manifest, split="train", sample_rate=SR, image_size=pre.size,
                                    image_mode=pre.mode, image_resize=pre.resize, cache_dir=tmp_path)
    adapter = ModelAdapter(model, modalities=("audio", "image"), device=torch.device("cpu"))
    adapter.set_frozen(["audio", "image"])
    spec = BatchSpec(audio_samples=int(2.5 * SR))
    whole = items.batch(list(range(6)), spec=spec, seed=0, step=0)
    with torch.no_grad():
        plain = {m: model.embed(m, getattr(whole, m), lengths=whole.lengths[m]) for m in ("audio", "image")}
    calls = {"audio": 0, "image": 0}
    for m in ("audio", "image"):
        original = model.towers[m].forward

        def counted(*args, _m=m, _f=original, **kw):
            calls[_m] += args[0].shape[0]
            return _f(*args, **kw)

        model.towers[m].forward = counted
        assert adapter.cache_media_features(m, items, spec=BatchSpec(modalities=(m,),
                                                                     audio_samples=spec.audio_samples)) == 6
    assert calls == {"audio": 6, "image": 6}
    part = items.batch([1, 0], spec=spec, seed=0, step=0)
    for m in ("audio", "image"):
        z = adapter.embed(m, part)
        assert z.requires_grad  # the trainable head
        np.testing.assert_allclose(z.detach().numpy(), plain[m][[1, 0]].numpy(), atol=1e-5)
    # a batch made without the media tensors (as the trainer makes them) takes the features by item
    fast = items.batch([1, 0], spec=BatchSpec(audio_samples=spec.audio_samples,
                                              features_cached=("audio", "image")), seed=0, step=0)
    assert fast.audio is None and fast.image is None and fast.present["image"].all()
    for m in ("audio", "image"):
        z = adapter.embed(m, fast).detach().numpy()
        np.testing.assert_allclose(z, plain[m][[1, 0]].numpy(), atol=1e-5)
    assert calls == {"audio": 6, "image": 6}


def test_seq_models_conform_score_pictures_before_encoding(tiny_corpus):
    from xmr.data.corpus import media_path
    from xmr.data.corpus.excerpts import load_piece, make_excerpt
    from xmr.data.corpus.render import Layout, engrave_view
    from xmr.media.score import conform_score

    model = _tiny("demo-seq-lite")
    cfg = model.config.image_preprocessing
    assert cfg.score_interline == pytest.approx(6.3)
    row = pd.read_parquet(tiny_corpus).iloc[0]
    tune = int(row["tune"])
    excerpt = make_excerpt(load_piece(str(row["source"]), tune if tune >= 0 else None),
                           int(row["measure_start"]), int(row["measure_end"]))
    two = engrave_view(excerpt, Layout(font="Leland", systems=2))[0]
    line = conform_score(two, interline=cfg.score_interline, height=cfg.size[0])
    main = Image.open(media_path(row, "image", manifest_dir=tiny_corpus.parent))
    got = model.encode("image", [two, main])
    # the model reads the conformed line (and the corpus image as it is); without the setting the
    # picture is read as it comes
    cfg.score_interline = None
    want = model.encode("image", [line, main])
    raw = model.encode("image", [two])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(raw[0], want[0], atol=1e-3)
    # the one query path says what it did to the picture, and nothing for an engraving as indexed
    from xmr.index.query import encode_query

    cfg.score_interline = 6.3
    query = encode_query(model, image=two)
    assert query.notes == ["the picture was read as a score page: its 2 systems set on one line"]
    np.testing.assert_allclose(query.vector, got[0] / np.linalg.norm(got[0]), atol=1e-5)
    assert encode_query(model, image=main).notes == []
