"""Models: registry, towers, encode/embed, self-describing checkpoints (no downloads)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from fixtures_models import make_tiny_model_config, write_tiny_text_encoder

from xmr.errors import CheckpointMismatchError, ConfigError, InputError, MissingAssetError
from xmr.models import (
    ModelConfig,
    TowerConfig,
    create_model,
    get_model_config,
    list_models,
    load_model,
    read_checkpoint_config,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    return load_model(tiny_checkpoint)


@pytest.mark.parametrize("name", list_models())
def test_registered_configs_round_trip(name):
    cfg = get_model_config(name)
    assert cfg.name == name
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert set(cfg.modalities) <= {"audio", "image", "text"}


def test_registry_errors_and_overrides():
    with pytest.raises(InputError, match="unknown model"):
        create_model("no-such-model")
    cfg = get_model_config("demo", embed_dim=128, **{"audio.backbone": "resnet18"})
    assert cfg.embed_dim == 128 and cfg.audio.backbone == "resnet18"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in model config: bogus"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in audio tower: bakbone"):
        ModelConfig.from_dict({**cfg.to_dict(), "audio": {"bakbone": "resnet18"}})
    with pytest.raises(ConfigError, match="preprocessing"):
        ModelConfig.from_dict({**cfg.to_dict(), "image_preprocessing": {"size": [0, 3]}})
    with pytest.raises(InputError, match="sample_rate"):
        cfg.with_overrides(sample_rate=22050)


def test_demo_small_builds_offline_with_packaged_minilm():
    torch.manual_seed(0)
    # the registered config with tiny timm towers (fast); the text tower is the real packaged MiniLM
    model = create_model(
        "demo-small", **{"audio.backbone": "test_efficientnet", "image.backbone": "test_efficientnet"}
    )
    assert model.modalities == ("audio", "image", "text")
    assert model.towers["text"].out_dim == 384  # all-MiniLM-L6-v2 from the installed package
    assert model.is_frozen("text") and not model.config.text.store_weights
    v = model.encode("text", ["a reel on fiddle in D major", "a chorale for organ"])
    assert v.shape == (2, 256) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # the packaged sentence encoder separates different captions before any training
    assert float(v[0] @ v[1]) < 0.999


def test_tiny_checkpoint_encodes_all_modalities(tiny_model, tiny_checkpoint):
    from PIL import Image

    m = tiny_model
    assert m.modalities == ("audio", "image", "text")
    assert (m.embed_dim, m.sample_rate, m.audio_window_seconds) == (16, 8000, 1.0)
    rng = np.random.default_rng(0)
    outs = {
        "audio": m.encode(
            "audio", [rng.standard_normal(3000).astype(np.float32), np.zeros(9000, np.float32)]
        ),
        "image": m.encode("image", [Image.new("L", (80, 40), 200), Image.new("RGB", (20, 70), (9, 9, 9))]),
        "text": m.encode("text", ["a chorale for organ", "a fast reel"], batch_size=1),
    }
    for v in outs.values():
        assert v.shape == (2, 16) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert read_checkpoint_config(tiny_checkpoint)["fingerprint"] == m.fingerprint


def test_audio_is_cropped_to_the_window_and_paths_work(tiny_model, tmp_path):
    import soundfile as sf

    m = tiny_model
    rng = np.random.default_rng(1)
    long = rng.standard_normal(3 * m.audio_window_samples).astype(np.float32) * 0.1
    a = m.encode("audio", [long, long[: m.audio_window_samples]])
    np.testing.assert_allclose(a[0], a[1], atol=1e-6)
    pcm = (long[: m.audio_window_samples] * 32767).astype(np.int16)  # integer PCM is scaled
    np.testing.assert_allclose(m.encode("audio", [pcm])[0], a[1], atol=1e-3)
    sf.write(tmp_path / "x.wav", long[: m.audio_window_samples], m.sample_rate, subtype="FLOAT")
    b = m.encode("audio", [str(tmp_path / "x.wav")])
    np.testing.assert_allclose(a[1], b[0], atol=1e-4)


def test_encode_matches_embed_and_embed_has_grad(tiny_checkpoint):
    m = load_model(tiny_checkpoint)
    texts = ["a waltz in g major", "an irish jig"]
    enc = m.encode("text", texts)
    m.eval()
    z = m.embed("text", m.prepare("text", texts))
    np.testing.assert_allclose(z.detach().numpy(), enc, atol=1e-6)
    m.train()
    wave = torch.randn(3, m.audio_window_samples)
    z = m.embed("audio", wave)
    assert z.shape == (3, 16) and z.requires_grad
    z.sum().backward()
    assert m.heads["audio"][0].weight.grad is not None


def test_bad_inputs_raise_input_errors(tiny_model):
    with pytest.raises(InputError):
        tiny_model.encode("video", ["x"])
    with pytest.raises(InputError):
        tiny_model.encode("text", ["   "])
    with pytest.raises(InputError):
        tiny_model.encode("audio", [np.array([np.nan, 1.0], np.float32)])
    with pytest.raises(InputError):
        tiny_model.encode("text", "not a list")
    assert tiny_model.encode("image", []).shape == (0, 16)


def test_checkpoint_has_no_pickle_and_loads_without_it(tiny_checkpoint, monkeypatch):
    names = sorted(p.name for p in tiny_checkpoint.iterdir())
    assert names == ["config.json", "model.safetensors"]

    def no_pickle(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    m = load_model(tiny_checkpoint)
    cfg = read_checkpoint_config(tiny_checkpoint)
    pre = cfg["preprocessing"]
    assert pre["sample_rate"] == 8000 and pre["spectrogram"]["n_mels"] == 16
    assert pre["image"]["mode"] == "L" and pre["tokenizer"]["max_length"] == 32
    assert cfg["training"] == {"note": "untrained"} and len(m.fingerprint) == 64


def test_save_is_atomic_and_replaces(tiny_checkpoint, tmp_path):
    m = load_model(tiny_checkpoint)
    dst = save_checkpoint(m, tmp_path / "ck", metrics={"mrr": np.float32(0.5)})
    assert json.loads((dst / "config.json").read_text())["metrics"]["mrr"] == 0.5
    with pytest.raises(InputError):  # fails while writing: the old checkpoint stays complete
        save_checkpoint(m, dst, extra_tensors={"a/b": {"x": torch.zeros(1)}}, metrics={"mrr": 0.9})
    assert json.loads((dst / "config.json").read_text())["metrics"]["mrr"] == 0.5
    save_checkpoint(m, dst, extra_tensors={"memory": {"x": torch.arange(3)}}, step=7)
    assert read_checkpoint_config(dst)["step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary folders left
    from xmr.models.checkpoint import load_extra_tensors

    assert load_extra_tensors(dst, "memory")["x"].tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="reserved"):
        save_checkpoint(m, dst, fingerprint="x")


def test_corrupted_or_missing_checkpoint(tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(MissingAssetError):
        load_model(tmp_path / "nothing")
    m = load_model(tiny_checkpoint)
    dst = save_checkpoint(m, tmp_path / "c")
    state = load_file(str(dst / "model.safetensors"))
    key = next(k for k in state if k.startswith("heads.audio"))
    state[key] = state[key] + 1e-3
    save_file(state, str(dst / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        load_model(dst)
    del state[key]
    save_file(state, str(dst / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="missing"):
        load_model(dst)


def test_external_text_weights_are_not_stored(tmp_path, tiny_text_dir):
    import shutil

    text_dir = shutil.copytree(tiny_text_dir, tmp_path / "text")
    torch.manual_seed(0)
    cfg = make_tiny_model_config(text_dir, store_text_weights=False)
    model = create_model(cfg)
    ck = save_checkpoint(model, tmp_path / "ck")
    from safetensors.torch import load_file

    keys = load_file(str(ck / "model.safetensors")).keys()
    assert not any(k.startswith("towers.text.backbone.") for k in keys)
    assert any(k.startswith("heads.text.") for k in keys)
    ext = read_checkpoint_config(ck)["external_weights"]
    assert ext["towers.text.backbone."]["source"] == str(text_dir)
    loaded = load_model(ck)
    model.eval()
    texts = ["a slow hymn", "a lively jig for flute"]
    np.testing.assert_allclose(loaded.encode("text", texts), model.encode("text", texts), atol=1e-6)
    assert loaded.fingerprint == model.fingerprint
    # another text encoder at the same source: loading must refuse, not silently embed differently
    write_tiny_text_encoder(text_dir, seed=1)
    with pytest.raises(CheckpointMismatchError, match="differ"):
        load_model(ck)


@pytest.mark.parametrize("arch", ["clip", "clap"])
def test_clip_and_clap_text_through_from_pretrained(tmp_path, arch):
    text_dir = write_tiny_text_encoder(tmp_path / arch, arch=arch)
    cfg = make_tiny_model_config(text_dir, text_arch=f"{arch}_text")
    model = create_model(cfg)
    assert (
        type(model.towers["text"].backbone).__name__
        == {"clip": "CLIPTextModel", "clap": "ClapTextModel"}[arch]
    )
    v = model.encode("text", ["a march for strings", "a waltz"])
    assert v.shape == (2, 16) and not np.allclose(v[0], v[1])
    ck = save_checkpoint(model, tmp_path / "ck")
    np.testing.assert_allclose(load_model(ck).encode("text", ["a waltz"]), v[1:], atol=1e-6)


def test_panns_tower_and_freezing():
    cfg = make_tiny_model_config(None)
    cfg.audio = TowerConfig(kind="panns", backbone="cnn10", head="mlp", options={"channels": [8, 16]})
    model = create_model(cfg)
    assert model.modalities == ("audio", "image")
    model.train()
    z = model.embed("audio", torch.randn(2, model.audio_window_samples))
    assert z.shape == (2, 16)
    model.set_frozen("audio", True)
    model.train()
    assert not model.towers["audio"].training and model.towers["image"].training
    assert all(not p.requires_grad for p in model.towers["audio"].parameters())
    assert all(p.requires_grad for p in model.towers["image"].parameters())
    cfg.image = TowerConfig(kind="panns", backbone="cnn6", options={"channels": [4, 8]})  # lazy bn0 on images
    model = create_model(cfg)
    assert model.towers["image"].bn0.num_features == 32  # the image height
    assert model.encode("image", [np.zeros((40, 50), np.uint8)]).shape == (1, 16)
    with pytest.raises(InputError, match="PANNs"):
        create_model(cfg.with_overrides(**{"audio.backbone": "cnn99"}))
