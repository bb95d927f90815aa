"""The part head (xmr.train.part_head): fitted on a real tiny corpus it changes no other weight,
lowers its loss and is kept by its checkpoint; short clips, and only they, go through it on the
one query path (:func:`xmr.index.embed_audio`); a run started from its checkpoint leaves it out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

FIT = ["steps=60", "batch_size=16", "clips_per_item=3", "min_seconds=0.5", "max_seconds=1.0", "lr=0.01"]


@pytest.fixture(scope="module")
def part_checkpoint(tiny_checkpoint, tiny_corpus, tmp_path_factory):
    from xmr.cli import main

    tmp = tmp_path_factory.mktemp("part")
    args = ["part-head", "--checkpoint", str(tiny_checkpoint), "--manifest", str(tiny_corpus),
            "--cache", str(tmp / "cache")]
    assert main([*args, "--out", str(tmp / "a"), *[f"--set={s}" for s in FIT]]) == 0
    assert main([*args, "--out", str(tmp / "b"), *[f"--set={s}" for s in FIT]]) == 0  # from the cache
    return tmp


def test_the_fit_changes_only_the_part_head_and_is_kept(tiny_checkpoint, part_checkpoint):
    import xmr
    from xmr.models.checkpoint import read_checkpoint_config

    start, fitted = xmr.load_model(tiny_checkpoint), xmr.load_model(part_checkpoint / "a")
    assert fitted.has_part_head("audio") and not start.has_part_head("audio")
    assert fitted.fingerprint != start.fingerprint
    state = fitted.state_dict()
    assert all(torch.equal(state[k], v) for k, v in start.state_dict().items())
    added = {k for k in state if k not in start.state_dict()}
    assert added == {k for k in state if k.startswith("part_heads.")}
    # the towers are the same: caches keyed by the tower's config serve both
    assert fitted.config.tower("audio").without_head() == start.config.tower("audio").without_head()
    cfg = read_checkpoint_config(part_checkpoint / "a")
    log = cfg["part_head"]
    assert cfg["training"] == {"note": "untrained"}  # the source checkpoint's records are kept
    assert log["clips"] > 0 and log["loss"][-1] < log["loss"][0]
    assert log["config"]["steps"] == 60 and log["val"] is not None
    # the second fit read the clips' features back from the cache and came out the same
    assert len(list((part_checkpoint / "cache").glob("part-clips-*.pt"))) == 1
    again = xmr.load_model(part_checkpoint / "b")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in state.items())


def test_short_clips_and_only_they_go_through_the_part_head(tiny_checkpoint, part_checkpoint):
    import xmr
    from xmr.index.query import embed_audio, encode_query

    start, fitted = xmr.load_model(tiny_checkpoint), xmr.load_model(part_checkpoint / "a")
    sr = int(fitted.sample_rate)
    rng = np.random.default_rng(0)
    short, long = (rng.standard_normal(int(s * sr)).astype(np.float32) * 0.1 for s in (0.8, 3.0))
    part = fitted.encode("audio", [short], part=True)[0]
    plain = fitted.encode("audio", [short])[0]
    assert not np.allclose(part, plain, atol=1e-3)
    got = embed_audio(fitted, [long, short, long])  # mixed in one call, in their order
    np.testing.assert_allclose(got[1].vector, part, atol=1e-6)
    np.testing.assert_allclose(got[0].vector, embed_audio(start, [long])[0].vector, atol=1e-6)
    np.testing.assert_allclose(got[2].vector, got[0].vector, atol=1e-6)
    np.testing.assert_allclose(encode_query(fitted, audio=short).vector, part, atol=1e-6)
    # without a part head, a short clip takes the audio head
    np.testing.assert_allclose(embed_audio(start, [short])[0].vector, start.encode("audio", [short])[0],
                               atol=1e-6)
    assert fitted.uses_part_head(0.8) and not fitted.uses_part_head(3.0) and not start.uses_part_head(0.8)
    with pytest.raises(xmr.errors.InputError, match="no part head"):
        start.encode("audio", [short], part=True)


def test_clips_are_drawn_per_item_whatever_the_order_or_chunk(tiny_checkpoint, tiny_corpus):
    import xmr
    from xmr.data.manifest import read_manifest
    from xmr.train.part_head import PartHeadConfig, _features_of_clips, _split_clips, clip_features

    model = xmr.load_model(tiny_checkpoint)
    rows = read_manifest(tiny_corpus).sort_values("id").reset_index(drop=True).head(3)
    cfg = PartHeadConfig(clips_per_item=2, min_seconds=0.5, max_seconds=1.0)
    waves, owner = _split_clips(model, rows, cfg, {}, views=False, n=2)
    back, back_owner = _split_clips(model, rows.iloc[::-1].reset_index(drop=True), cfg, {}, views=False, n=2)
    assert len(waves) == 6 and owner.tolist() == [0, 0, 1, 1, 2, 2]
    for k in range(3):
        for a, b in zip(waves[2 * k:2 * k + 2], back[2 * (2 - k):2 * (2 - k) + 2], strict=True):
            np.testing.assert_array_equal(a, b)
    sr = int(model.sample_rate)
    assert all(0.5 * sr - 1 <= len(w) <= 1.0 * sr + 1 for w in waves)
    # the features, a few items' clips at a time, are those of all the clips at once
    feats, feats_owner = _features_of_clips(model, rows, cfg, {}, views=False, n=2, chunk=2)
    assert torch.equal(feats_owner, owner)
    torch.testing.assert_close(feats, clip_features(model, waves), atol=1e-5, rtol=1e-5)


def test_bad_settings_are_refused(tiny_checkpoint, tiny_corpus):
    import xmr
    from xmr.errors import ConfigError, InputError
    from xmr.models import ModelConfig, TowerConfig
    from xmr.train.part_head import PartHeadConfig, fit_part_head

    with pytest.raises(InputError, match="max_seconds <= 1 s"):  # the tiny model's window is 1 s
        fit_part_head(xmr.load_model(tiny_checkpoint), tiny_corpus, PartHeadConfig(max_seconds=4.0))
    with pytest.raises(ConfigError, match="part_head must be linear, mlp"):
        TowerConfig(part_head="conv")
    with pytest.raises(ConfigError, match="not for the image tower"):
        ModelConfig(audio=TowerConfig(), image=TowerConfig(part_head="linear"))
    # a tower without a part head writes no such key: older checkpoints keep their fingerprint
    assert "part_head" not in ModelConfig(audio=TowerConfig()).to_dict()["audio"]
    assert json.dumps(ModelConfig(audio=TowerConfig(part_head="linear")).to_dict()).count("part_head") == 1


def test_a_run_from_a_part_head_checkpoint_leaves_the_part_head_out(part_checkpoint, tiny_corpus, tmp_path):
    """The part head was fitted to its checkpoint's space, which the run moves: not copied."""
    import xmr
    from xmr.models import save_checkpoint
    from xmr.train.config import TrainConfig
    from xmr.train.loop import Trainer

    start = xmr.load_model(part_checkpoint / "a")
    start.config.name = "custom"  # a run builds an unregistered model by its whole config
    save_checkpoint(start, tmp_path / "start")
    model_cfg = start.config.with_overrides(**{"audio.part_head": None}).to_dict()
    cfg = TrainConfig.from_dict({"model": model_cfg, "data": {"manifest": str(tiny_corpus), "batch_size": 4},
                                 "train": {"steps": 1, "init": str(tmp_path / "start"), "progress": False,
                                           "tensorboard": False}})
    model = Trainer(cfg, out_dir=tmp_path / "run").adapter.unwrapped
    assert not model.has_part_head("audio")
    for k, v in model.state_dict().items():
        assert torch.equal(v, start.state_dict()[k]), k


def test_each_hubness_bank_is_in_the_space_of_its_queries_head(tiny_checkpoint, part_checkpoint, tiny_corpus):
    """The clips' bank ranks short clips, which take the part head; the audio bank ranks longer
    audio, which takes the audio head, so its clips are embedded with the audio head."""
    import xmr
    from xmr.data.manifest import read_manifest
    from xmr.index.hubness import query_bank

    rows = read_manifest(tiny_corpus)
    start, fitted = xmr.load_model(tiny_checkpoint), xmr.load_model(part_checkpoint / "a")
    before, after = (query_bank(m, rows, n=4, seed=0, clip_seconds=(0.5, 1.0), batch_size=3)
                     for m in (start, fitted))
    np.testing.assert_allclose(after["audio"][0], before["audio"][0], atol=1e-6)  # the same clips, same head
    np.testing.assert_allclose(before["audio:part"][0], before["audio"][0][1::2], atol=1e-6)
    assert after["audio:part"][1] == before["audio:part"][1]
    assert not np.allclose(after["audio:part"][0], before["audio:part"][0], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(after["audio:part"][0], axis=1), 1.0, atol=1e-5)
