"""Losses against plain reference implementations written with explicit Python loops."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from xmr.errors import InputError
from xmr.train.losses import LossConfig, build_loss

MODS = ("audio", "image", "text")


def dot(a, b) -> float:
    return sum(float(u) * float(v) for u, v in zip(a, b, strict=True))


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).float()


def ref_pair(ex, ey, ids, groups, *, kind="infonce", tau=0.07, margin=0.2) -> float:
    """One pair's batch loss: both directions, mean over anchors, group-mates not negatives."""
    m = len(ex)
    total = 0.0
    for a, b in ((ex, ey), (ey, ex)):
        for i in range(m):
            negs = [j for j in range(m) if j != i and groups[j] != groups[i] and ids[j] != ids[i]]
            if kind == "infonce":
                denom = math.exp(dot(a[i], b[i]) / tau) + sum(math.exp(dot(a[i], b[j]) / tau) for j in negs)
                total += -(dot(a[i], b[i]) / tau - math.log(denom))
            else:
                hinges = [max(0.0, margin - dot(a[i], b[i]) + dot(a[i], b[j])) for j in negs]
                if kind == "vsepp_max":
                    total += max(hinges, default=0.0)
                else:
                    total += sum(hinges)
    return total / m


def ref_total(emb, present, ids, groups, pairs=("audio-image", "audio-text", "image-text"), **kw) -> float:
    total = 0.0
    taus = {k[4:]: kw.pop(k) for k in list(kw) if k.startswith("tau_")}
    for pair in pairs:
        x, y = pair.split("-")
        if x not in emb or y not in emb:
            continue
        rows = [i for i in range(len(ids)) if present[x][i] and present[y][i]]
        if not rows:
            continue
        args = {**kw, "tau": taus[pair]} if pair in taus else kw
        total += ref_pair(
            [emb[x][i] for i in rows],
            [emb[y][i] for i in rows],
            [int(ids[i]) for i in rows],
            [int(groups[i]) for i in rows],
            **args,
        )
    return total


def batch(b=8, d=6, seed=0, missing=True):
    emb = {m: unit(b, d, seed + k) for k, m in enumerate(MODS)}
    present = {m: torch.ones(b, dtype=torch.bool) for m in MODS}
    if missing:
        present["text"][[1, 5]] = False
        present["image"][3] = False
    ids = torch.arange(100, 100 + b)
    groups = torch.arange(b)
    groups[6] = groups[2]  # items 2 and 6 share a caption
    return emb, present, ids, groups


@pytest.mark.parametrize("kind", ["infonce", "vsepp_max", "vsepp_sum"])
def test_batch_losses_match_reference(kind):
    emb, present, ids, groups = batch()
    loss_fn = build_loss({"kind": kind})
    loss, logs = loss_fn(emb, present, ids, groups, step=0)
    ref = ref_total(emb, present, ids, groups, kind=kind)
    assert loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert set(logs) == {"audio-image/batch", "audio-text/batch", "image-text/batch", "loss"}


def test_infonce_single_pair_is_cross_entropy_both_ways():
    a, b = unit(5, 4, 1), unit(5, 4, 2)
    loss, _ = build_loss({"pairs": ["audio-image"]})({"audio": a, "image": b}, None, torch.arange(5))
    logits = a @ b.T / 0.07
    ce = torch.nn.functional.cross_entropy
    # Chao et al. 2022, eq. (4); Nakatsuka et al. 2023, eq. (3)
    want = ce(logits, torch.arange(5)) + ce(logits.T, torch.arange(5))
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_multi_positive_masking_removes_group_mates_from_the_denominator():
    emb, present, ids, _ = batch(missing=False)
    emb["text"][6] = emb["text"][2]  # the same caption twice
    groups = torch.arange(8)
    groups[6] = 2
    masked, _ = build_loss({"pairs": ["audio-text"]})(emb, present, ids, groups)
    plain, _ = build_loss({"pairs": ["audio-text"]})(emb, present, ids, None)
    assert masked.item() == pytest.approx(
        ref_total(emb, present, ids, groups, pairs=["audio-text"]), rel=1e-5
    )
    assert masked.item() < plain.item()  # the duplicate caption is no longer pushed away


def test_per_pair_temperature_and_learnable_clamp():
    emb, present, ids, groups = batch()
    temps = {"audio-image": 0.05, "audio-text": 0.1, "image-text": 0.2}
    loss, _ = build_loss({"temperature": temps})(emb, present, ids, groups)
    ref = ref_total(emb, present, ids, groups, **{f"tau_{k}": v for k, v in temps.items()})
    assert loss.item() == pytest.approx(ref, rel=1e-5)

    learn = build_loss({"learnable_temperature": True})
    names = [n for n, _ in learn.named_parameters()]
    assert len(names) == 3 and all("logit_scale" in n for n in names)
    loss, logs = learn(emb, present, ids, groups)
    assert loss.item() == pytest.approx(ref_total(emb, present, ids, groups), rel=1e-5)
    assert logs["audio-image/temperature"] == pytest.approx(0.07, rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in learn.parameters())
    with torch.no_grad():  # beyond CLIP's clamp: the scale stays at 100 (tau = 0.01)
        for p in learn.parameters():
            p.fill_(math.log(500.0))
    loss, _ = learn(emb, present, ids, groups)
    assert loss.item() == pytest.approx(ref_total(emb, present, ids, groups, tau=0.01), rel=1e-4)


@pytest.mark.parametrize("memory", ["none", "xbm", "scfem"])
@pytest.mark.parametrize("kind", ["infonce", "vsepp_max"])
@pytest.mark.parametrize("world", [2, 4])
def test_local_losses_average_to_the_global_loss(kind, memory, world):
    """The trainer's DDP contract: mean over processes of loss(local=rows of r) == loss(global)."""
    loss_fn = build_loss({"kind": kind, "memory": memory, "num_items": 40, "embed_dim": 6, "xbm_size": 12})
    for step in range(3):  # fill the memories with a few earlier batches
        e, p, _, g = batch(seed=10 * step)
        loss_fn(e, p, torch.arange(8 * step, 8 * step + 8) % 20, g, step=step)
    emb, present, _, groups = batch(seed=99)
    ids = torch.arange(8) + 4
    full_fn = copy.deepcopy(loss_fn)
    full, full_logs = full_fn(emb, present, ids, groups, step=3)
    per_rank = []
    for r in range(world):
        k = 8 // world
        replica = copy.deepcopy(loss_fn)  # every process keeps its own identical memory
        loss, _ = replica(emb, present, ids, groups, step=3, local=slice(r * k, (r + 1) * k))
        per_rank.append(loss.item())
        for m in replica.memories:  # and all replicas write the same global batch
            for key, v in replica.memories[m].state_dict().items():
                assert torch.equal(v, full_fn.memories[m].state_dict()[key])
    assert sum(per_rank) / world == pytest.approx(full.item(), rel=1e-5, abs=1e-6)
    if memory != "none":
        assert any(k.endswith("/self") or k.endswith("/xbm") for k in full_logs)


def test_local_gradients_sum_to_the_global_gradient():
    emb, present, ids, groups = batch()
    leaves = {m: v.clone().requires_grad_(True) for m, v in emb.items()}
    loss, _ = build_loss()(leaves, present, ids, groups)
    loss.backward()
    want = {m: v.grad.clone() for m, v in leaves.items()}
    got = {m: torch.zeros_like(v) for m, v in emb.items()}
    for r in range(2):
        lv = {m: v.clone().requires_grad_(True) for m, v in emb.items()}
        loss, _ = build_loss()(lv, present, ids, groups, local=slice(4 * r, 4 * r + 4))
        (loss / 2).backward()
        for m in got:
            got[m] += lv[m].grad
    for m in want:
        torch.testing.assert_close(got[m], want[m], rtol=1e-5, atol=1e-6)


def test_missing_pairs_are_skipped_and_bad_configs_raise():
    emb, present, ids, groups = batch()
    present["text"][:] = False
    loss, logs = build_loss()(emb, present, ids, groups)
    assert "audio-text/batch" not in logs and "audio-image/batch" in logs
    only_audio = {"audio": emb["audio"].requires_grad_(True)}
    loss, logs = build_loss()(only_audio, None, ids)
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(InputError):
        build_loss({"kind": "triplet"})
    with pytest.raises(InputError):
        build_loss({"memory": "moco"})
    with pytest.raises(InputError):
        build_loss({"bogus": 1})
    with pytest.raises(InputError):
        build_loss({"pairs": ["audio-audio"]})
    with pytest.raises(InputError):
        build_loss()(emb, present, ids, groups, local=slice(0, 3))
    cfg = LossConfig.from_dict({"name": "scfem"})
    assert (
        cfg.kind == "infonce" and cfg.memory == "scfem" and cfg.lambda_self == 0.3 and cfg.memory_epochs == 2
    )
