"""Hub towers (CLAP/AST/wav2vec2 audio, CLIP/SigLIP vision, projected text halves) from tiny local folders.

Every kind: builds through ``from_pretrained``, encodes to (N, D) normalised float32, saves and
reloads a checkpoint with identical outputs and a verified fingerprint, and the reloaded model gets
its preprocessing from the checkpoint alone (the source folder is deleted before loading).
"""

from __future__ import annotations

import shutil

import hub_tiny
import numpy as np
import pytest

AUDIO = [
    ("clap", hub_tiny.write_tiny_clap),
    ("ast", hub_tiny.write_tiny_ast),
    ("auto", hub_tiny.write_tiny_wav2vec2),
]
IMAGE = [("clip", hub_tiny.write_tiny_clip), ("siglip", hub_tiny.write_tiny_siglip)]
TEXT = [
    ("clap_text_proj", hub_tiny.write_tiny_clap),
    ("clip_text_proj", hub_tiny.write_tiny_clip),
    ("siglip_text", hub_tiny.write_tiny_siglip),
]


def _waves(n: int = 3, seconds: float = 1.3) -> list[np.ndarray]:
    t = np.arange(int(seconds * hub_tiny.SAMPLE_RATE)) / hub_tiny.SAMPLE_RATE
    return [(0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t)).astype(np.float32) for k in range(n)]


def _images(n: int = 3):
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 7 * k, 50, 3), dtype=np.uint8)) for k in range(n)]


def _model_config(modality: str, kind: str, arch: str, source, *, head: str = "linear"):
    from xmr.models import ModelConfig, TowerConfig

    tower = TowerConfig(
        kind=kind, arch=arch, backbone=str(source), pretrained=kind != "hf_text", head=head, pooling="pooler"
    )
    return ModelConfig(name="hub-test", embed_dim=16, **{modality: tower})


def _inputs(modality: str):
    return {
        "audio": _waves,
        "image": _images,
        "text": lambda: ["a slow organ chorale", "a fast reel", "jig"],
    }[modality]()


def _roundtrip(tmp_path, modality, kind, arch, writer):
    from xmr.models import create_model, load_model, read_checkpoint_config, save_checkpoint

    source = writer(tmp_path / "source")
    model = create_model(_model_config(modality, kind, arch, source))
    vecs = model.encode(modality, _inputs(modality))
    assert vecs.shape == (3, 16) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1])
    ckpt = save_checkpoint(model, tmp_path / "ckpt")
    return model, vecs, ckpt, source, load_model, read_checkpoint_config


@pytest.mark.parametrize(("arch", "writer"), AUDIO + IMAGE, ids=[a for a, _ in AUDIO + IMAGE])
def test_hub_media_tower_roundtrip(tmp_path, arch, writer):
    modality, kind = ("audio", "hf_audio") if (arch, writer) in AUDIO else ("image", "hf_image")
    model, vecs, ckpt, source, load_model, read_config = _roundtrip(tmp_path, modality, kind, arch, writer)
    pre = model.config.tower(modality).preprocessing
    if modality == "audio":
        assert pre["sample_rate"] == hub_tiny.SAMPLE_RATE == model.sample_rate
        assert read_config(ckpt)["preprocessing"]["audio_processor"] == pre
    else:
        assert tuple(model.config.image_preprocessing.size) == (32, 32)
        assert model.config.image_preprocessing.mode == "RGB"
        assert read_config(ckpt)["preprocessing"]["image_processor"]["mean"] == list(pre["mean"])
    shutil.rmtree(source)  # the checkpoint alone: architecture, weights and preprocessing
    again = load_model(ckpt)  # verifies the fingerprint
    assert again.fingerprint == model.fingerprint
    assert again.config.tower(modality).preprocessing == pre
    np.testing.assert_array_equal(again.encode(modality, _inputs(modality)), vecs)


@pytest.mark.parametrize(("arch", "writer"), TEXT, ids=[a for a, _ in TEXT])
def test_hub_text_tower_roundtrip(tmp_path, arch, writer):
    model, vecs, ckpt, source, load_model, _ = _roundtrip(tmp_path, "text", "hf_text", arch, writer)
    again = load_model(ckpt)
    assert again.fingerprint == model.fingerprint
    np.testing.assert_array_equal(again.encode("text", _inputs("text")), vecs)


def test_tampered_hub_checkpoint_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from xmr.errors import CheckpointMismatchError

    _, _, ckpt, _, load_model, _ = _roundtrip(tmp_path, "image", "hf_image", "clip", hub_tiny.write_tiny_clip)
    state = load_file(str(ckpt / "model.safetensors"))
    key = next(k for k in state if "backbone" in k and state[k].is_floating_point())
    state[key] = state[key] + 1.0
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError):
        load_model(ckpt)


def test_zero_shot_checkpoint_records_shared_and_untrained_pairs(tmp_path):
    from xmr.models import ModelConfig, TowerConfig, load_model, read_checkpoint_config
    from xmr.models.zero_shot import make_zero_shot_checkpoint, untrained_directions

    clap = hub_tiny.write_tiny_clap(tmp_path / "clap")
    clip = hub_tiny.write_tiny_clip(tmp_path / "clip")
    cfg = ModelConfig(
        embed_dim=16,
        audio=TowerConfig(kind="hf_audio", arch="clap", backbone=str(clap), pretrained=True, head="identity"),
        image=TowerConfig(kind="hf_image", arch="clip", backbone=str(clip), pretrained=True, head="linear"),
        text=TowerConfig(kind="hf_text", arch="clap_text_proj", backbone=str(clap), head="identity"),
    )
    ckpt = make_zero_shot_checkpoint(cfg, tmp_path / "zero")
    zero = read_checkpoint_config(ckpt)["zero_shot"]
    assert zero == {"shared": [["audio", "text"]], "untrained": [["audio", "image"], ["image", "text"]]}
    assert set(untrained_directions(ckpt)) == {"audio→image", "image→audio", "image→text", "text→image"}
    model = load_model(ckpt)
    # identity heads: the CLAP towers' own projections are the space (same as transformers' output)
    import torch
    import transformers

    ref = transformers.ClapModel.from_pretrained(str(clap)).eval()
    tok = model.tokenize(["a jig on fiddle"])
    with torch.no_grad():
        expected = ref.get_text_features(**tok)
        expected = getattr(expected, "pooler_output", expected)
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(model.encode("text", ["a jig on fiddle"]), expected, atol=1e-5)


def test_untrained_model_without_shared_towers_is_refused(tmp_path):
    from xmr.errors import InputError
    from xmr.models.zero_shot import make_zero_shot_checkpoint

    clip = hub_tiny.write_tiny_clip(tmp_path / "clip")
    with pytest.raises(InputError, match="share a space"):
        make_zero_shot_checkpoint(_model_config("image", "hf_image", "clip", clip), tmp_path / "z")


def test_registered_hub_recipes_are_configs():
    from xmr.models import get_model_config

    for name in ("clap-clip", "clap-text", "clap-zeroshot", "clip-zeroshot", "siglip-zeroshot", "ast-minilm"):
        cfg = get_model_config(name)
        assert any(cfg.tower(m).kind in ("hf_audio", "hf_image") for m in cfg.modalities)
