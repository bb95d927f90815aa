"""scripts/rebuild_demo.py: corpus -> train -> text -> part -> embed -> index -> report on a real
tiny corpus, with a tiny training override; a second run skips every finished stage, a removed
output reruns its stage and the ones after it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures_corpus import TINY_COLLECTIONS
from safetensors.torch import load_file
from scripts_tiny import load_script

ROOT = Path(__file__).resolve().parent.parent
TINY = ["train.steps=2", "data.batch_size=4", "train.eval_every=0", "train.ckpt_every=0",
        "train.progress=false", "train.tensorboard=false", "data.val_max_items=2"]
TINY_TEXT = ["train.steps=2", "data.batch_size=4", "train.ckpt_every=0", "train.num_threads=1"]
TINY_PART = ["steps=3", "batch_size=8", "clips_per_item=2"]


def _script():
    return load_script("rebuild_demo")


def _stage_lines(text: str) -> dict[str, str]:
    return {line.split("]")[0][1:]: line for line in text.splitlines()
            if line.startswith("[") and not line.endswith("...")}


def test_rebuild_runs_every_stage_then_skips_them(tmp_path, capsys):
    script = _script()
    out = tmp_path / "demo"
    argv = [str(out), "--limit", "12", "--collections", ",".join(TINY_COLLECTIONS), "--workers", "1",
            "--no-progress", *[a for kv in TINY for a in ("--set", kv)],
            *[a for kv in TINY_TEXT for a in ("--text-set", kv)],
            *[a for kv in TINY_PART for a in ("--part-set", kv)]]
    assert script.main(argv) == 0
    first = capsys.readouterr().out
    lines = _stage_lines(first)
    assert list(lines) == ["corpus", "train", "text", "part", "embed", "index", "report"]
    assert not any("skip" in line for line in lines.values())
    assert "12 items" in lines["corpus"] and "2 steps" in lines["train"]
    assert "heads: 2 steps" in lines["text"]
    assert "part head:" in lines["part"] and "3 steps" in lines["part"]
    assert "clips in the top 10" in lines["part"]
    assert "audio→image MRR" in lines["report"]
    assert "total" in first and "checkpoint" in first and "--install" in first
    for path in ("corpus/manifest.parquet", "corpus/views.parquet", "run/checkpoint/model.safetensors",
                 "text/checkpoint/model.safetensors", "part/checkpoint/model.safetensors",
                 "embeddings/embeddings.json", "index/index.json",
                 "index/image.faiss", "index/image.offsets.npz", "index/audio.offsets.npz",
                 "report/report.md"):
        assert (out / path).is_file(), path
    assert "(hubness offsets)" in lines["index"]
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["model"]["name"] == "demo-seq-lite" and config["data"]["views"] is True  # the CPU recipe
    assert config["data"]["augment"] == "real"
    # the text stage trained the heads alone (the towers are the first stage's), and the report
    # evaluates its checkpoint
    first_w, refit_w = (load_file(out / f"{run}/checkpoint/model.safetensors") for run in ("run", "text"))
    changed = {k for k in first_w if not torch.equal(first_w[k], refit_w[k])}
    assert changed and all(k.startswith("heads.") for k in changed)
    assert {k.split(".")[1] for k in changed} == {"audio", "image", "text"}
    report = (out / "report" / "report.md").read_text()
    assert "Head refit" in report and "Head for short clips" in report
    # the part stage added the part head and changed nothing else; the index is of its checkpoint
    part_w = load_file(out / "part/checkpoint/model.safetensors")
    assert {k for k in part_w if k not in refit_w} == {k for k in part_w if k.startswith("part_heads.")}
    assert all(torch.equal(part_w[k], v) for k, v in refit_w.items())
    part_fp = json.loads((out / "part" / "checkpoint" / "config.json").read_text())["fingerprint"]
    assert json.loads((out / "index" / "index.json").read_text())["fingerprint"] == part_fp
    refit = json.loads((out / "text" / "config.json").read_text())  # on cached training copies too
    copies = refit["train"]["feature_copies"]
    assert refit["train"]["partial_to_whole"] == 0.5  # the audio head reads the profiles, widened
    text_model = json.loads((out / "text" / "checkpoint" / "config.json").read_text())["model"]
    assert text_model["audio"]["profile"] == ["pitch_classes", "tempo"]
    first_model = json.loads((out / "run" / "checkpoint" / "config.json").read_text())["model"]
    assert "profile" not in first_model["audio"]
    assert copies > 0 and len(list((out / "run" / "cache").glob("*-features-*-copy-*.pt"))) == 2 * copies
    logs = ("stages.json", "plan.json")  # rewritten by every call
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in logs}
    times = json.loads((out / "stages.json").read_text())
    assert set(times) == {"corpus", "train", "text", "part", "embed", "index", "report"}
    assert all(t["seconds"] > 0 for t in times.values())

    assert script.main(argv) == 0  # everything is complete: nothing runs, nothing is written
    second = _stage_lines(capsys.readouterr().out)
    assert list(second) == list(lines) and all("skip: complete" in line for line in second.values())
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    (out / "index" / "index.json").unlink()  # an incomplete index: it and the report rerun
    assert script.main([str(out), "--no-progress"]) == 0  # the first call's settings are kept
    third = _stage_lines(capsys.readouterr().out)
    assert [s for s, line in third.items() if "skip" in line] == ["corpus", "train", "text", "part", "embed"]
    assert (out / "index" / "index.json").is_file() and (out / "report" / "report.md").is_file()
    assert (out / "run" / "checkpoint" / "model.safetensors").stat().st_mtime_ns == \
        stamps[out / "run" / "checkpoint" / "model.safetensors"]


def test_an_unfinished_corpus_elsewhere_is_never_built_into(tmp_path, capsys):
    script = _script()
    other = tmp_path / "elsewhere"
    other.mkdir()
    try:
        script.main([str(tmp_path / "demo"), "--corpus", str(other), "--no-progress"])
    except SystemExit as err:
        assert "not complete" in str(err)
    else:
        raise AssertionError("an unfinished corpus must stop the rebuild")
    assert list(other.iterdir()) == []


def _fake_rebuild(out: Path, tag: str) -> None:
    """The folders ``--install`` reads, with contents that say which rebuild they came from."""
    for folder, names in (("part/checkpoint", ("config.json", "model.safetensors")),
                          ("report", ("report.md", "metrics.json")),
                          ("index", ("image.faiss", "image.parquet")), ("corpus", ("manifest.parquet",))):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (out / folder / name).write_text(f"{tag} {name}")
    (out / "index" / "index.json").write_text(json.dumps({"tag": tag, "checkpoint": "elsewhere"}))


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_install_moves_in_a_whole_rebuild_or_leaves_the_installed_one(tmp_path):
    script = _script()
    repo, first, second = tmp_path / "repo", tmp_path / "first", tmp_path / "second"
    (repo / "assets" / "demo" / "index").mkdir(parents=True)
    (repo / "assets" / "demo" / "index" / "stale.faiss").write_text("an index that is gone")
    _fake_rebuild(first, "first")
    script.install(script.Plan(out=first, corpus=first / "corpus", config=Path("c.yaml")), root=repo)
    installed = _tree(repo)
    assert installed["checkpoints/demo/model.safetensors"] == "first model.safetensors"
    assert installed["checkpoints/demo/report.md"] == "first report.md"
    assert installed["assets/demo/manifest.parquet"] == "first manifest.parquet"
    assert "assets/demo/index/stale.faiss" not in installed  # the index folder is replaced whole
    doc = json.loads(installed["assets/demo/index/index.json"])
    assert doc["tag"] == "first"
    assert (repo / "assets" / "demo" / "index" / doc["checkpoint"]).resolve() == \
        (repo / "checkpoints" / "demo").resolve()

    _fake_rebuild(second, "second")
    (second / "index" / "zz-broken").mkdir()  # the last copy fails, after all the others were made
    plan = script.Plan(out=second, corpus=second / "corpus", config=Path("c.yaml"))
    with pytest.raises(IsADirectoryError):
        script.install(plan, root=repo)
    assert _tree(repo) == installed  # nothing of the second rebuild, nothing lost of the first
    assert not list(repo.rglob("*.installing"))

    (second / "index" / "zz-broken").rmdir()
    script.install(plan, root=repo)
    assert _tree(repo)["checkpoints/demo/model.safetensors"] == "second model.safetensors"
    assert json.loads(_tree(repo)["assets/demo/index/index.json"])["tag"] == "second"
