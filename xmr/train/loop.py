"""The training loop behind ``xmr train``: one code path for a laptop CPU, ``torchrun`` on CPU (gloo)
and one or many GPUs (NCCL).

One optimizer step:

1. The *global* batch (``data.batch_size`` item indices) comes from a global sampler that every
   process builds identically (random epochs, or the 3CMLF curriculum); process ``r`` takes rows
   ``r*B:(r+1)*B`` of it, so the batch does not depend on the number of processes.
2. Each process embeds its rows; the embeddings of all processes are gathered with gradient
   (:func:`xmr.train.dist.gather_with_grad`) and the loss is computed locally over this process's
   rows against all columns (``local=slice(r*B, (r+1)*B)``, as open_clip's ``local_loss``).
3. Gradient accumulation (``train.accum_steps`` > 1) follows GradCache (Gao et al. 2021): embed all
   sub-batches without graph, compute the loss on the full set (so every sub-batch is a negative of
   every other), take the loss gradient with respect to the embeddings, then re-run each sub-batch
   with graph and back-propagate that cached gradient. The result is the gradient of the full-batch
   loss at the memory cost of one sub-batch. Dropout replays the same masks (RNG state restored);
   BatchNorm sees sub-batch statistics, exactly as each process does under data parallelism.
4. Parameter gradients are averaged over processes (one flat all-reduce), unscaled (fp16), clipped,
   and AdamW steps with a warm-up + cosine learning rate.

Checkpoints (``OUT/state.pt``, written to a temporary file then renamed) hold the model, optimizer,
scaler, scheduler, sampler, loss memories (XBM/SCFEM) and RNG states; ``resume=True`` continues
bit-for-bit (tests/test_train_resume.py), and ``log.jsonl`` is cut back to the checkpoint's history
(a killed run's later rows are logged again as the steps are redone). The final model is exported with
:func:`xmr.models.checkpoint.save_checkpoint` to ``OUT/checkpoint`` with a training report.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from xmr.errors import InputError
from xmr.train.adapter import save_atomic
from xmr.train.config import TrainConfig
from xmr.train.optim import lr_factor, param_groups
from xmr.train.sampler import RandomBatchSampler

MODALITY_ORDER = ("audio", "image", "text")


# ----------------------------------------------------------------------------- small pieces
def _caption_groups(texts: list[str]):
    """Integer group ids of caption strings (equal captions -> equal ids), stable across processes."""
    import hashlib

    import torch

    ids = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=7).digest(), "little") for t in texts]
    return torch.tensor(ids, dtype=torch.long)


def _rng_state() -> dict[str, Any]:
    import random

    import torch

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
             "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


# ----------------------------------------------------------------------------- the trainer
class Trainer:
    """Holds the model, loss, optimizer and data of one run; :meth:`fit` runs it.

    Args:
        cfg: the training configuration.
        out_dir: run folder (``state.pt``, ``log.jsonl``, ``tb/``, ``checkpoint/``, ``report.json``).

    Example:
        >>> Trainer(load_config("configs/tiny.yaml"), out_dir="runs/tiny").fit()  # doctest: +SKIP
    """

    def __init__(self, cfg: TrainConfig, *, out_dir: str | Path):
        import torch

        from xmr.media.augment import build_augment
        from xmr.train import dist
        from xmr.train.adapter import ModelAdapter

        self.cfg = cfg
        self.out = Path(out_dir)
        self.info = dist.init_distributed(cfg.train.device)
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        world = self.info.world_size
        if cfg.data.batch_size % (world * cfg.train.accum_steps):
            raise InputError(f"data.batch_size ({cfg.data.batch_size}) must be a multiple of processes x "
                             f"accum_steps ({world} x {cfg.train.accum_steps})")
        self.local_bs = cfg.data.batch_size // world
        self.device = torch.device(self.info.device)
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        dist.barrier()

        torch.manual_seed(cfg.seed)
        self.modalities = tuple(m for m in MODALITY_ORDER if m in cfg.data.modalities)
        self.adapter = ModelAdapter.create(cfg.model, modalities=self.modalities, device=self.device)
        self.model = self.adapter.model
        if cfg.train.init:
            self._init_weights(cfg.train.init)
        self.adapter.set_frozen(cfg.train.freeze, heads=cfg.train.freeze_heads)
        self.adapter.feature_dropout = cfg.train.feature_dropout
        if self.device.type == "cuda" and world > 1:
            self.model = self.adapter.convert_sync_batchnorm()

        self.cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else self.out / "cache"
        if cfg.data.build_if_missing and not Path(cfg.data.manifest).exists():
            if self.info.is_main:  # a smoke config on a fresh clone: make its synthetic collection
                from xmr.data.synthetic import write_synthetic_collection

                manifest = Path(cfg.data.manifest)
                print(f"xmr train: {manifest} not found; writing a synthetic collection there")
                write_synthetic_collection(manifest.parent, manifest_name=manifest.name)
            dist.barrier()
        self.train_items = self._items(cfg.data.train_split, cfg.data.max_items)
        self.val_items = None
        if cfg.train.eval_every:
            try:
                self.val_items = self._items(cfg.data.val_split, cfg.data.val_max_items)
            except Exception as err:  # noqa: BLE001 - a run without a val split still trains
                if self.info.is_main:
                    print(f"xmr train: no evaluation ({err})")
        if cfg.train.cache_frozen_text and "text" in self.modalities:
            self.adapter.cache_text_features(self.train_items.captions, cache_dir=self.cache_dir,
                                             progress=cfg.train.progress and self.info.is_main)
        # real-input augmentation (data.augment); a cached frozen tower sees each item's fixed view
        # or one of its cached copies, augmented once when they were made
        augment = build_augment(cfg.data.augment)
        self.cached_media = self._cache_frozen_media(augment) if cfg.train.cache_frozen_media else set()
        self.augment = augment.without(*self.cached_media) if augment is not None else None

        self.loss_fn = self._build_loss()
        self.sampler = self._build_sampler()
        named = list(self.model.named_parameters()) + [
            (f"loss.{n}", p) for n, p in self.loss_fn.named_parameters()]
        self.params = [p for _, p in named if p.requires_grad]
        groups = param_groups(named, cfg.optim.weight_decay, lr=cfg.optim.lr,
                              backbone_lr_scale=cfg.optim.backbone_lr_scale)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr,
                                           betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total=cfg.train.steps, warmup=cfg.optim.warmup_steps,
                                                min_ratio=cfg.optim.min_lr_ratio))
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.wall = 0.0
        self.history: list[dict[str, Any]] = []
        self._tb = None

    # ------------------------------------------------------------------ building
    def _items(self, split: str, max_items: int | None):
        from xmr.train import dist
        from xmr.train.data import ItemStore

        pre = self.adapter.preprocessing()
        kwargs = dict(split=split, sample_rate=pre["sample_rate"], image_size=pre["image_size"],
                      image_mode=pre["image_mode"], image_resize=pre["image_resize"],
                      modalities=self.modalities, cache_dir=self.cache_dir, max_items=max_items,
                      bar_spans=split == self.cfg.data.train_split and self.cfg.data.span_prob > 0,
                      views=split == self.cfg.data.train_split and bool(self.cfg.data.views))
        # The main process decodes into the cache first; the others then read it.
        if self.info.is_main:
            items = ItemStore.from_manifest(self.cfg.data.manifest, progress=self.cfg.train.progress,
                                            **kwargs)
        dist.barrier()
        if not self.info.is_main:
            items = ItemStore.from_manifest(self.cfg.data.manifest, **kwargs)
        return items

    def _init_weights(self, path: str) -> None:
        """``train.init``: copy a checkpoint's weights into the fresh model. The model configs must
        be the same but for the projection heads (``head``, ``head_hidden``, ``dropout`` of a
        tower) and the towers' weight-free profiles; a head of another shape starts fresh over its
        checkpoint's tower, as a pretrained backbone takes a new classifier, and a head whose
        tower only gained a profile starts as the checkpoint's head, widened
        (:func:`xmr.models.heads.widen_head`). A part head of the checkpoint is not copied."""
        import xmr
        from xmr.models.config import HEAD_FIELDS
        from xmr.models.heads import widen_head

        start = xmr.load_model(path, device=str(self.device))
        model = self.adapter.unwrapped
        changed = start.config.heads_differ(model.config)
        if changed is None:
            raise InputError(f"train.init: {Path(path).name} holds another model than the run's "
                             f"(model config differs beyond the heads); start from a checkpoint of the "
                             f"same model")
        def same_head(m: str) -> bool:
            old, new = start.config.tower(m), model.config.tower(m)
            return all(getattr(old, f) == getattr(new, f) for f in HEAD_FIELDS)

        widened = [m for m in changed if same_head(m)]
        # a part head (xmr.train.part_head) was fitted to the checkpoint's space, which the run
        # moves: it is left behind, to be fitted again on the run's checkpoint
        state = {k: v for k, v in start.state_dict().items()
                 if not any(k.startswith(f"heads.{m}.") for m in changed) and not k.startswith("part_heads.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(any(k.startswith(f"heads.{m}.") for m in changed) for k in missing)
        for m in widened:
            widen_head(model.heads[m], start.heads[m].state_dict())
        fresh = [m for m in changed if m not in widened]
        if changed and self.info.is_main:
            print(f"xmr train: train.init from {Path(path).name}"
                  + (f"; fresh {', '.join(fresh)} head(s) (another head than the checkpoint's)"
                     if fresh else "")
                  + (f"; {', '.join(widened)} head(s) widened for the tower's profile" if widened else ""))

    def _cache_frozen_media(self, augment) -> set[str]:
        """Frozen audio/image towers: features of every training item's fixed view, computed once,
        and of ``train.feature_copies`` training copies of it (made with ``augment``)."""
        from xmr.train.data import BatchSpec

        cached = set()
        copies = self.cfg.train.feature_copies
        for m in ("audio", "image"):
            if m in self.modalities and self.adapter.tower_fixed(m):
                spec = BatchSpec(modalities=(m,), audio_samples=self.adapter.audio_samples)
                copy_spec = self._batch_spec((m,), cached=set(), augment=augment) if copies else None
                self.adapter.cache_media_features(m, self.train_items, spec=spec, cache_dir=self.cache_dir,
                                                  copies=copies, copy_spec=copy_spec, seed=self.cfg.seed,
                                                  progress=self.cfg.train.progress and self.info.is_main)
                cached.add(m)
        return cached

    def _batch_spec(self, modalities: tuple[str, ...], *, cached: set[str], augment):
        """How training batches are made (``data``); a cached frozen tower's modality is not made,
        its features are looked up (each item's fixed view or a drawn copy)."""
        from xmr.train.data import BatchSpec

        d = self.cfg.data
        return BatchSpec(modalities=modalities, audio_samples=self.adapter.audio_samples,
                         random_crop=d.random_crop and "audio" not in cached,
                         affine=d.affine and "image" not in cached,
                         affine_degrees=d.affine_degrees, affine_translate=d.affine_translate,
                         affine_scale=tuple(d.affine_scale), caption_choice=d.caption_choice,
                         span_prob=d.span_prob, span_min_bars=d.span_min_bars,
                         span_max_bars=d.span_max_bars, augment=augment, views=d.views,
                         view_modalities=tuple(m for m in ("audio", "image") if m not in cached),
                         features_cached=tuple(m for m in sorted(cached) if self.adapter.tower_fixed(m)),
                         feature_copies=self.cfg.train.feature_copies,
                         partial_to_whole=self.cfg.train.partial_to_whole)

    def _build_loss(self):
        from xmr.train.losses import build_loss

        loss_cfg = dict(self.cfg.loss)
        loss_cfg.setdefault("num_items", len(self.train_items))
        loss_cfg.setdefault("embed_dim", self.adapter.embed_dim)
        loss_cfg.setdefault("modalities", list(self.modalities))
        return build_loss(loss_cfg).to(self.device)

    def _build_sampler(self):
        if not self.cfg.curriculum:
            return RandomBatchSampler(len(self.train_items), self.cfg.data.batch_size, seed=self.cfg.seed)
        from xmr.train.curriculum import CurriculumBatchSampler

        cur = dict(self.cfg.curriculum)
        unknown = set(cur) - {"ancillary", "ancillary_modalities", "schedule"}
        if unknown:
            raise InputError(f"config: unknown curriculum key(s): {', '.join(sorted(unknown))}")
        emb = self._ancillary(cur.get("ancillary"), cur.get("ancillary_modalities", ["audio", "text"]))
        # Global batches (rank 0 / world 1): this trainer slices each process's rows itself.
        return CurriculumBatchSampler(emb, self.cfg.data.batch_size, schedule=cur.get("schedule"),
                                      seed=self.cfg.seed)

    def _ancillary(self, source, modalities):
        """3CMLF's ancillary embeddings of the training items: an earlier checkpoint or an .npy file."""
        from xmr.train.adapter import ModelAdapter
        from xmr.train.evaluate import embed_items

        if not source:
            raise InputError("config: curriculum.ancillary must name an earlier checkpoint or an .npy file")
        path = Path(str(source))
        if path.suffix == ".npy":
            emb = np.load(path)
            if emb.shape[0] != len(self.train_items):
                raise InputError(f"{path}: {emb.shape[0]} ancillary vectors, {len(self.train_items)} items")
            return emb
        import xmr

        earlier = xmr.load_model(path, device=str(self.device))
        mods = tuple(m for m in MODALITY_ORDER if m in modalities and m in earlier.modalities)
        adapter = ModelAdapter(earlier, modalities=mods, device=self.device)
        parts = embed_items(adapter, self.train_items, modalities=mods)
        total = sum(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for v in parts.values())
        return total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)

    def _amp_dtype(self):
        import torch

        amp = self.cfg.train.amp
        if amp == "off" or (amp == "auto" and self.device.type != "cuda"):
            return None
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16

    def _autocast(self):
        import torch

        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        return self.out / "state.pt"

    def state_dict(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "wall": self.wall,
            "model": self._model_state(),
            "loss": self.loss_fn.state_dict(),
            "loss_extra": self.loss_fn.memory_state() if hasattr(self.loss_fn, "memory_state") else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": _rng_state(),
            "history": json.dumps(self.history),
            "config": json.dumps(self.cfg.to_dict()),
        }
        return state

    def _model_state(self) -> dict[str, Any]:
        # Weights that come from an installed package (the frozen MiniLM) are not saved.
        skip = tuple(self.adapter.unwrapped.external_prefixes())
        return {k: v for k, v in self.model.state_dict().items() if not (skip and k.startswith(skip))}

    def save_state(self) -> None:
        """Write ``state.pt`` atomically (main process only; every process holds the same state)."""
        if self.info.is_main:
            save_atomic(self.state_dict(), self.state_path)

    def load_state(self) -> None:
        """Restore everything :meth:`state_dict` saved."""
        import random

        import torch

        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        saved_cfg = json.loads(state["config"])
        if saved_cfg.get("model") != self.cfg.to_dict().get("model"):
            raise InputError(f"{self.state_path}: saved with a different model config; refusing to resume")
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        skip = tuple(self.adapter.unwrapped.external_prefixes())
        if unexpected or any(not (skip and k.startswith(skip)) for k in missing):
            raise InputError(f"{self.state_path}: model weights do not match the config")
        self.loss_fn.load_state_dict(state["loss"])
        if state.get("loss_extra") is not None and hasattr(self.loss_fn, "load_memory_state"):
            self.loss_fn.load_memory_state(state["loss_extra"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        np.random.set_state(("MT19937", np.asarray(rng["numpy"], dtype=np.uint32), 624, 0, 0.0))
        random.setstate((3, tuple(rng["python"]), None))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in rng["cuda"]])
        self.step = int(state["step"])
        self.wall = float(state["wall"])
        self.history = json.loads(state["history"])

    # ------------------------------------------------------------------ one step
    def _gathered(self, local: dict[str, Any], *, with_grad: bool) -> dict[str, Any]:
        """(B_local, D) per modality -> (B_global, D), all modalities in one collective."""
        import torch

        from xmr.train import dist

        mods = list(local)
        stacked = torch.cat([local[m] for m in mods], dim=0)  # (M*Bl, D)
        gathered = dist.gather_with_grad(stacked) if with_grad else dist.all_gather_nograd(stacked)
        world, bl = self.info.world_size, self.local_bs
        view = gathered.view(world, len(mods), bl, -1)  # (R, M, Bl, D)
        return {m: view[:, k].reshape(world * bl, -1) for k, m in enumerate(mods)}

    def _gather_meta(self, batch, indices):
        import torch

        from xmr.train import dist

        present = {m: dist.all_gather_nograd(batch.present[m].to(self.device, torch.uint8)).bool()
                   for m in self.modalities}
        ids = dist.all_gather_nograd(torch.tensor(indices, dtype=torch.long, device=self.device))
        groups = None
        if "text" in self.modalities and self.cfg.data.positive_groups == "caption":
            groups = dist.all_gather_nograd(_caption_groups(batch.text).to(self.device))
        return present, ids, groups

    def _embed(self, batch, rows: slice | None = None) -> dict[str, Any]:
        with self._autocast():
            out = {m: self.adapter.embed(m, batch, rows=rows) for m in self.modalities}
        return {m: v.float() for m, v in out.items()}

    def train_step(self, global_indices: list[int]) -> dict[str, float]:
        """One optimizer step on a global batch; returns logs (loss averaged over processes)."""
        import torch

        from xmr.train import dist

        cfg, info = self.cfg, self.info
        # Re-seed per step: dropout masks depend on (seed, step, rank) only, so resume is exact.
        torch.manual_seed(cfg.seed * 1_000_003 + self.step * 7919 + info.rank)
        rank_rows = slice(info.rank * self.local_bs, (info.rank + 1) * self.local_bs)
        indices = global_indices[rank_rows]
        spec = self._batch_spec(self.modalities, cached=self.cached_media, augment=self.augment)
        batch = self.train_items.batch(indices, spec=spec, seed=cfg.seed, step=self.step)
        present, ids, groups = self._gather_meta(batch, indices)
        local = rank_rows if info.distributed else None
        self.adapter.train_mode()
        self.optimizer.zero_grad(set_to_none=True)
        accum = cfg.train.accum_steps

        if accum == 1:
            emb = self._gathered(self._embed(batch), with_grad=True)
            loss, logs = self.loss_fn(emb, present, ids, groups, self.step, local)
            self.scaler.scale(loss).backward()
        else:
            # GradCache: 1) embeddings of every sub-batch without graph
            sub = self.local_bs // accum
            chunks = [slice(k * sub, (k + 1) * sub) for k in range(accum)]
            rng_states, parts = [], []
            with torch.no_grad():
                for rows in chunks:
                    rng_states.append(torch.get_rng_state())
                    parts.append(self._embed(batch, rows=rows))
            local_emb = {m: torch.cat([p[m] for p in parts], dim=0) for m in self.modalities}
            # 2) the full-batch loss and its gradient with respect to the embeddings
            full = self._gathered(local_emb, with_grad=False)
            leaves = {m: v.detach().requires_grad_(True) for m, v in full.items()}
            loss, logs = self.loss_fn(leaves, present, ids, groups, self.step, local)
            self.scaler.scale(loss).backward()
            grads = {}
            for m, leaf in leaves.items():
                g = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
                if info.distributed:  # other processes' losses also depend on our rows
                    torch.distributed.all_reduce(g, op=torch.distributed.ReduceOp.SUM)
                grads[m] = g[rank_rows] if info.distributed else g
            # 3) replay each sub-batch with graph and back-propagate the cached gradient; BatchNorm
            # running statistics were updated by the first pass and are restored after the replay.
            after = torch.get_rng_state()
            buffers = {k: v.clone() for k, v in self.model.named_buffers()}
            for rows, rng in zip(chunks, rng_states, strict=True):
                torch.set_rng_state(rng)
                emb = self._embed(batch, rows=rows)
                tensors = [emb[m] for m in self.modalities if emb[m].requires_grad]
                cached = [grads[m][rows] for m in self.modalities if emb[m].requires_grad]
                if tensors:
                    torch.autograd.backward(tensors, cached)
            torch.set_rng_state(after)
            with torch.no_grad():
                for k, v in self.model.named_buffers():
                    v.copy_(buffers[k])

        dist.all_reduce_gradients(self.params, average=True)
        dist.broadcast_buffers(self.model)  # as DDP: every process keeps rank 0's BatchNorm statistics
        self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if cfg.optim.clip_grad:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        out = {"loss": dist.all_reduce_mean(float(loss.detach()))}
        for k, v in (logs or {}).items():
            try:
                out[k] = dist.all_reduce_mean(float(v))
            except (TypeError, ValueError):
                continue
        if grad_norm is not None:
            out["grad_norm"] = grad_norm
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        return out

    # ------------------------------------------------------------------ logging and evaluation
    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if not self.info.is_main:
            return
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.cfg.train.tensorboard:
            if self._tb is None:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.out / "tb"))
                except ImportError:
                    self.cfg.train.tensorboard = False
                    return
            for k, v in record.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, record["step"])

    def _cut_log_to_history(self) -> None:
        """Rewrite ``log.jsonl`` as the restored history: the rows a killed run logged after its last
        checkpoint are dropped, since those steps are redone and logged again."""
        if not self.info.is_main:
            return
        tmp = self.out / "log.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history), encoding="utf-8")
        tmp.replace(self.out / "log.jsonl")

    def evaluate(self) -> dict[str, float]:
        """Validation metrics per direction (R@1/5/10, MRR, MedR) on the main process's copy."""
        from xmr.train.evaluate import evaluate_items

        if self.val_items is None:
            return {}
        metrics = evaluate_items(self.adapter, self.val_items, modalities=self.modalities)
        return metrics

    # ------------------------------------------------------------------ the run
    def fit(self, *, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``train.steps`` (or stop after ``stop_after`` steps of this call, as an interrupted
        run would, with a checkpoint written). Returns the final report (also ``OUT/report.json``)."""
        from tqdm import tqdm

        from xmr.train import dist

        cfg, info = self.cfg, self.info
        if resume:
            if self.state_path.exists():
                self.load_state()
                self._cut_log_to_history()
            elif info.is_main:
                print(f"xmr train: nothing to resume in {self.out}, starting fresh")
        elif info.is_main and self.state_path.exists():
            raise InputError(f"{self.out} already holds a run (state.pt); use --resume or another --out")
        if info.is_main and not resume:
            (self.out / "log.jsonl").unlink(missing_ok=True)
        if info.is_main:  # a resumed run may change e.g. train.steps: keep the config it runs with
            (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        bar = tqdm(total=cfg.train.steps, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not (cfg.train.progress and info.is_main))
        done_here = 0
        tick = time.perf_counter()
        while self.step < cfg.train.steps:
            self._before_step()
            indices, epoch_end = self.sampler.next_batch()
            logs = self.train_step(indices)
            self.step += 1
            done_here += 1
            if epoch_end and hasattr(self.loss_fn, "on_epoch_end"):
                self.loss_fn.on_epoch_end()
            now = time.perf_counter()
            self.wall += now - tick
            tick = now
            if cfg.train.log_every and (self.step % cfg.train.log_every == 0 or self.step == 1):
                self._log({"kind": "train", "step": self.step, "epoch": self.sampler.state_dict()["epoch"],
                           "wall": round(self.wall, 3), **logs})
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
            bar.update(1)
            last = self.step == cfg.train.steps
            if cfg.train.eval_every and (self.step % cfg.train.eval_every == 0 or last):
                self._eval_and_log()
                tick = time.perf_counter()
            stopping = stop_after is not None and done_here >= stop_after
            if (cfg.train.ckpt_every and self.step % cfg.train.ckpt_every == 0) or last or stopping:
                self.save_state()
                dist.barrier()
                tick = time.perf_counter()
            if stopping and not last:
                bar.close()
                return {"step": self.step, "interrupted": True}
        bar.close()
        report = self._finish()
        dist.barrier()
        return report

    def _before_step(self) -> None:
        """The 3CMLF stage of the current epoch decides which towers train (Chao et al. 2022, Sec. II-E)."""
        frozen_now = getattr(self.sampler, "frozen", None)
        if frozen_now is None:
            return
        stage_frozen = set(frozen_now())
        if stage_frozen == getattr(self, "_stage_frozen", None):
            return
        self._stage_frozen = stage_frozen
        self.adapter.set_frozen(sorted(set(self.cfg.train.freeze)), heads=self.cfg.train.freeze_heads)
        for m in stage_frozen & set(self.modalities):
            self.adapter.set_trainable(m, False, heads=True)

    def _eval_and_log(self) -> None:
        from xmr.train import dist

        if self.info.is_main and self.val_items is not None:
            metrics = self.evaluate()
            self._log({"kind": "val", "step": self.step, **metrics})
        dist.barrier()

    def _finish(self) -> dict[str, Any]:
        report = {
            "steps": self.step,
            "wall_seconds": round(self.wall, 1),
            "processes": self.info.world_size,
            "device": str(self.device),
            "train_items": len(self.train_items),
            "global_batch": self.cfg.data.batch_size,
            "history": [h for h in self.history if h.get("kind") == "val"][-5:],
        }
        if self.info.is_main:
            from xmr.models.checkpoint import save_checkpoint

            self.adapter.clear_caches()
            final = next((h for h in reversed(self.history) if h.get("kind") == "val"), {})
            save_checkpoint(self.adapter.unwrapped, self.out / "checkpoint", train_config=self.cfg.to_dict(),
                            metrics={k: v for k, v in final.items() if k not in ("kind",)},
                            training={k: v for k, v in report.items() if k != "history"})
            (self.out / "report.json").write_text(json.dumps(report, indent=2))
            if self._tb is not None:
                self._tb.close()
        return report


def train(config: TrainConfig, *, out_dir: str | Path, resume: bool = False,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train a model by a config; the library entry point of ``xmr train``.

    Args:
        config: a :class:`TrainConfig` (see :func:`xmr.train.config.load_config`).
        out_dir: the run folder.
        resume: continue from ``out_dir/state.pt``.
        stop_after: stop after this many steps of this call, writing a checkpoint (simulates an
            interrupted run; tests use it).

    Example:
        >>> train(load_config("configs/tiny.yaml"), out_dir="runs/tiny")  # doctest: +SKIP
    """
    trainer = Trainer(config, out_dir=out_dir)
    return trainer.fit(resume=resume, stop_after=stop_after)
