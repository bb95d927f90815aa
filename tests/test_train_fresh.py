"""``configs/tiny.yaml`` trains with no other step: its synthetic collection is written when missing."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_config_builds_its_collection_when_missing(tmp_path):
    import xmr
    from xmr.train.config import load_config
    from xmr.train.loop import train

    manifest = tmp_path / "data" / "tiny" / "manifest.parquet"
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [f"data.manifest={manifest}", "train.steps=1"])
    report = train(cfg, out_dir=tmp_path / "run")
    assert report["steps"] == 1 and manifest.exists()
    assert xmr.load_model(tmp_path / "run" / "checkpoint").modalities == ("audio", "image", "text")


def test_a_missing_manifest_without_build_is_an_error(tmp_path):
    from xmr.train.config import load_config
    from xmr.train.loop import train

    cfg = load_config(ROOT / "configs" / "tiny.yaml", [f"data.manifest={tmp_path / 'none.parquet'}",
                                                        "data.build_if_missing=null"])
    with pytest.raises(Exception, match="none.parquet"):
        train(cfg, out_dir=tmp_path / "run")
