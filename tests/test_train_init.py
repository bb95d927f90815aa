"""``train.init``: a run starts from a checkpoint's weights; with the audio and image towers and
heads frozen it refits only the text head, so the audio and image embeddings stay exactly those of
the checkpoint; with the heads left trainable it refits all three on the towers' cached features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from train_tiny import write_tiny_manifest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    from xmr.train.loop import train

    tmp = tmp_path_factory.mktemp("init")
    manifest = write_tiny_manifest(tmp / "data", n_train=16, n_val=4)
    train(_cfg(manifest, tmp / "cache"), out_dir=tmp / "first")
    return manifest, tmp / "cache", tmp / "first" / "checkpoint"


def _cfg(manifest, cache, *extra):
    from xmr.train.config import load_config

    return load_config(ROOT / "configs" / "tiny.yaml",
                       [f"data.manifest={manifest}", f"data.cache_dir={cache}", *extra])


def test_text_head_refit_keeps_the_media_space(first_run, tmp_path):
    import xmr
    from xmr.train.loop import Trainer

    manifest, cache, checkpoint = first_run
    start = xmr.load_model(checkpoint)
    trainer = Trainer(_cfg(manifest, cache, f"train.init={checkpoint}", "train.freeze=[audio,image]",
                           "train.freeze_heads=true", "optim.lr=0.05"), out_dir=tmp_path / "refit")
    model = trainer.adapter.unwrapped
    for k, v in start.state_dict().items():  # the run starts from the checkpoint, not a fresh model
        assert torch.equal(model.state_dict()[k], v), k
    assert trainer.cached_media == {"audio", "image"}

    def unread(*args, **kwargs):
        raise AssertionError("a step read media that the frozen towers' cache holds")

    trainer.train_items.crop = trainer.train_items.image = unread  # the steps read no media
    trainer.fit()
    refit = xmr.load_model(tmp_path / "refit" / "checkpoint")
    changed = {k for k, v in start.state_dict().items() if not torch.equal(refit.state_dict()[k], v)}
    assert changed and all(k.startswith("heads.text") for k in changed)
    wave = [np.random.default_rng(0).standard_normal(16000).astype(np.float32)]
    assert np.array_equal(refit.encode("audio", wave), start.encode("audio", wave))
    caption = ["a slow air in G major"]
    assert not np.allclose(refit.encode("text", caption), start.encode("text", caption))


def test_init_from_another_model_is_refused(first_run, tmp_path):
    from xmr.errors import InputError
    from xmr.train.loop import Trainer

    manifest, cache, checkpoint = first_run
    with pytest.raises(InputError, match="train.init: checkpoint holds another model"):
        Trainer(_cfg(manifest, cache, f"train.init={checkpoint}", "model.embed_dim=16"),
                out_dir=tmp_path / "other")


def test_init_with_another_head_starts_that_head_fresh(first_run, tmp_path):
    """A run whose model differs from its init's only in a head (an MLP audio head over the
    checkpoint's linear one) takes every other weight from the checkpoint, starts that head
    fresh, and reads the frozen towers' cached features of the same towers (no new cache file)."""
    import xmr
    from xmr.train.loop import Trainer

    manifest, cache, checkpoint = first_run
    sets = [f"train.init={checkpoint}", "train.freeze=[audio,image]", "train.freeze_heads=false"]
    Trainer(_cfg(manifest, cache, *sets), out_dir=tmp_path / "same")  # the towers' features cached
    files = sorted(p.name for p in Path(cache).glob("*-features-*.pt"))
    assert {f.split("-")[0] for f in files} >= {"audio", "image"}
    trainer = Trainer(_cfg(manifest, cache, *sets, "model.audio.head=mlp", "model.audio.head_hidden=24"),
                      out_dir=tmp_path / "mlp")
    assert sorted(p.name for p in Path(cache).glob("*-features-*.pt")) == files
    start, model = xmr.load_model(checkpoint), trainer.adapter.unwrapped
    assert start.config.heads_differ(model.config) == ["audio"]
    state = model.state_dict()
    assert [tuple(state[k].shape) for k in state if k.startswith("heads.audio.")] == [
        (24, 16), (24,), (32, 24), (32,)]
    for k, v in start.state_dict().items():
        if not k.startswith("heads.audio."):
            assert torch.equal(state[k], v), k
    assert trainer.cached_media == {"audio", "image"}
    trainer.fit()
    assert xmr.load_model(tmp_path / "mlp" / "checkpoint").config.audio.head == "mlp"


def test_init_into_a_tower_with_a_profile_widens_its_head(first_run, tmp_path):
    """``model.audio.profile``: the checkpoint's audio head starts widened (the profile's columns
    at zero, so the run starts with the checkpoint's audio embeddings); the frozen tower's cached
    features are another file, with the profiles' 56 values after the tower's, and the refit
    learns weights for them."""
    import xmr
    from xmr.train.loop import Trainer

    manifest, cache, checkpoint = first_run
    sets = [f"train.init={checkpoint}", "train.freeze=[audio,image]", "train.freeze_heads=false",
            "optim.lr=0.05"]
    Trainer(_cfg(manifest, cache, *sets), out_dir=tmp_path / "same")
    plain = {p.name for p in Path(cache).glob("audio-features-*.pt")}
    trainer = Trainer(_cfg(manifest, cache, *sets, "model.audio.profile=[pitch_classes,tempo]"),
                      out_dir=tmp_path / "pcp")
    profiled = {p.name for p in Path(cache).glob("audio-features-*.pt")} - plain
    assert len(profiled) == 1
    feats = torch.load(Path(cache) / profiled.pop(), weights_only=True)
    assert {tuple(f.shape) for f in feats.values()} == {(16 + 24 + 32,)}
    start, model = xmr.load_model(checkpoint), trainer.adapter.unwrapped
    wave = [np.random.default_rng(0).standard_normal(16000).astype(np.float32)]
    np.testing.assert_allclose(model.encode("audio", wave), start.encode("audio", wave), atol=1e-6)
    assert not model.heads["audio"][0].weight[:, 16:].any()
    trainer.fit()
    refit = xmr.load_model(tmp_path / "pcp" / "checkpoint")
    assert refit.config.audio.profile == ["pitch_classes", "tempo"]
    assert refit.heads["audio"][0].weight[:, 16:].abs().max() > 1e-3


def test_head_refit_trains_every_head_on_the_cached_features(first_run, tmp_path):
    """``freeze_heads: false``: the towers stay the checkpoint's and read no media, the three heads
    train; ``train.feature_dropout`` drops cached features in the steps only (another refit, and
    the model itself has no dropout: a checkpoint of the same model as its init)."""
    import xmr
    from xmr.train.loop import Trainer

    manifest, cache, checkpoint = first_run
    start = xmr.load_model(checkpoint)
    refits = {}
    for p in (0.0, 0.5):
        out = tmp_path / f"refit-{p}"
        trainer = Trainer(_cfg(manifest, cache, f"train.init={checkpoint}", "train.freeze=[audio,image]",
                               "train.freeze_heads=false", f"train.feature_dropout={p}", "optim.lr=0.05"),
                          out_dir=out)
        assert trainer.cached_media == {"audio", "image"} and trainer.adapter.feature_dropout == p

        def unread(*args, **kwargs):
            raise AssertionError("a step read media that the frozen towers' cache holds")

        trainer.train_items.crop = trainer.train_items.image = unread
        trainer.fit()
        refits[p] = xmr.load_model(out / "checkpoint")
        assert refits[p].config.to_dict() == start.config.to_dict()  # the same model, other head weights
        changed = {k for k, v in start.state_dict().items() if not torch.equal(refits[p].state_dict()[k], v)}
        assert {k.split(".")[1] for k in changed if k.startswith("heads.")} == {"audio", "image", "text"}
        assert not any(k.startswith("towers.") for k in changed)
    wave = [np.random.default_rng(0).standard_normal(16000).astype(np.float32)]
    assert not np.allclose(refits[0.0].encode("audio", wave), refits[0.5].encode("audio", wave))
    trainer.adapter.unwrapped.eval()  # no dropout outside the steps: the same features, the same output
    x = torch.ones(3, 8)
    assert torch.equal(trainer.adapter._dropped(x), x)


def test_feature_dropout_outside_zero_to_one_is_refused(first_run, tmp_path):
    from xmr.errors import ConfigError

    manifest, cache, _ = first_run
    with pytest.raises(ConfigError, match="feature_dropout"):
        _cfg(manifest, cache, "train.feature_dropout=1.0")


def test_feature_copies_are_each_items_training_batches(first_run, tmp_path, monkeypatch):
    """``train.feature_copies``: besides each item's fixed view, the frozen towers' features of
    ``c`` training copies (crop, affine and augmentation drawn once per copy) are cached. Each copy
    is what the tower gives on that copy's batch (checked against the tower itself), every step
    gives each item one drawn copy, the same for audio and image, and the steps read no media."""
    import xmr
    from xmr.media.augment import build_augment
    from xmr.train.data import BatchSpec
    from xmr.train.loop import Trainer

    manifest, cache, checkpoint = first_run
    trainer = Trainer(_cfg(manifest, cache, f"train.init={checkpoint}", "train.freeze=[audio,image]",
                           "train.freeze_heads=false", "train.feature_copies=2", "data.augment=real",
                           "optim.lr=0.05"), out_dir=tmp_path / "copies")
    adapter, items = trainer.adapter, trainer.train_items
    model = adapter.unwrapped.eval()
    n = len(items)
    for m in ("audio", "image"):
        feats = adapter._item_features[m]
        assert feats.shape[:2] == (3, n)
        for c in range(3):
            spec = (BatchSpec(modalities=(m,), audio_samples=adapter.audio_samples) if c == 0 else
                    trainer._batch_spec((m,), cached=set(), augment=build_augment("real")))
            batch = items.batch([1, 3], spec=spec, seed=0, step=-c)
            with torch.no_grad():
                ref = model.towers[m](model.features_input(m, getattr(batch, m)))
            assert torch.allclose(feats[c, [1, 3]], ref, atol=1e-5), (m, c)
        assert not torch.allclose(feats[0], feats[1]) and not torch.allclose(feats[1], feats[2])

    spec = trainer._batch_spec(trainer.modalities, cached=trainer.cached_media, augment=trainer.augment)
    batch = items.batch(list(range(n)), spec=spec, seed=0, step=5)
    assert batch.audio is None and batch.image is None and set(batch.copies["audio"]) == {0, 1, 2}
    assert batch.copies["image"] == batch.copies["audio"]
    assert items.batch(list(range(n)), spec=spec, seed=0, step=5).copies == batch.copies
    assert items.batch(list(range(n)), spec=spec, seed=0, step=6).copies != batch.copies
    rows = torch.as_tensor(batch.copies["audio"]), torch.arange(n)
    with torch.no_grad():
        for m in ("audio", "image"):  # one copy per row for both modalities: an aligned pair
            ref = torch.nn.functional.normalize(model.heads[m](adapter._item_features[m][rows]), dim=-1)
            assert torch.allclose(adapter.embed(m, batch), ref, atol=1e-6), m

    def unread(*args, **kwargs):
        raise AssertionError("a step read media that the frozen towers' cache holds")

    cached = {m: adapter._item_features[m].clone() for m in ("audio", "image")}
    items.crop = items.image = unread
    trainer.fit()
    start, refit = xmr.load_model(checkpoint), xmr.load_model(tmp_path / "copies" / "checkpoint")
    changed = {k for k, v in start.state_dict().items() if not torch.equal(refit.state_dict()[k], v)}
    assert changed and all(k.startswith("heads.") for k in changed)

    # a second run with the same copies reads them from the cache and makes no copy batch
    from xmr.train.data import ItemStore

    made, batch_fn = [], ItemStore.batch
    monkeypatch.setattr(ItemStore, "batch", lambda self, *a, **kw: made.append(kw.get("step", 0))
                        or batch_fn(self, *a, **kw))
    again = Trainer(trainer.cfg, out_dir=tmp_path / "again")
    assert not [s for s in made if s < 0]
    for m in ("audio", "image"):
        assert torch.equal(again.adapter._item_features[m], cached[m])


def test_partial_to_whole_pairs_a_copy_with_the_whole_item(first_run, tmp_path, monkeypatch):
    """``train.partial_to_whole``: that share of the rows drawing a copy keep it on one side only
    (audio or image) and take the fixed whole view (copy 0) on the other; the draw is per (seed,
    step, item), the embedding reads each side's own copy, and the cached copies are the same
    files as without it (no copy batch is made again)."""
    from xmr.train.data import ItemStore
    from xmr.train.loop import Trainer

    manifest, cache, checkpoint = first_run
    sets = [f"train.init={checkpoint}", "train.freeze=[audio,image]", "train.freeze_heads=false",
            "train.feature_copies=2", "data.augment=real"]
    plain = Trainer(_cfg(manifest, cache, *sets), out_dir=tmp_path / "plain")
    made, batch_fn = [], ItemStore.batch
    monkeypatch.setattr(ItemStore, "batch", lambda self, *a, **kw: made.append(kw.get("step", 0))
                        or batch_fn(self, *a, **kw))
    trainer = Trainer(_cfg(manifest, cache, *sets, "train.partial_to_whole=1.0"), out_dir=tmp_path / "whole")
    assert not [s for s in made if s < 0]
    monkeypatch.setattr(ItemStore, "batch", batch_fn)
    adapter, items = trainer.adapter, trainer.train_items
    n = len(items)
    spec = trainer._batch_spec(trainer.modalities, cached=trainer.cached_media, augment=trainer.augment)
    plain_spec = plain._batch_spec(plain.modalities, cached=plain.cached_media, augment=plain.augment)
    sides = set()
    for step in range(6):
        batch = items.batch(list(range(n)), spec=spec, seed=0, step=step)
        shared = items.batch(list(range(n)), spec=plain_spec, seed=0, step=step).copies["audio"]
        for row, c in enumerate(shared):
            a, i = batch.copies["audio"][row], batch.copies["image"][row]
            assert (a, i) == (0, 0) if c == 0 else (a, i) in ((0, c), (c, 0)), (step, row, c, a, i)
            sides.add("image" if a == 0 and c else "audio" if c else None)
        part = items.batch([3, 1], spec=spec, seed=0, step=step).copies  # per item, not per batch
        assert part == {m: [batch.copies[m][3], batch.copies[m][1]] for m in ("audio", "image")}
    assert {"audio", "image"} <= sides

    model = adapter.unwrapped.eval()
    with torch.no_grad():
        for m in ("audio", "image"):
            rows = torch.as_tensor(batch.copies[m]), torch.arange(n)
            ref = torch.nn.functional.normalize(model.heads[m](adapter._item_features[m][rows]), dim=-1)
            assert torch.allclose(adapter.embed(m, batch), ref, atol=1e-6), m


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_partial_to_whole_outside_zero_to_one_is_refused(first_run, value):
    from xmr.errors import ConfigError

    manifest, cache, _ = first_run
    with pytest.raises(ConfigError, match="partial_to_whole"):
        _cfg(manifest, cache, f"train.partial_to_whole={value}")


@pytest.mark.parametrize("value", ["-1", "true", "1.5"])
def test_feature_copies_must_be_a_whole_number(first_run, value):
    from xmr.errors import ConfigError

    manifest, cache, _ = first_run
    with pytest.raises(ConfigError, match="feature_copies"):
        _cfg(manifest, cache, f"train.feature_copies={value}")
