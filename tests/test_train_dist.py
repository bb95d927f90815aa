"""Acceptance 2: ``torchrun --nproc_per_node 2 -m xmr train`` on CPU (gloo) equals the single-process
step on the same global batch.

The towers have BatchNorm, whose batch statistics depend on how a batch is split, so the
single-process reference uses ``accum_steps=2`` (GradCache sub-batches = the two processes' rows):
the two runs must then agree on every loss and every weight. This checks the gather with gradient,
the local loss, the gradient all-reduce and GradCache accumulation together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_tiny import write_tiny_manifest

ROOT = Path(__file__).resolve().parent.parent


def _losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["kind"] == "train"]


def _params(run: Path) -> dict:
    import torch

    state = torch.load(run / "state.pt", weights_only=True)["model"]
    # running statistics are buffers (rank 0's under DDP semantics), not trained weights
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_processes_equal_single_process(tmp_path):
    manifest = write_tiny_manifest(tmp_path / "corpus", n_train=16, n_val=4)
    common = ["--config", str(ROOT / "configs" / "tiny.yaml"), "--set", f"data.manifest={manifest}",
              "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.steps=3",
              "--set", "loss.memory=scfem", "--set", "loss.warmup_steps=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    single = subprocess.run([sys.executable, "-m", "xmr", "train", *common, "--out", str(tmp_path / "one"),
                             "--set", "train.accum_steps=2"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node", "2", "-m", "xmr", "train", *common,
                            "--out", str(tmp_path / "two")],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert multi.returncode == 0, multi.stderr[-3000:]

    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    assert one == pytest.approx(two, rel=1e-5, abs=1e-6)  # step 1 before any update, then after updates
    p1, p2 = _params(tmp_path / "one"), _params(tmp_path / "two")
    assert p1.keys() == p2.keys()
    worst = max(float((p1[k].float() - p2[k].float()).abs().max()) for k in p1)
    assert worst < 1e-4
    assert one[0] != one[-1]  # the steps did change the model
    assert (tmp_path / "two" / "checkpoint" / "model.safetensors").exists()
