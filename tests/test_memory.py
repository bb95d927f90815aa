"""Memories (SCFEM, XBM): contents and losses checked by hand over two small epochs."""

from __future__ import annotations

import math

import pytest
import torch

from xmr.errors import InputError
from xmr.train.losses import build_loss
from xmr.train.memory import EpochMemory, QueueMemory

TAU = 0.07


def vec(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def dot(a, b) -> float:
    return sum(float(u) * float(v) for u, v in zip(a, b, strict=True))


# Two epochs over N = 4 items in batches of 2 (E = 2, D = 2); the embedding of item j at its
# k-th visit is a fixed unit vector, so every number below can be worked out by hand.
SCHEDULE = [[0, 1], [2, 3], [1, 3], [0, 2]]  # steps 0-1: epoch 0; steps 2-3: epoch 1
AUDIO = {(j, k): vec(40 * j + 7 * k) for j in range(4) for k in range(2)}
IMAGE = {(j, k): vec(40 * j + 15 - 11 * k) for j in range(4) for k in range(2)}


def run_epochs(loss_fn, upto: int):
    visits = [0, 0, 0, 0]
    out = []
    for step, items in enumerate(SCHEDULE[:upto]):
        a = torch.tensor([AUDIO[(j, visits[j])] for j in items])
        i = torch.tensor([IMAGE[(j, visits[j])] for j in items])
        for j in items:
            visits[j] += 1
        out.append(loss_fn({"audio": a, "image": i}, None, torch.tensor(items), None, step=step))
        if step == 1:
            loss_fn.on_epoch_end()
    return out


def test_epoch_memory_contents_over_two_epochs():
    loss_fn = build_loss(
        {"memory": "scfem", "num_items": 4, "embed_dim": 2, "pairs": ["audio-image"], "warmup_steps": 2}
    )
    run_epochs(loss_fn, 2)
    ma = loss_fn.memories["audio"]
    assert ma.valid[0].tolist() == [True] * 4 and ma.valid[1].tolist() == [False] * 4
    for j in range(4):
        assert ma.slot(0)[j].tolist() == pytest.approx(AUDIO[(j, 0)])
    loss_fn2 = build_loss(
        {"memory": "scfem", "num_items": 4, "embed_dim": 2, "pairs": ["audio-image"], "warmup_steps": 2}
    )
    run_epochs(loss_fn2, 3)  # step 2 wrote items 1 and 3 of epoch 1
    mi = loss_fn2.memories["image"]
    assert mi.valid[0].tolist() == [True] * 4
    assert mi.valid[1].tolist() == [False, True, False, True]
    for j in (1, 3):
        assert mi.slot(0)[j].tolist() == pytest.approx(IMAGE[(j, 1)])  # epoch t
        assert mi.slot(1)[j].tolist() == pytest.approx(IMAGE[(j, 0)])  # epoch t-1
    for j in (0, 2):
        assert mi.slot(0)[j].tolist() == pytest.approx(IMAGE[(j, 0)])
    assert mi.epoch == 1 and loss_fn2.memories["audio"].epoch == 1


def hand_half(anchor, positive_item, slots) -> float:
    """-sum_e log(w_e exp(s_+/tau) / sum_j exp(s_j/tau)) for one anchor (w_e = 1); ``slots[e]`` maps
    item -> stored vector (missing = not stored); a slot without the anchor's item has no term."""
    total = 0.0
    for slot in slots:
        if positive_item not in slot:
            continue
        denom = sum(math.exp(dot(anchor, v) / TAU) for v in slot.values())
        total += -(math.log(1.0) + dot(anchor, slot[positive_item]) / TAU - math.log(denom))
    return total


def hand_batch(a, i) -> float:
    m = len(a)
    total = 0.0
    for x, y in ((a, i), (i, a)):
        for r in range(m):
            denom = sum(math.exp(dot(x[r], y[c]) / TAU) for c in range(m))
            total += -(dot(x[r], y[r]) / TAU - math.log(denom))
    return total / m


def test_scfem_losses_by_hand_over_two_epochs():
    loss_fn = build_loss(
        {"memory": "scfem", "num_items": 4, "embed_dim": 2, "pairs": ["audio-image"], "warmup_steps": 2}
    )
    results = run_epochs(loss_fn, 4)
    # epoch 0 is warm-up: the batch loss only (eq. 3)
    for step in (0, 1):
        loss, logs = results[step]
        items = SCHEDULE[step]
        want = hand_batch([AUDIO[(j, 0)] for j in items], [IMAGE[(j, 0)] for j in items])
        assert loss.item() == pytest.approx(want, rel=1e-5)
        assert set(logs) == {"audio-image/batch", "loss"}

    # step 2 (epoch 1, items 1 and 3, written first): slot 0 = {0, 2: epoch 0; 1, 3: now},
    # slot 1 = {1, 3: epoch 0} (items 0 and 2 have no second embedding yet)
    loss, logs = results[2]
    a_now = {j: AUDIO[(j, 1)] for j in (1, 3)}
    i_now = {j: IMAGE[(j, 1)] for j in (1, 3)}
    a_slots = [
        {0: AUDIO[(0, 0)], 1: a_now[1], 2: AUDIO[(2, 0)], 3: a_now[3]},
        {1: AUDIO[(1, 0)], 3: AUDIO[(3, 0)]},
    ]
    i_slots = [
        {0: IMAGE[(0, 0)], 1: i_now[1], 2: IMAGE[(2, 0)], 3: i_now[3]},
        {1: IMAGE[(1, 0)], 3: IMAGE[(3, 0)]},
    ]
    m = 2
    l_self = (
        sum(hand_half(a_now[j], j, a_slots) + hand_half(i_now[j], j, i_slots) for j in (1, 3)) / m
    )  # eq. 6
    l_cross = (
        sum(hand_half(a_now[j], j, i_slots) + hand_half(i_now[j], j, a_slots) for j in (1, 3)) / m
    )  # eq. 7
    l_batch = hand_batch([a_now[1], a_now[3]], [i_now[1], i_now[3]])
    assert logs["audio-image/self"] == pytest.approx(l_self, rel=1e-5)
    assert logs["audio-image/cross"] == pytest.approx(l_cross, rel=1e-5)
    assert loss.item() == pytest.approx(l_batch + 0.3 * l_self + 0.2 * l_cross, rel=1e-5)  # eq. 8
    # one term written out in full: anchor audio of item 1 against slot 1 of M^x
    s11, s13 = dot(a_now[1], AUDIO[(1, 0)]), dot(a_now[1], AUDIO[(3, 0)])
    term = -math.log(math.exp(s11 / TAU) / (math.exp(s11 / TAU) + math.exp(s13 / TAU)))
    assert hand_half(a_now[1], 1, [a_slots[1]]) == pytest.approx(term)

    # step 3 (items 0 and 2): every item now has two epochs in memory
    loss, logs = results[3]
    a_now = {j: AUDIO[(j, 1)] for j in (0, 2)}
    i_now = {j: IMAGE[(j, 1)] for j in (0, 2)}
    a_slots = [{j: AUDIO[(j, 1)] for j in range(4)}, {j: AUDIO[(j, 0)] for j in range(4)}]
    i_slots = [{j: IMAGE[(j, 1)] for j in range(4)}, {j: IMAGE[(j, 0)] for j in range(4)}]
    l_self = sum(hand_half(a_now[j], j, a_slots) + hand_half(i_now[j], j, i_slots) for j in (0, 2)) / m
    l_cross = sum(hand_half(a_now[j], j, i_slots) + hand_half(i_now[j], j, a_slots) for j in (0, 2)) / m
    l_batch = hand_batch([a_now[0], a_now[2]], [i_now[0], i_now[2]])
    assert logs["audio-image/self"] == pytest.approx(l_self, rel=1e-5)
    assert logs["audio-image/cross"] == pytest.approx(l_cross, rel=1e-5)
    assert loss.item() == pytest.approx(l_batch + 0.3 * l_self + 0.2 * l_cross, rel=1e-5)
    mem = loss_fn.memories["audio"]
    for j in range(4):
        assert mem.slot(0)[j].tolist() == pytest.approx(AUDIO[(j, 1)])
        assert mem.slot(1)[j].tolist() == pytest.approx(AUDIO[(j, 0)])


def test_scfem_weights_groups_and_state_round_trip():
    cfg = {"memory": "scfem", "num_items": 4, "embed_dim": 2, "pairs": ["audio-image"], "warmup_steps": 2}
    base = run_epochs(build_loss(cfg), 4)[3][1]
    scaled = run_epochs(build_loss({**cfg, "memory_weights": [1.0, 0.5], "memory_weight_mode": "scale"}), 4)[
        3
    ][1]
    logged = run_epochs(build_loss({**cfg, "memory_weights": [1.0, 0.5]}), 4)[3][1]
    # "log" (as printed): w_e adds -log w_e per anchor and modality half (2 anchors x 2 halves / m=2)
    assert logged["audio-image/self"] == pytest.approx(base["audio-image/self"] - 2 * math.log(0.5), rel=1e-5)
    assert scaled["audio-image/self"] < base["audio-image/self"]

    # a stored group-mate of the anchor is not a negative: with all four items in one group each
    # anchor's slot denominator holds only its own entry, so every memory term is log(1) = 0
    fn = build_loss(cfg)
    visits = [0] * 4
    for step, items in enumerate(SCHEDULE):
        a = torch.tensor([AUDIO[(j, visits[j])] for j in items])
        i = torch.tensor([IMAGE[(j, visits[j])] for j in items])
        for j in items:
            visits[j] += 1
        _, logs = fn(
            {"audio": a, "image": i}, None, torch.tensor(items), torch.zeros(2, dtype=torch.long), step
        )
    assert logs["audio-image/self"] == pytest.approx(0.0, abs=1e-6)
    assert logs["audio-image/cross"] == pytest.approx(0.0, abs=1e-6)

    full = build_loss(cfg)
    run_epochs(full, 2)
    state = full.memory_state()
    assert set(state) == {f"{m}.{k}" for m in ("audio", "image") for k in ("emb", "valid", "groups", "epoch")}
    assert tuple(state["audio.emb"].shape) == (2, 4, 2)  # (E, N, D): M^x of N x D x E
    fresh = build_loss({**cfg, "embed_dim": 0})
    fresh.load_memory_state(state)
    for k, v in fresh.memory_state().items():
        assert torch.equal(v, state[k])


def test_epoch_memory_unit_behaviour():
    mem = EpochMemory(num_items=0, dim=3, epochs=3)
    mem.write(torch.tensor([5]), torch.ones(1, 3))
    assert mem.num_items == 6  # grows on demand
    mem.write(torch.tensor([5, 1]), torch.stack([torch.full((3,), 2.0), torch.zeros(3)]))
    assert mem.valid[:, 5].tolist() == [True, True, False]
    assert mem.emb[:2, 5, 0].tolist() == [2.0, 1.0]
    with pytest.raises(InputError):
        mem.write(torch.tensor([1, 1]), torch.zeros(2, 3))
    with pytest.raises(InputError):
        mem.write(torch.tensor([1]), torch.zeros(1, 4))
    other = EpochMemory(num_items=6, dim=3, epochs=2)
    with pytest.raises(InputError):
        other.load_state_dict(mem.state_dict())


def test_queue_memory_fifo():
    q = QueueMemory(size=4, dim=1)
    q.write(torch.tensor([1, 2, 3]), torch.tensor([[1.0], [2.0], [3.0]]))
    q.write(torch.tensor([4, 5]), torch.tensor([[4.0], [5.0]]))
    emb, ids, _ = q.contents()
    assert ids.tolist() == [2, 3, 4, 5] and emb[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0]
    q.write(torch.arange(10, 16), torch.arange(6.0)[:, None])  # more than fits: the newest 4 stay
    assert q.contents()[1].tolist() == [12, 13, 14, 15]
    r = QueueMemory(size=4, dim=1)
    r.load_state_dict(q.state_dict())
    assert r.contents()[1].tolist() == [12, 13, 14, 15] and r.ptr == q.ptr


def test_xbm_loss_matches_loops():
    fn = build_loss({"memory": "xbm", "xbm_size": 5, "embed_dim": 2, "pairs": ["audio-image"]})
    history = []  # (id, audio, image) in queue order
    for step, items in enumerate([[0, 1], [2, 3], [4, 5], [6, 7]]):
        a = torch.tensor([vec(33 * j + 5 * step) for j in items])
        i = torch.tensor([vec(33 * j - 9 + 4 * step) for j in items])
        loss, logs = fn({"audio": a, "image": i}, None, torch.tensor(items), None, step)
        history += [(j, a[r].tolist(), i[r].tolist()) for r, j in enumerate(items)]
        queue = history[-5:]  # written before the loss, as XBM enqueues
        want = 0.0
        for r, j in enumerate(items):
            for anchor, pos, col in ((a[r].tolist(), i[r].tolist(), 2), (i[r].tolist(), a[r].tolist(), 1)):
                negs = [e[col] for e in queue if e[0] != j]
                denom = math.exp(dot(anchor, pos) / TAU) + sum(math.exp(dot(anchor, v) / TAU) for v in negs)
                want += -(dot(anchor, pos) / TAU - math.log(denom))
        assert logs["audio-image/xbm"] == pytest.approx(want / 2, rel=1e-5)
        assert loss.item() == pytest.approx(logs["audio-image/batch"] + want / 2, rel=1e-5)


@pytest.mark.parametrize("mode", ["log", "scale"])
def test_scfem_three_modalities_with_missing_items_matches_loops(mode):
    """Per-pair SCFEM with audio, image and text, missing modalities and shared groups, against loops
    over the memory contents (which the loss writes before it computes, so the state after the call
    is the one it used)."""
    n, d, b = 12, 4, 6
    fn = build_loss(
        {
            "memory": "scfem",
            "num_items": n,
            "embed_dim": d,
            "memory_weights": [1.0, 0.5],
            "memory_weight_mode": mode,
        }
    )
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        ids = torch.randperm(n, generator=g)[:b]
        emb = {
            m: torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
            for m in ("audio", "image", "text")
        }
        present = {m: torch.ones(b, dtype=torch.bool) for m in emb}
        present["text"][0] = False
        present["image"][1] = False
        groups = ids.clone()
        groups[3] = groups[2]  # rows 2 and 3 share a caption
        loss, logs = fn(emb, present, ids, groups, step)
    mem = {m: fn.memories[m] for m in emb}

    def half(a, item, grp, M):
        total = 0.0
        for e in range(2):
            if not M.valid[e, item]:
                continue
            cols = [j for j in range(n) if M.valid[e, j] and (j == item or int(M.groups[j]) != grp)]
            denom = sum(math.exp(dot(a, M.emb[e, j]) / TAU) for j in cols)
            log_prob = dot(a, M.emb[e, item]) / TAU - math.log(denom)
            w = [1.0, 0.5][e]
            total += -(math.log(w) + log_prob) if mode == "log" else -w * log_prob
        return total

    for x, y in (("audio", "image"), ("audio", "text"), ("image", "text")):
        rows = [r for r in range(b) if present[x][r] and present[y][r]]
        self_ = sum(
            half(emb[x][r], int(ids[r]), int(groups[r]), mem[x])
            + half(emb[y][r], int(ids[r]), int(groups[r]), mem[y])
            for r in rows
        ) / len(rows)
        cross = sum(
            half(emb[x][r], int(ids[r]), int(groups[r]), mem[y])
            + half(emb[y][r], int(ids[r]), int(groups[r]), mem[x])
            for r in rows
        ) / len(rows)
        assert logs[f"{x}-{y}/self"] == pytest.approx(self_, rel=1e-5)
        assert logs[f"{x}-{y}/cross"] == pytest.approx(cross, rel=1e-5)
    want = sum(
        logs[f"{p}/batch"] + 0.3 * logs[f"{p}/self"] + 0.2 * logs[f"{p}/cross"]
        for p in ("audio-image", "audio-text", "image-text")
    )
    assert loss.item() == pytest.approx(want, rel=1e-5)
