"""Rebuild the demo assets end to end: corpus -> train -> text -> part -> embed -> index -> report, resumable.

    python scripts/rebuild_demo.py OUT                    # 2-core CPU recipe (configs/demo-seq-lite.yaml)
    python scripts/rebuild_demo.py OUT --gpu              # one GPU (configs/demo-seq-gpu.yaml)
    python scripts/rebuild_demo.py OUT --corpus data/corpus-bars   # train on a corpus built elsewhere
    python scripts/rebuild_demo.py OUT --install          # then copy into checkpoints/demo, assets/demo

Every stage is a function over folders under ``OUT`` (the table :data:`STAGES`):

========  ==============================  =================================================
stage     writes                          skipped when / resumes
========  ==============================  =================================================
corpus    ``OUT/corpus/`` (or --corpus)   its ``summary.json`` is there; else the build resumes
                                          from the pieces it finished (``xmr corpus build``)
train     ``OUT/run/``                    ``report.json`` and ``checkpoint/`` are there; else
                                          ``xmr train --resume`` from ``state.pt`` when present
text      ``OUT/text/``                   the same; the projection heads refitted on the
                                          trained model's frozen towers in large batches
                                          (``configs/demo-text-refit.yaml`` on top of the
                                          train stage's config)
part      ``OUT/part/``                   its ``checkpoint/`` is there; the text stage's
                                          checkpoint with a head for short audio clips
                                          (:mod:`xmr.train.part_head`; its clips' features
                                          cached in ``OUT/part/cache``); the result
embed     ``OUT/embeddings/``             ``embeddings.json`` is there; else resumes by chunks
index     ``OUT/index/``                  ``index.json`` is there with the hubness offsets
                                          (``xmr index build``, then ``xmr index hubness``
                                          over a bank of ``--hubness-items`` training items)
report    ``OUT/report/``                 ``report.md`` is there (``scripts/demo_report.py``,
                                          test split, all its candidates)
========  ==============================  =================================================

Each stage prints its wall time (a skipped one the time it took when it ran, from
``OUT/stages.json``), then the total. Nothing outside ``OUT`` is written unless ``--install`` is
given: it copies the checkpoint and the report into ``checkpoints/demo`` and the index and the
manifest into ``assets/demo`` (binary artefacts are committed only when they improve on the
bundled ones, so compare ``OUT/report/report.md`` with ``checkpoints/demo/report.md`` first).
``--set key=value`` overrides the training config (``xmr train --set``), ``--text-set`` the text
stage's, ``--part-set`` the part stage's (:class:`~xmr.train.part_head.PartHeadConfig`); ``--limit`` and
``--collections`` make a smaller corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_CONFIG = ROOT / "configs" / "demo-seq-lite.yaml"
GPU_CONFIG = ROOT / "configs" / "demo-seq-gpu.yaml"
TEXT_CONFIG = ROOT / "configs" / "demo-text-refit.yaml"
CHECKPOINT_MB, INDEX_MB = 15, 30  # the bundled artefacts' budgets


@dataclass
class Plan:
    """What one rebuild does: folders and the settings of every stage."""

    out: Path
    corpus: Path
    config: Path
    overrides: list[str] = field(default_factory=list)
    text_config: Path = TEXT_CONFIG
    text_overrides: list[str] = field(default_factory=list)
    part_overrides: list[str] = field(default_factory=list)
    limit: int | None = None
    collections: tuple[str, ...] | None = None
    workers: int = 2
    nproc: int = 1
    index_factory: str = "SQ8"
    hubness_items: int = 1200
    allocator: str = "jemalloc"
    progress: bool = True

    @property
    def manifest(self) -> Path:
        return self.corpus / "manifest.parquet"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def text_run(self) -> Path:
        return self.out / "text"

    @property
    def part_run(self) -> Path:
        return self.out / "part"

    @property
    def checkpoint(self) -> Path:
        """The rebuild's model: the part stage's checkpoint."""
        return self.part_run / "checkpoint"

    @property
    def embeddings(self) -> Path:
        return self.out / "embeddings"

    @property
    def index(self) -> Path:
        return self.out / "index"

    @property
    def report(self) -> Path:
        return self.out / "report"


# ---------------------------------------------------------------- stages: done(plan), run(plan)

def corpus_done(p: Plan) -> bool:
    return (p.corpus / "summary.json").is_file() and p.manifest.is_file()


def corpus_run(p: Plan) -> str:
    from xmr.data.corpus.build import build_corpus

    if p.corpus != p.out / "corpus":  # another build's folder: never written from here
        raise SystemExit(f"corpus {p.corpus} is not complete (no summary.json): finish its build "
                         "(xmr corpus build --out ...) or leave out --corpus to build one under OUT")

    summary = build_corpus(out=p.corpus, limit=p.limit, workers=p.workers, collections=p.collections,
                           progress=p.progress)
    return f"{summary.items} items {summary.per_split}"


def run_done(run: Path) -> bool:
    """Whether the training run in ``run`` finished (its report and checkpoint are there)."""
    return (run / "report.json").is_file() and (run / "checkpoint").is_dir()


def train_done(p: Plan) -> bool:
    return run_done(p.run)


def train_here(cfg, run: Path, stage: str) -> tuple[dict, bool]:
    """``xmr train`` in this process into ``run`` (resumed from its ``state.pt`` when there);
    returns the report and whether it resumed. An interrupted run exits, naming ``stage``."""
    from xmr.train import dist
    from xmr.train.loop import train

    resume = (run / "state.pt").is_file()
    try:
        report = train(cfg, out_dir=run, resume=resume)
    finally:
        dist.cleanup()
    _check_finished(report, stage)
    return report, resume


def _check_finished(report: dict, stage: str) -> None:
    if report.get("interrupted"):
        raise SystemExit(f"{stage} stopped at step {report['step']}; run again to resume")


def train_run(p: Plan) -> str:
    from xmr.train import dist
    from xmr.train.config import load_config

    overrides = [f"data.manifest={p.manifest}", *p.overrides]
    if p.nproc > 1:  # DDP processes of one CPU thread each (torchrun), the faster way on a small CPU
        resume = (p.run / "state.pt").is_file()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={p.nproc}",
               "-m", "xmr", "train", "--config", str(p.config), "--out", str(p.run),
               *[a for kv in [*overrides, "train.num_threads=1"] for a in ("--set", kv)],
               *(["--resume"] if resume else [])]
        # jemalloc keeps the processes from growing into the page cache of the decoded items
        subprocess.run(cmd, check=True, env=dist.cpu_launch_env(allocator=p.allocator))
        report = json.loads((p.run / "report.json").read_text())
        _check_finished(report, "training")
    else:
        report, resume = train_here(load_config(p.config, overrides), p.run, "training")
    return f"{report['steps']} steps{' (resumed)' if resume else ''}, {report['wall_seconds']} s of training"


def text_done(p: Plan) -> bool:
    return run_done(p.text_run)


def text_run(p: Plan) -> str:
    """One process: the frozen towers run once per item, then only the small heads train."""
    from xmr.train.config import load_config

    base = json.loads((p.run / "config.json").read_text())
    cache = base.get("data", {}).get("cache_dir") or p.run / "cache"  # the train stage's decoded items
    overrides = [f"train.init={p.run / 'checkpoint'}", f"data.cache_dir={cache}", *p.text_overrides]
    cfg = load_config(p.text_config, overrides, base=base)
    report, resume = train_here(cfg, p.text_run, "the text stage")
    heads = "text head" if cfg.train.freeze_heads else "heads"
    return f"{heads}: {report['steps']} steps{' (resumed)' if resume else ''}, {report['wall_seconds']} s"


def part_done(p: Plan) -> bool:
    return (p.checkpoint / "config.json").is_file()


def part_run(p: Plan) -> str:
    """The text stage's checkpoint with a head for short clips; nothing else of it changes."""
    from xmr.train.part_head import PartHeadConfig, fit_checkpoint

    cfg = PartHeadConfig.from_overrides(p.part_overrides)
    _, log = fit_checkpoint(p.text_run / "checkpoint", p.manifest, p.checkpoint, cfg,
                            cache=p.part_run / "cache", progress=p.progress)
    val = log["val"]
    gain = (f"; {val['split']} clips in the top 10: {val['audio head']['top-10']:.1%} -> "
            f"{val['part head']['top-10']:.1%}" if val else "")
    return f"part head: {log['clips']} clips, {cfg.steps} steps, {log['seconds']} s{gain}"


def embed_done(p: Plan) -> bool:
    return (p.embeddings / "embeddings.json").is_file()


def embed_run(p: Plan) -> str:
    from xmr.index.embed import embed_manifest

    embed_manifest(checkpoint=p.checkpoint, manifest=p.manifest, out=p.embeddings,
                   progress=p.progress)
    counts = json.loads((p.embeddings / "embeddings.json").read_text())["counts"]
    return ", ".join(f"{n} {c}" for c, n in counts.items())


def index_done(p: Plan) -> bool:
    doc = p.index / "index.json"
    if not doc.is_file():
        return False
    indexes = json.loads(doc.read_text())["indexes"]
    corrected = [name for name in ("audio", "image") if name in indexes]
    return not p.hubness_items or all("hubness" in indexes[name] for name in corrected)


def index_run(p: Plan) -> str:
    from xmr.index.pipeline import add_hubness, build_indexes

    store = build_indexes(embeddings=p.embeddings, out=p.index, factory=p.index_factory)
    if p.hubness_items:
        targets = [name for name in ("audio", "image") if name in store.names]
        store = add_hubness(index=p.index, manifest=p.manifest, checkpoint=p.checkpoint, n=p.hubness_items,
                            targets=targets)
    return ", ".join(f"{name} {info['count']}" + (" (hubness offsets)" if "hubness" in info else "")
                     for name, info in store.info.items())


def report_done(p: Plan) -> bool:
    return (p.report / "report.md").is_file()


def report_run(p: Plan) -> str:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_report.py"), "--run", str(p.run),
                    "--text-run", str(p.text_run), "--checkpoint", str(p.checkpoint), "--manifest",
                    str(p.manifest), "--out", str(p.report)],
                   check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((p.report / "metrics.json").read_text())
    full = metrics["full captions"]
    return " ".join(f"{d} MRR {full[d]['MRR']:.3f}" for d in ("audio→image", "image→audio") if d in full)


# each stage's folder under OUT (None: the corpus, never removed from here)
STAGE_OUTPUTS = (lambda p: None, lambda p: p.run, lambda p: p.text_run, lambda p: p.part_run,
                 lambda p: p.embeddings, lambda p: p.index, lambda p: p.report)
STAGES = (("corpus", corpus_done, corpus_run), ("train", train_done, train_run),
          ("text", text_done, text_run), ("part", part_done, part_run), ("embed", embed_done, embed_run),
          ("index", index_done, index_run), ("report", report_done, report_run))


def rebuild(p: Plan) -> dict[str, dict]:
    """Run every stage that is not complete; returns ``{stage: {"seconds", "skipped", "what"}}``
    and keeps the times in ``OUT/stages.json``."""
    p.out.mkdir(parents=True, exist_ok=True)
    log_path = p.out / "stages.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    result: dict[str, dict] = {}
    total = 0.0
    for k, (name, done, run) in enumerate(STAGES):
        if done(p):
            before = log.get(name, {})
            result[name] = {"seconds": 0.0, "skipped": True, "what": before.get("what", "")}
            earlier = f" (took {before['seconds']:.1f} s when it ran)" if "seconds" in before else ""
            print(f"[{name}] skip: complete{earlier}", flush=True)
            continue
        print(f"[{name}] ...", flush=True)
        for j in range(k + 1, len(STAGES)):  # built from what this stage is about to change: stale
            folder = STAGE_OUTPUTS[j](p)
            if folder is not None and folder.exists():
                shutil.rmtree(folder)
                log.pop(STAGES[j][0], None)
        t0 = time.time()
        what = run(p)
        seconds = time.time() - t0
        total += seconds
        result[name] = log[name] = {"seconds": round(seconds, 3), "skipped": False, "what": what}
        log_path.write_text(json.dumps(log, indent=2))
        print(f"[{name}] {seconds:.1f} s: {what}", flush=True)
    print(f"total {total:.1f} s this run ({sum(v.get('seconds', 0) for v in log.values()):.1f} s over "
          f"all stages as they ran)")
    return result


def artefacts(p: Plan, root: Path = ROOT) -> list[tuple[Path, Path]]:
    """(source, destination under ``root``, the repository) of every artefact ``--install`` copies."""
    ckpt, index = root / "checkpoints" / "demo", root / "assets" / "demo" / "index"
    pairs = [(f, ckpt / f.name) for f in sorted(p.checkpoint.iterdir()) if f.is_file()]
    pairs += [(p.report / n, ckpt / n) for n in ("report.md", "metrics.json")]
    pairs += [(f, index / f.name) for f in sorted(p.index.iterdir())]
    pairs.append((p.manifest, root / "assets" / "demo" / "manifest.parquet"))
    return pairs


def sizes(p: Plan) -> str:
    mb = lambda folder: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20  # noqa: E731
    ck, ix = mb(p.checkpoint), mb(p.index)
    return (f"checkpoint {ck:.1f} MB (budget {CHECKPOINT_MB}){' OVER' if ck > CHECKPOINT_MB else ''}, "
            f"index {ix:.1f} MB (budget {INDEX_MB}){' OVER' if ix > INDEX_MB else ''}")


def _staging(folder: Path) -> Path:
    return folder.with_name(folder.name + ".installing")


def install(p: Plan, root: Path = ROOT) -> None:
    """Copy the rebuild's artefacts into ``root``'s ``checkpoints/demo`` and ``assets/demo``.

    Everything is first copied into ``FOLDER.installing`` beside each destination folder and moved
    into place only once every copy is done, so an install cut short (Ctrl-C, a closed pipe, a full
    disk) leaves the installed demo as it was. The index folder is swapped in whole
    (:func:`xmr.models.checkpoint.replace_dir`), so no file of a previous index outlives it.
    """
    from xmr.index.pipeline import record_checkpoint
    from xmr.models.checkpoint import replace_dir

    index = root / "assets" / "demo" / "index"
    moves = [(src, _staging(dest.parent) / dest.name, dest) for src, dest in artefacts(p, root)]
    stages = sorted({staged.parent for _, staged, _ in moves})
    for stage in stages:  # leftovers of an install cut short
        shutil.rmtree(stage, ignore_errors=True)
    try:
        for src, staged, _ in moves:
            staged.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, staged)
        # the index names the checkpoint that embeds its queries: the installed one, not the run's
        # (the staging folder is as deep as the index, so the relative path is the same)
        record_checkpoint(_staging(index), root / "checkpoints" / "demo")
    except BaseException:
        for stage in stages:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    replace_dir(_staging(index), index)
    for _, staged, dest in moves:
        if dest.parent != index:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, dest)
        print(f"installed {dest.relative_to(root)}")
    for stage in stages:
        if stage.exists():
            stage.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path,
                        help="folder of the rebuild (corpus/, run/, text/, part/, embeddings/, index/, "
                        "report/)")
    parser.add_argument("--gpu", action="store_true", help=f"train with {GPU_CONFIG.relative_to(ROOT)}")
    parser.add_argument("--config", type=Path, default=None,
                        help="training config (default: the CPU or GPU recipe)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training config value (repeatable)")
    parser.add_argument("--text-config", type=Path, default=None,
                        help=f"the text stage's config (default {TEXT_CONFIG.relative_to(ROOT)})")
    parser.add_argument("--text-set", dest="text_overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a text-stage config value (repeatable)")
    parser.add_argument("--part-set", dest="part_overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a part-stage setting, e.g. steps=2000 (repeatable)")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus folder (default OUT/corpus; built "
                        "or resumed there)")
    parser.add_argument("--limit", type=int, default=None, help="corpus items (a balanced sample)")
    parser.add_argument("--collections", default=None, help="comma-separated corpus collections")
    parser.add_argument("--workers", type=int, default=2, help="corpus build processes (default 2)")
    parser.add_argument("--nproc", type=int, default=None, help="training processes (DDP through torchrun, "
                        "one CPU thread each; default 2 for the CPU recipe, 1 with --gpu)")
    parser.add_argument("--allocator", choices=("jemalloc", "system"), default="jemalloc",
                        help="memory allocator of the torchrun training processes (default jemalloc "
                        "when installed, as it keeps them small; xmr.train.dist.cpu_launch_env)")
    parser.add_argument("--index-factory", default="SQ8", help="FAISS factory of the indexes (default SQ8, "
                        "as the bundled ones; 'auto' chooses by size)")
    parser.add_argument("--hubness-items", type=int, default=1200, help="training items of the query bank "
                        "whose hubness offsets correct the audio and image indexes (default 1200; 0: none)")
    parser.add_argument("--install", action="store_true", help="copy the artefacts into checkpoints/demo "
                        "and assets/demo when every stage is complete")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    # a later call on the same OUT (to resume, or --install) keeps the corpus and the training
    # settings of the first one unless it names others
    saved_path = args.out / "plan.json"
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else {}
    corpus = args.corpus or Path(saved.get("corpus", args.out / "corpus"))
    config = args.config or (GPU_CONFIG if args.gpu else Path(saved["config"]) if "config" in saved
                             else CPU_CONFIG)
    overrides = args.overrides or ([] if args.config or args.gpu else saved.get("overrides", []))
    text_config = args.text_config or Path(saved.get("text_config", TEXT_CONFIG))
    text_overrides = args.text_overrides or saved.get("text_overrides", [])
    part_overrides = args.part_overrides or saved.get("part_overrides", [])
    args.out.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(json.dumps({"corpus": str(corpus), "config": str(config), "overrides": overrides,
                                      "text_config": str(text_config), "text_overrides": text_overrides,
                                      "part_overrides": part_overrides}, indent=2))
    plan = Plan(out=args.out, corpus=corpus, config=config, overrides=overrides,
                text_config=text_config, text_overrides=text_overrides, part_overrides=part_overrides,
                limit=args.limit,
                workers=args.workers,
                nproc=args.nproc if args.nproc is not None else 1 if args.gpu else 2,
                collections=tuple(c for c in args.collections.split(",") if c) if args.collections else None,
                index_factory=args.index_factory, hubness_items=args.hubness_items, allocator=args.allocator,
                progress=not args.no_progress)
    rebuild(plan)
    print(sizes(plan))
    if args.install:
        install(plan)
    else:
        print(f"artefacts: checkpoint {plan.checkpoint}, index {plan.index}, report "
              f"{plan.report / 'report.md'}; compare the report with checkpoints/demo/report.md, then "
              f"install with: python scripts/rebuild_demo.py {args.out} --install ... (same options)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
