"""Acceptance 3: an interrupted run resumed with ``--resume`` ends with the uninterrupted run's weights,
memories and optimizer state (exactly), including GradCache accumulation, SCFEM memories, augmentation
and an epoch boundary inside the interrupted part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from train_tiny import write_tiny_manifest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    return write_tiny_manifest(tmp_path_factory.mktemp("train_corpus"), n_train=16, n_val=8)


def _cfg(manifest, cache, *extra):
    from xmr.train.config import load_config

    return load_config(ROOT / "configs" / "tiny.yaml", [
        f"data.manifest={manifest}", f"data.cache_dir={cache}", "train.steps=6", "train.accum_steps=2",
        "loss.memory=scfem", "loss.warmup_steps=2", "train.eval_every=3", *extra])


def test_interrupt_and_resume_reproduces_weights(tiny_manifest, tmp_path):
    import torch

    import xmr
    from xmr.train.loop import train

    cache = tmp_path / "cache"
    full = train(_cfg(tiny_manifest, cache), out_dir=tmp_path / "full")
    assert full["steps"] == 6
    part = train(_cfg(tiny_manifest, cache), out_dir=tmp_path / "part", stop_after=3)
    assert part == {"step": 3, "interrupted": True}
    assert not list((tmp_path / "part").glob("*.tmp"))  # atomic write left no temporary file
    train(_cfg(tiny_manifest, cache), out_dir=tmp_path / "part", resume=True)

    a = torch.load(tmp_path / "full" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert a["sampler"] == b["sampler"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["loss_extra"]:
        assert torch.equal(a["loss_extra"][k], b["loss_extra"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    assert a["loss_extra"]["audio.emb"].abs().sum() > 0  # the SCFEM memory was written

    # the exported checkpoint loads through the public API and encodes
    model = xmr.load_model(tmp_path / "part" / "checkpoint")
    vec = model.encode("audio", [np.zeros(8000, np.float32)])
    assert vec.shape == (1, 32) and np.isclose(np.linalg.norm(vec), 1.0, atol=1e-5)
    logs = [json.loads(line) for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert any(rec.get("kind") == "val" and "audio→image/MRR" in rec for rec in logs)


def test_resume_after_a_kill_logs_each_step_once(tiny_manifest, tmp_path):
    """A run killed after its last checkpoint logged more steps; resuming redoes them, logged once."""
    import shutil

    from xmr.train.loop import train

    cache, out = tmp_path / "cache", tmp_path / "run"
    full = tmp_path / "full"
    train(_cfg(tiny_manifest, cache), out_dir=full)
    train(_cfg(tiny_manifest, cache), out_dir=out, stop_after=3)
    shutil.copy(out / "state.pt", tmp_path / "state-3.pt")
    train(_cfg(tiny_manifest, cache), out_dir=out, resume=True, stop_after=2)  # steps 4-5 logged
    shutil.copy(tmp_path / "state-3.pt", out / "state.pt")  # as if killed before a step-5 checkpoint
    train(_cfg(tiny_manifest, cache), out_dir=out, resume=True)

    def steps(folder):
        rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        return [(r["kind"], r["step"]) for r in rows]

    assert steps(out) == steps(full)
    assert len(set(steps(out))) == len(steps(out))


def test_resume_refuses_a_different_model(tiny_manifest, tmp_path):
    from xmr.errors import InputError
    from xmr.train.loop import train

    cache = tmp_path / "cache"
    train(_cfg(tiny_manifest, cache, "train.steps=2", "train.eval_every=0"), out_dir=tmp_path / "run",
          stop_after=1)
    with pytest.raises(InputError, match="different model"):
        train(_cfg(tiny_manifest, cache, "train.steps=2", "model.embed_dim=16"), out_dir=tmp_path / "run",
              resume=True)
    with pytest.raises(InputError, match="already holds a run"):
        train(_cfg(tiny_manifest, cache, "train.steps=2"), out_dir=tmp_path / "run")
