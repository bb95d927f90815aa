"""Contrastive losses over the modality pairs of a batch, with optional XBM / SCFEM memories.

One loss object serves every configuration (built by :func:`build_loss` from a
:class:`LossConfig` or a plain mapping)::

    loss_fn = build_loss({"kind": "infonce", "memory": "scfem", "warmup_steps": 1000})
    loss, logs = loss_fn(emb, present, ids, groups, step, local)

**Pairs.** Each modality pair (``audio-image``, ``audio-text``, ``image-text``) present in the
batch contributes its own term with its own temperature; only items that have *both* modalities
take part in a pair (an item without a caption skips the text pairs). The total is
``sum_p weight_p * L_p``.

**Batch terms** (both directions summed, each averaged over the pair's ``m`` anchors):

* ``infonce`` -- symmetric InfoNCE / NT-Xent: Nakatsuka et al. 2023, eq. (3); Chao et al. 2022,
  eq. (4); ``tau = 0.07``;
  optionally a learnable temperature per pair, parameterised as CLIP's logit scale
  ``exp(s)`` and clamped at 100.
* ``vsepp_max`` / ``vsepp_sum`` -- VSE++ triplet loss (Faghri et al. 2018) on cosine similarity:
  ``sum_j [margin - s(i, i) + s(i, j)]_+`` over negatives ``j``, the hardest negative (max) or
  all of them (sum), margin 0.2.

**Multi-positive masking.** Items with the same ``groups`` id (e.g. the same caption) or the
same item id are never negatives of one another: they are removed from the softmax denominator
(and from the hinge terms), except the anchor's own diagonal positive. Memories apply the same
rule to their stored entries.

**Memories** (after ``warmup_steps``; the memories are written from the first step so that they
are full when they switch on):

* ``xbm`` -- cross-batch memory (Wang et al. 2020), the baseline: a FIFO queue per modality; an
  extra InfoNCE term per direction whose negatives are the queued embeddings of the other
  modality: ``L = L_batch + lambda_xbm * L_xbm``.
* ``scfem`` -- Nakatsuka et al. 2023, Sec. 3.2.2: per-modality memories ``M^x, M^y`` of shape ``N x D x E``
  (:class:`~xmr.train.memory.EpochMemory`), the self-modal loss of eq. (6), the cross-modal
  loss of eq. (7) with weights ``w_e``, and eq. (8): ``L = L_batch + lambda_self * L_self +
  lambda_cross * L_cross`` (defaults 0.3, 0.2, ``E = 2``, ``w_e = 1``, ``tau = 0.07``).

  *Three modalities.* The paper has two (music x, image y). Here SCFEM is applied per modality
  pair ``(x, y)`` exactly as the paper's two-modality loss, with the anchors of that pair; the
  memory of one modality is shared by the pairs that contain it (one memory per modality, not per
  pair). So with audio, image and text, the audio self term appears in the audio-image and the
  audio-text pair, like the audio batch term does.

  *Order.* The current batch is written into the memories *before* the memory losses are
  computed, so slot ``e = 0`` holds the current iteration's (detached) embeddings; the paper's
  statement that XBM is the ``E = 1`` case holds in this reading (no past-epoch positives).

  *w_e.* Eqs. (6)-(7) put ``w_e`` inside the logarithm (``memory_weight_mode="log"``, the
  default): it then adds the constant ``-log w_e`` per term and does not change gradients.
  ``memory_weight_mode="scale"`` multiplies the ``e``-th term by ``w_e`` instead, the reading
  under which the paper's Table 2 weight settings change training. With ``w_e = 1`` they agree.

**Distributed.** ``emb`` are the embeddings of the *global* batch (gathered from every process,
with gradient for this process's rows). With ``local = slice(r*b, (r+1)*b)`` only the terms whose
query rows are this process's rows are computed (both directions, all columns: open_clip's
``local_loss``), scaled by the number of processes so that the mean of the per-process losses
equals the single-process loss on the global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xmr.config import strict_from_dict
from xmr.errors import InputError
from xmr.train.memory import EpochMemory, QueueMemory

ALL_PAIRS = ("audio-image", "audio-text", "image-text")
KINDS = ("infonce", "vsepp_max", "vsepp_sum")
MEMORIES = ("none", "xbm", "scfem")


@dataclass
class LossConfig:
    """Settings of :func:`build_loss` (all have the seeds' defaults).

    Args:
        kind: ``"infonce"``, ``"vsepp_max"`` or ``"vsepp_sum"``.
        temperature: tau of InfoNCE, one float or ``{"audio-image": 0.05, ...}`` per pair.
        learnable_temperature: learn ``log(1/tau)`` per pair (CLIP), the scale clamped at ``max_logit_scale``.
        max_logit_scale: CLIP's clamp of ``1/tau`` (100).
        margin: VSE++ margin.
        pairs: modality pairs to use (``"audio-image"``, ...); those with a missing modality are skipped.
        pair_weights: optional weight per pair (default 1).
        memory: ``"none"``, ``"xbm"`` or ``"scfem"``.
        warmup_steps: memory losses are added from this step on (Nakatsuka et al. 2023, Sec. 4.4.4).
        lambda_self, lambda_cross: SCFEM eq. (8) weights.
        memory_epochs: SCFEM's E.
        memory_weights: SCFEM's ``w_e`` (``E`` values; default all 1).
        memory_weight_mode: ``"log"`` (eqs. 6-7 as printed) or ``"scale"`` (see the module docs).
        memory_temperature: tau of the memory terms (SCFEM and XBM).
        xbm_size: XBM queue length per modality.
        lambda_xbm: weight of the XBM term.
        num_items: N, the number of training items (memory rows; 0 = grow on demand).
        embed_dim: D (0 = taken from the first batch).
        modalities: the model's modalities; pairs outside them are dropped.
    """

    kind: str = "infonce"
    temperature: float | dict[str, float] = 0.07
    learnable_temperature: bool = False
    max_logit_scale: float = 100.0
    margin: float = 0.2
    pairs: list[str] = field(default_factory=lambda: list(ALL_PAIRS))
    pair_weights: dict[str, float] = field(default_factory=dict)
    memory: str = "none"
    warmup_steps: int = 0
    lambda_self: float = 0.3
    lambda_cross: float = 0.2
    memory_epochs: int = 2
    memory_weights: list[float] | None = None
    memory_weight_mode: str = "log"
    memory_temperature: float = 0.07
    xbm_size: int = 4096
    lambda_xbm: float = 1.0
    num_items: int = 0
    embed_dim: int = 0
    modalities: list[str] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossConfig:
        """From a mapping; ``name`` is accepted for ``kind``, and ``name: xbm|scfem`` means InfoNCE
        with that memory."""
        data = dict(data)
        name = data.pop("name", None)
        if name is not None:
            if name in ("xbm", "scfem"):
                data.setdefault("memory", name)
                data.setdefault("kind", "infonce")
            else:
                data.setdefault("kind", name)
        return strict_from_dict(cls, data, what="loss")


def _pair_key(pair: str | tuple | list) -> tuple[str, str]:
    x, y = pair.split("-") if isinstance(pair, str) else tuple(pair)
    for m in (x, y):
        if m not in ("audio", "image", "text"):
            raise InputError(f"unknown modality {m!r} in loss pair {pair!r}")
    if x == y:
        raise InputError(f"loss pair {pair!r} needs two different modalities")
    return x, y


def build_loss(cfg: LossConfig | dict[str, Any] | None = None) -> PairwiseLoss:
    """Build the loss module (an ``nn.Module``: move it to the device; its parameters, if any,
    are the learnable temperatures).

    Example:
        >>> loss_fn = build_loss({"kind": "infonce", "memory": "scfem", "num_items": 1000, "embed_dim": 256})
    """
    if cfg is None:
        cfg = LossConfig()
    elif isinstance(cfg, dict):
        cfg = LossConfig.from_dict(cfg)
    return PairwiseLoss(cfg)


class PairwiseLoss(nn.Module):
    """The loss of :func:`build_loss`; call it as ``loss, logs = loss_fn(emb, present, ids, groups,
    step, local)`` (see the module docstring)."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        if cfg.kind not in KINDS:
            raise InputError(f"unknown loss kind {cfg.kind!r}; known: {', '.join(KINDS)}")
        if cfg.memory not in MEMORIES:
            raise InputError(f"unknown loss memory {cfg.memory!r}; known: {', '.join(MEMORIES)}")
        if cfg.memory_weight_mode not in ("log", "scale"):
            raise InputError("memory_weight_mode must be 'log' or 'scale'")
        self.cfg = cfg
        pairs = [_pair_key(p) for p in cfg.pairs]
        if cfg.modalities is not None:
            pairs = [p for p in pairs if p[0] in cfg.modalities and p[1] in cfg.modalities]
        if not pairs:
            raise InputError("the loss has no modality pair to train")
        self.pairs = pairs
        temps = {}
        for x, y in pairs:
            t = cfg.temperature
            if isinstance(t, dict):
                t = t.get(f"{x}-{y}", t.get(f"{y}-{x}", 0.07))
            if float(t) <= 0:
                raise InputError(f"temperature must be positive, got {t}")
            temps[f"{x}_{y}"] = float(t)
        self.temperatures = temps
        if cfg.learnable_temperature:
            self.logit_scale = nn.ParameterDict(
                {k: nn.Parameter(torch.tensor(math.log(1.0 / t))) for k, t in temps.items()}
            )
        weights = cfg.memory_weights or [1.0] * cfg.memory_epochs
        if len(weights) != cfg.memory_epochs or any(w <= 0 for w in weights):
            raise InputError(f"memory_weights needs {cfg.memory_epochs} positive values, got {weights}")
        self.memory_weights = [float(w) for w in weights]
        self.memories: dict[str, EpochMemory | QueueMemory] = {}
        self._last_write: tuple[int, int, int] | None = None
        if cfg.memory != "none" and cfg.embed_dim:
            for m in self._memory_modalities():
                self.memories[m] = self._new_memory(cfg.embed_dim)

    # ------------------------------------------------------------------ memories
    def _memory_modalities(self) -> list[str]:
        return sorted({m for p in self.pairs for m in p})

    def _new_memory(self, dim: int) -> EpochMemory | QueueMemory:
        if self.cfg.memory == "scfem":
            return EpochMemory(self.cfg.num_items, dim, self.cfg.memory_epochs)
        return QueueMemory(self.cfg.xbm_size, dim)

    def memory_state(self) -> dict[str, torch.Tensor]:
        """The memories as a flat ``{"<modality>.<key>": tensor}`` dict (safetensors-ready)."""
        out = {}
        for m, mem in self.memories.items():
            for k, v in mem.state_dict().items():
                out[f"{m}.{k}"] = v
        return out

    def load_memory_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`memory_state` (creating the memories if they do not exist yet)."""
        by_mod: dict[str, dict[str, torch.Tensor]] = {}
        for key, v in state.items():
            m, k = key.split(".", 1)
            by_mod.setdefault(m, {})[k] = v
        for m, st in by_mod.items():
            if m not in self.memories:
                dim = int(st["emb"].shape[-1])
                self.memories[m] = self._new_memory(dim)
            self.memories[m].load_state_dict(st)

    def on_epoch_end(self) -> None:
        """Tell the memories an epoch ended."""
        for mem in self.memories.values():
            mem.on_epoch_end()

    def memory_active(self, step: int) -> bool:
        return self.cfg.memory != "none" and step >= self.cfg.warmup_steps

    def _write_memories(self, emb, present, ids, groups, step: int) -> None:
        key = (int(step), ids.numel(), int(ids.sum()))
        if self._last_write == key:  # the same batch again at the same step: write it once
            return
        self._last_write = key
        for m in self._memory_modalities():
            if m not in emb:
                continue
            if m not in self.memories:
                self.memories[m] = self._new_memory(emb[m].shape[1])
            mem = self.memories[m].to(emb[m].device)
            rows = present[m]
            mem.write(ids[rows], emb[m][rows].detach().float(), groups[rows])

    # ------------------------------------------------------------------ terms
    def scale(self, x: str, y: str) -> torch.Tensor | float:
        """1/tau of a pair (learnable: ``exp(logit_scale)`` clamped at ``max_logit_scale``)."""
        key = f"{x}_{y}"
        if self.cfg.learnable_temperature:
            return self.logit_scale[key].exp().clamp(max=self.cfg.max_logit_scale)
        return 1.0 / self.temperatures[key]

    def _batch_term(self, a, b, q, excluded, scale) -> torch.Tensor:
        """Sum over query rows ``q`` of one direction's batch loss (anchors ``a``, candidates ``b``)."""
        r = torch.arange(q.numel(), device=a.device)
        sims = a[q] @ b.T  # (nq, m)
        if self.cfg.kind == "infonce":
            logits = (sims * scale).masked_fill(excluded[q], float("-inf"))
            return -logits.log_softmax(dim=1)[r, q].sum()
        pos = sims[r, q]
        hinge = (self.cfg.margin - pos[:, None] + sims).clamp(min=0)
        not_neg = excluded[q].clone()
        not_neg[r, q] = True
        hinge = hinge.masked_fill(not_neg, 0.0)
        if self.cfg.kind == "vsepp_max":
            return hinge.max(dim=1).values.sum()
        return hinge.sum()

    def _epoch_memory_rows(self, a, a_ids, a_groups, mem: EpochMemory) -> torch.Tensor:
        """Per anchor, the sum over slots ``e`` of one half of eq. (6) or (7): anchors ``a`` ``(n, D)``
        against memory ``mem``; ``(n,)``, 0 for slots that do not hold the anchor's own item."""
        out = a.new_zeros(a.shape[0])
        cols = torch.arange(mem.num_items, device=a.device)
        inv_tau = 1.0 / self.cfg.memory_temperature
        # a stored item of the anchor's group (other than the anchor's own id) is not a negative
        mates = (mem.groups[None, :] == a_groups[:, None]) & (cols[None, :] != a_ids[:, None])  # (n, N)
        for e in range(mem.epochs):
            valid = mem.valid[e]
            has_pos = valid[a_ids]  # the anchor's own entry t-e must exist to form the positive
            if not bool(has_pos.any()):
                continue
            rows = has_pos.nonzero().squeeze(1)
            logits = (a[rows] @ mem.slot(e).T) * inv_tau  # (n_rows, N): S_ij or C_ij / tau
            logits = logits.masked_fill(~valid[None, :] | mates[rows], float("-inf"))
            log_prob = logits[torch.arange(rows.numel(), device=a.device), a_ids[rows]] - logits.logsumexp(1)
            w = self.memory_weights[e]
            term = -(math.log(w) + log_prob) if self.cfg.memory_weight_mode == "log" else -w * log_prob
            out = out.index_add(0, rows, term)
        return out

    def _xbm_term(self, a, b_pos, a_ids, a_groups, mem: QueueMemory, scale: float) -> torch.Tensor:
        """Sum over anchors of InfoNCE against the queue: positive = the anchor's own pair (detached)."""
        q_emb, q_ids, q_groups = mem.contents()
        pos = (a * b_pos.detach()).sum(1, keepdim=True)  # (nq, 1)
        negs = a @ q_emb.T  # (nq, K)
        not_neg = (q_ids[None, :] == a_ids[:, None]) | (q_groups[None, :] == a_groups[:, None])
        logits = torch.cat([pos, negs.masked_fill(not_neg, float("-inf"))], dim=1) * scale
        return -logits.log_softmax(dim=1)[:, 0].sum()

    # ------------------------------------------------------------------ call
    def forward(
        self,
        emb: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor] | None,
        ids: torch.Tensor,
        groups: torch.Tensor | None = None,
        step: int = 0,
        local: slice | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one (global) batch.

        Args:
            emb: ``{modality: (B, D)}`` L2-normalised embeddings of the global batch.
            present: ``{modality: (B,) bool}`` which items have the modality (None: all).
            ids: ``(B,)`` item ids (memory rows; ``0..N-1``).
            groups: ``(B,)`` positive-group ids (same id = not negatives of each other), or None.
            step: the optimizer step (memory losses only from ``warmup_steps`` on).
            local: this process's rows of the global batch (None: all rows).

        Returns:
            ``(loss, logs)``: a scalar tensor and floats per term (``"audio-image/batch"``, ...).
        """
        if not emb:
            raise InputError("the loss got no embeddings")
        ids = ids.reshape(-1).long()
        b = ids.numel()
        emb = {m: v.float() for m, v in emb.items()}
        device = ids.device
        for m, v in emb.items():
            if v.dim() != 2 or v.shape[0] != b:
                raise InputError(f"loss: {m} embeddings {tuple(v.shape)} do not match {b} ids")
        present = {
            m: (
                present[m].reshape(-1).bool()
                if present is not None and m in present
                else torch.ones(b, dtype=torch.bool, device=device)
            )
            for m in emb
        }
        groups = ids if groups is None else groups.reshape(-1).long()
        if local is None:
            world, is_local = 1, torch.ones(b, dtype=torch.bool, device=device)
        else:
            n_local = len(range(*local.indices(b)))
            if n_local == 0 or b % n_local:
                raise InputError(f"local rows {local} do not split a global batch of {b} evenly")
            world = b // n_local
            is_local = torch.zeros(b, dtype=torch.bool, device=device)
            is_local[local] = True

        if self.cfg.memory != "none":
            self._write_memories(emb, present, ids, groups, step)
        use_memory = self.memory_active(step)

        row_terms: dict[tuple[str, str], torch.Tensor] = {}

        def memory_rows(a_mod: str, m_mod: str) -> torch.Tensor:
            # (B,) SCFEM terms of every local row with modality a_mod against memory m_mod; computed
            # once per call and shared by the pairs (audio's self term serves audio-image and audio-text)
            if (a_mod, m_mod) not in row_terms:
                r = (is_local & present[a_mod]).nonzero().squeeze(1)
                vals = self._epoch_memory_rows(emb[a_mod][r], ids[r], groups[r], self.memories[m_mod])
                row_terms[a_mod, m_mod] = emb[a_mod].new_zeros(b).index_add(0, r, vals)
            return row_terms[a_mod, m_mod]

        total = sum(v.sum() * 0.0 for v in emb.values())  # keeps the graph when no pair is present
        logs: dict[str, float] = {}
        for x, y in self.pairs:
            if x not in emb or y not in emb:
                continue
            rows = (present[x] & present[y]).nonzero().squeeze(1)
            m = rows.numel()
            if m == 0:
                continue
            ex, ey, gid, iid = emb[x][rows], emb[y][rows], groups[rows], ids[rows]
            q = is_local[rows].nonzero().squeeze(1)  # this process's anchors, as positions in rows
            norm = world / m  # mean over processes of the local sums = the global mean over m anchors
            eye = torch.eye(m, dtype=torch.bool, device=device)
            excluded = ((gid[:, None] == gid[None, :]) | (iid[:, None] == iid[None, :])) & ~eye
            scale = self.scale(x, y)
            name = f"{x}-{y}"
            pair_loss = norm * (
                self._batch_term(ex, ey, q, excluded, scale) + self._batch_term(ey, ex, q, excluded, scale)
            )
            logs[f"{name}/batch"] = float(pair_loss.detach())
            if use_memory and q.numel():
                aq_x, aq_y, a_ids, a_groups = ex[q], ey[q], iid[q], gid[q]
                mx, my = self.memories[x], self.memories[y]
                if self.cfg.memory == "scfem":
                    anchors = rows[q]  # global rows of this pair's anchors
                    l_self = norm * (
                        memory_rows(x, x)[anchors].sum() + memory_rows(y, y)[anchors].sum()
                    )  # eq. (6)
                    l_cross = norm * (
                        memory_rows(x, y)[anchors].sum() + memory_rows(y, x)[anchors].sum()
                    )  # eq. (7)
                    pair_loss = pair_loss + self.cfg.lambda_self * l_self + self.cfg.lambda_cross * l_cross
                    logs[f"{name}/self"] = float(l_self.detach())
                    logs[f"{name}/cross"] = float(l_cross.detach())
                else:
                    s = 1.0 / self.cfg.memory_temperature
                    l_xbm = norm * (
                        self._xbm_term(aq_x, aq_y, a_ids, a_groups, my, s)
                        + self._xbm_term(aq_y, aq_x, a_ids, a_groups, mx, s)
                    )
                    pair_loss = pair_loss + self.cfg.lambda_xbm * l_xbm
                    logs[f"{name}/xbm"] = float(l_xbm.detach())
            if self.cfg.learnable_temperature:
                logs[f"{name}/temperature"] = float(1.0 / scale.detach())
            total = total + float(self.cfg.pair_weights.get(name, 1.0)) * pair_loss
        logs["loss"] = float(total.detach())
        return total, logs
