"""Head-only training on frozen pretrained towers (tiny CLAP audio + text, tiny CLIP vision).

Each frozen backbone sees each training item once (its features are cached, as the frozen text
tower's are), only the heads change, and fine-tuning puts the backbones in their own lower-lr group.
"""

from __future__ import annotations

import hub_tiny
import pytest
import torch
from train_tiny import write_tiny_manifest


def _config(tmp_path, *, frozen: bool = True, **optim):
    from xmr.train.config import TrainConfig

    clap = hub_tiny.write_tiny_clap(tmp_path / "clap")
    clip = hub_tiny.write_tiny_clip(tmp_path / "clip")
    manifest = write_tiny_manifest(tmp_path / "data", n_train=12, n_val=4)

    def tower(kind, arch, source, head="linear"):
        return {"kind": kind, "arch": arch, "backbone": str(source), "pretrained": kind != "hf_text",
                "head": head, "frozen": frozen, "pooling": "pooler"}

    return TrainConfig.from_dict({
        "model": {"name": "custom", "embed_dim": 16,
                  "audio": tower("hf_audio", "clap", clap), "image": tower("hf_image", "clip", clip),
                  "text": tower("hf_text", "clap_text_proj", clap)},
        "data": {"manifest": str(manifest), "batch_size": 4, "random_crop": True, "affine": True,
                 "cache_dir": str(tmp_path / "cache")},
        "optim": {"lr": 1e-2, "warmup_steps": 0, **optim},
        "train": {"steps": 6, "eval_every": 0, "log_every": 1, "amp": "off", "num_threads": 1,
                  "progress": False, "tensorboard": False},
    })


def test_frozen_towers_run_once_per_item_and_only_heads_train(tmp_path, monkeypatch):
    from xmr.models.hub import HFAudioTower, HFImageTower
    from xmr.train.loop import Trainer

    rows = {"audio": 0, "image": 0}
    for m, cls in (("audio", HFAudioTower), ("image", HFImageTower)):
        original = cls.forward

        def counted(self, x, _m=m, _f=original):
            rows[_m] += x.shape[0]
            return _f(self, x)

        monkeypatch.setattr(cls, "forward", counted)
    trainer = Trainer(_config(tmp_path), out_dir=tmp_path / "run")
    assert rows == {"audio": 12, "image": 12}  # the cache: once per training item
    model = trainer.adapter.unwrapped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit()  # 6 steps of 4 = two epochs over the 12 items
    assert rows == {"audio": 12, "image": 12}
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("heads.") for k in changed)
    assert any(k.startswith("heads.audio") for k in changed)
    assert any(k.startswith("heads.image") for k in changed)
    # a second run over the same data reads the persisted features: no backbone call at all
    Trainer(_config(tmp_path), out_dir=tmp_path / "run2")
    assert rows == {"audio": 12, "image": 12}


def test_finetuning_puts_backbones_in_a_lower_lr_group(tmp_path):
    from xmr.train.loop import Trainer

    trainer = Trainer(_config(tmp_path, frozen=False, backbone_lr_scale=0.1), out_dir=tmp_path / "ft")
    assert not trainer.cached_media
    lrs = sorted({g["lr"] for g in trainer.optimizer.param_groups})
    assert lrs == pytest.approx([1e-3, 1e-2])
    backbone = {id(p) for n, p in trainer.model.named_parameters() if n.startswith("towers.")}
    for g in trainer.optimizer.param_groups:
        in_towers = {id(p) in backbone for p in g["params"]}
        assert in_towers <= {g["lr"] == pytest.approx(1e-3)}
