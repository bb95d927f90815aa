"""Configs, overrides, schedule, optimizer groups, samplers, augmentations and the gather with gradient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["tiny", "demo", "scfem", "xbm", "3cmlf", "demo-seq", "demo-seq-gpu"])
def test_bundled_configs_parse(name):
    from xmr.train.config import load_config
    from xmr.train.losses import build_loss

    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.data.batch_size % cfg.train.accum_steps == 0
    build_loss({**cfg.loss, "num_items": 10, "embed_dim": 8})  # the loss section is valid


def test_overrides_and_errors(tmp_path):
    from xmr.errors import ConfigError, InputError
    from xmr.train.config import load_config

    cfg = load_config(ROOT / "configs" / "tiny.yaml",
                      ["optim.lr=3e-4", "train.freeze=[audio]", "loss.memory=xbm", "model.embed_dim=16"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.train.freeze == ["audio"]
    assert cfg.loss["memory"] == "xbm" and cfg.model["embed_dim"] == 16
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in optim: learning_rate"):
        load_config(ROOT / "configs" / "tiny.yaml", ["optim.learning_rate=1"])
    with pytest.raises(InputError, match="key=value"):
        load_config(ROOT / "configs" / "tiny.yaml", ["optim.lr"])
    with pytest.raises(ConfigError, match="multiple of"):
        load_config(ROOT / "configs" / "tiny.yaml", ["train.accum_steps=3"])
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_cli_reports_bad_config(tmp_path, capsys):
    from xmr.cli import main

    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "xmr: error: config file not found" in capsys.readouterr().err


def test_lr_schedule_warmup_then_cosine():
    from xmr.train.optim import lr_factor

    f = [lr_factor(s, total=110, warmup=10, min_ratio=0.1) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.55)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert lr_factor(110, total=110, warmup=10, min_ratio=0.1) == pytest.approx(0.1)


def test_no_weight_decay_on_norms_biases_temperatures():
    import torch

    from xmr.train.optim import param_groups

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    scale = torch.nn.Parameter(torch.zeros(()))
    named = list(net.named_parameters()) + [("loss.logit_scale.audio_image", scale)]
    decay, no_decay = param_groups(named, 0.1)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0


def test_random_sampler_epochs_and_resume():
    from xmr.train.sampler import RandomBatchSampler

    s = RandomBatchSampler(10, 4, seed=3)
    first = [s.next_batch() for _ in range(2)]
    assert [end for _, end in first] == [False, True]  # 10 // 4 = 2 batches, last 2 items dropped
    assert len(set(first[0][0] + first[1][0])) == 8
    state = s.state_dict()
    rest = [s.next_batch()[0] for _ in range(3)]
    t = RandomBatchSampler(10, 4, seed=3)
    t.load_state_dict(state)
    assert [t.next_batch()[0] for _ in range(3)] == rest


def test_augmentations_are_seeded_and_real(tmp_path):
    import torch
    from train_tiny import write_tiny_manifest

    from xmr.train.data import BatchSpec, ItemStore, random_affine

    manifest = write_tiny_manifest(tmp_path, n_train=4, n_val=1)
    items = ItemStore.from_manifest(manifest, split="train", sample_rate=16000, image_size=(32, 96),
                                    cache_dir=tmp_path / "cache")
    again = ItemStore.from_manifest(manifest, split="train", sample_rate=16000, image_size=(32, 96),
                                    cache_dir=tmp_path / "cache")  # read back from the npy cache
    assert np.array_equal(items.waveform(2), again.waveform(2))
    spec = BatchSpec(audio_samples=8000, random_crop=True, affine=True, caption_choice="random")
    a = items.batch([0, 1, 2], spec=spec, seed=0, step=5)
    b = items.batch([2], spec=spec, seed=0, step=5)  # same item, same step: same augmentation
    assert torch.equal(a.audio[2], b.audio[0]) and torch.equal(a.image[2], b.image[0])
    c = items.batch([2], spec=spec, seed=0, step=6)
    assert not torch.equal(a.audio[2], c.audio[0]) and not torch.equal(a.image[2], c.image[0])
    plain = items.batch([2], spec=BatchSpec(audio_samples=8000), seed=0, step=5)
    assert torch.equal(plain.image[0], items.image(2))  # no augmentation when off
    assert a.audio.shape == (3, 8000) and a.image.shape == (3, 1, 32, 96)

    img = torch.ones(1, 20, 20)
    img[:, 8:12, :] = 0.0  # a black bar on white paper
    gen = torch.Generator().manual_seed(0)
    out = random_affine(img, gen=gen, degrees=25, translate=0.15, scale=(0.75, 1.25))
    assert out.shape == img.shape and not torch.equal(out, img)
    assert out[:, 0, 0].item() == pytest.approx(1.0)  # the uncovered corner is filled with paper white


def test_gradcache_accumulation_equals_full_batch(tmp_path):
    """Without BatchNorm, accum_steps=2 must give the full-batch gradient (GradCache)."""
    import torch
    from train_tiny import write_tiny_manifest

    from xmr.train.config import load_config
    from xmr.train.loop import Trainer

    manifest = write_tiny_manifest(tmp_path / "c", n_train=8, n_val=2)

    def grads(accum):
        cfg = load_config(ROOT / "configs" / "tiny.yaml", [
            f"data.manifest={manifest}", f"data.cache_dir={tmp_path / 'cache'}", f"train.accum_steps={accum}",
            "data.modalities=[image, text]", "optim.clip_grad=null"])
        trainer = Trainer(cfg, out_dir=tmp_path / f"run{accum}")
        for mod in trainer.model.modules():  # BatchNorm in eval mode: statistics independent of splits
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.eval()
                mod.train = lambda mode=True, m=mod: m
        trainer.optimizer.step = lambda *a, **k: None  # keep the weights; compare gradients
        batch, _ = trainer.sampler.next_batch()
        logs = trainer.train_step(batch)
        named = trainer.model.named_parameters()
        return logs["loss"], {n: p.grad.clone() for n, p in named if p.grad is not None}

    loss1, g1 = grads(1)
    loss2, g2 = grads(2)
    assert loss1 == pytest.approx(loss2, rel=1e-6)
    assert g1.keys() == g2.keys() and g1
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-6)


def test_batched_affine_matches_torchvision():
    """The batched warp (one grid_sample) against torchvision's per-image affine."""
    import torch
    from torchvision.transforms.v2 import functional as F

    from xmr.train.data import apply_affine

    torch.manual_seed(0)
    img = torch.rand(1, 1, 40, 100)
    img[..., [0, -1], :] = 1.0
    img[..., :, [0, -1]] = 1.0
    params = [(20.0, 0.1, -0.05, 1.2), (0.0, 0.0, 0.0, 1.0), (-10.0, -0.15, 0.1, 0.8)]
    out = apply_affine(img.repeat(3, 1, 1, 1), params)
    for k, (angle, tx, ty, sc) in enumerate(params):
        ref = F.affine(img[0], angle=angle, translate=[round(tx * 100), round(ty * 40)], scale=sc,
                       shear=[0.0, 0.0], fill=1.0, interpolation=F.InterpolationMode.BILINEAR)
        assert float((out[k] - ref).abs().mean()) < 0.01  # equal up to edge pixels of interpolation
    assert torch.allclose(out[1], img[0], atol=1e-5)
