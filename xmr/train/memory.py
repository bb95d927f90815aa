"""Feature memories for the losses: XBM (a FIFO queue) and SCFEM's per-item epoch memory.

Both hold *detached* embeddings of one modality. Every process of a distributed run keeps an
identical replica: the trainer gathers the embeddings and item ids of all processes before the
loss writes them, so every replica receives the same writes in the same order.

* :class:`EpochMemory` -- Nakatsuka et al. 2023, Sec. 3.2.2: ``M in R^{N x D x E}`` indexed by item
  id, holding each item's embeddings of the last ``E`` epochs. Stored as ``(E, N, D)`` so that slot
  ``e`` is one ``(N, D)`` matrix (the ``z_j^{t-e}`` of eqs. (6)-(7)). Slot ``e`` of item ``j`` is
  its ``e``-th latest write: when the memory of an item is full, the earliest embedding is replaced
  by the one of the current iteration, as the paper says. Since every item is visited once per
  epoch, slot ``e`` then holds the item's embedding from ``e`` epochs before its latest visit, and
  slot 0 the current epoch's (the current iteration's, for the items of the batch being trained).
* :class:`QueueMemory` -- XBM (Wang et al. 2020): a FIFO queue of the last ``K`` embeddings.
"""

from __future__ import annotations

from typing import Any

import torch

from xmr.errors import InputError

NO_GROUP = torch.iinfo(torch.long).min  # the group of rows written without one (matches no real group)


class EpochMemory:
    """SCFEM memory of one modality: the last ``E`` embeddings of every item, by item id.

    Args:
        num_items: N, the number of training items (ids are ``0..N-1``; grows on demand if 0).
        dim: D, the embedding dimension.
        epochs: E, how many embeddings per item are kept.

    Example:
        >>> mem = EpochMemory(num_items=4, dim=2, epochs=2)
        >>> mem.write(torch.tensor([1]), torch.tensor([[1.0, 0.0]]))
        >>> mem.slot(0)[1].tolist(), bool(mem.valid[0, 1]), bool(mem.valid[1, 1])
        ([1.0, 0.0], True, False)
    """

    def __init__(self, num_items: int, dim: int, epochs: int = 2) -> None:
        if epochs < 1 or dim < 1 or num_items < 0:
            raise InputError(f"bad memory size: num_items={num_items}, dim={dim}, epochs={epochs}")
        self.epochs = int(epochs)
        self.dim = int(dim)
        self.emb = torch.zeros(self.epochs, int(num_items), self.dim)  # (E, N, D)
        self.valid = torch.zeros(self.epochs, int(num_items), dtype=torch.bool)  # (E, N)
        self.groups = torch.full((int(num_items),), NO_GROUP, dtype=torch.long)  # positive group of each id
        self.epoch = 0

    @property
    def num_items(self) -> int:
        return self.emb.shape[1]

    def to(self, device: torch.device | str) -> EpochMemory:
        self.emb, self.valid, self.groups = self.emb.to(device), self.valid.to(device), self.groups.to(device)
        return self

    def _grow(self, n: int) -> None:
        if n <= self.num_items:
            return
        extra = n - self.num_items
        dev = self.emb.device
        self.emb = torch.cat([self.emb, torch.zeros(self.epochs, extra, self.dim, device=dev)], 1)
        self.valid = torch.cat([self.valid, torch.zeros(self.epochs, extra, dtype=torch.bool, device=dev)], 1)
        self.groups = torch.cat([self.groups, torch.full((extra,), NO_GROUP, dtype=torch.long, device=dev)])

    @torch.no_grad()
    def write(self, ids: torch.Tensor, emb: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Store detached embeddings ``(b, D)`` of items ``ids`` ``(b,)``; older ones shift one slot back."""
        if ids.numel() == 0:
            return
        if emb.shape != (ids.numel(), self.dim):
            raise InputError(
                f"memory write: embeddings {tuple(emb.shape)} for {ids.numel()} ids of dim {self.dim}"
            )
        if ids.unique().numel() != ids.numel():
            raise InputError("memory write: an item id appears twice in one batch")
        if int(ids.min()) < 0:
            raise InputError("memory write: negative item id")
        self._grow(int(ids.max()) + 1)
        ids = ids.to(self.emb.device)
        if self.epochs > 1:
            self.emb[1:, ids] = self.emb[:-1, ids].clone()
            self.valid[1:, ids] = self.valid[:-1, ids].clone()
        self.emb[0, ids] = emb.detach().to(self.emb.device, self.emb.dtype)
        self.valid[0, ids] = True
        if groups is not None:
            self.groups[ids] = groups.to(self.groups.device)

    def slot(self, e: int) -> torch.Tensor:
        """``(N, D)``: each item's embedding ``e`` writes (= epochs) ago; unset where ``valid[e]`` is 0."""
        return self.emb[e]

    def on_epoch_end(self) -> None:
        """Count epochs. Slots advance per item on each write, so no data moves here."""
        self.epoch += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "emb": self.emb.cpu(),
            "valid": self.valid.cpu(),
            "groups": self.groups.cpu(),
            "epoch": torch.tensor(self.epoch),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.emb.device
        if state["emb"].shape[0] != self.epochs or state["emb"].shape[2] != self.dim:
            raise InputError(
                f"memory state of shape {tuple(state['emb'].shape)} does not fit E={self.epochs}, "
                f"D={self.dim}"
            )
        self.emb = state["emb"].to(dev).float()
        self.valid = state["valid"].to(dev).bool()
        self.groups = state["groups"].to(dev).long()
        self.epoch = int(state["epoch"])


class QueueMemory:
    """XBM memory of one modality: a FIFO queue of the ``size`` most recent embeddings.

    Args:
        size: K, the queue length (0 disables the memory).
        dim: D.

    Example:
        >>> q = QueueMemory(size=3, dim=2)
        >>> q.write(torch.tensor([7, 8]), torch.eye(2))
        >>> q.contents()[1].tolist()
        [7, 8]
    """

    def __init__(self, size: int, dim: int) -> None:
        if size < 0 or dim < 1:
            raise InputError(f"bad queue size {size} / dim {dim}")
        self.size = int(size)
        self.dim = int(dim)
        self.emb = torch.zeros(self.size, self.dim)
        self.ids = torch.full((self.size,), -1, dtype=torch.long)
        self.groups = torch.full((self.size,), NO_GROUP, dtype=torch.long)
        self.ptr = 0
        self.filled = 0

    def to(self, device: torch.device | str) -> QueueMemory:
        self.emb, self.ids, self.groups = self.emb.to(device), self.ids.to(device), self.groups.to(device)
        return self

    @torch.no_grad()
    def write(self, ids: torch.Tensor, emb: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Enqueue ``(b, D)`` detached embeddings; the oldest entries are overwritten."""
        b = ids.numel()
        if b == 0 or self.size == 0:
            return
        if b > self.size:  # only the newest ``size`` fit
            ids, emb = ids[-self.size :], emb[-self.size :]
            groups = None if groups is None else groups[-self.size :]
            b = self.size
        pos = (torch.arange(b) + self.ptr) % self.size
        pos = pos.to(self.emb.device)
        self.emb[pos] = emb.detach().to(self.emb.device, self.emb.dtype)
        self.ids[pos] = ids.to(self.ids.device)
        self.groups[pos] = NO_GROUP if groups is None else groups.to(self.groups.device)
        self.ptr = (self.ptr + b) % self.size
        self.filled = min(self.size, self.filled + b)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeddings ``(n, D)``, ids ``(n,)``, groups ``(n,)``) of the filled part, oldest first."""
        if self.filled < self.size:
            idx = torch.arange(self.filled)
        else:
            idx = (torch.arange(self.size) + self.ptr) % self.size
        idx = idx.to(self.emb.device)
        return self.emb[idx], self.ids[idx], self.groups[idx]

    def on_epoch_end(self) -> None:
        """XBM keeps its queue across epochs (it is a queue of iterations, not epochs)."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "emb": self.emb.cpu(),
            "ids": self.ids.cpu(),
            "groups": self.groups.cpu(),
            "ptr": torch.tensor(self.ptr),
            "filled": torch.tensor(self.filled),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.emb.device
        if tuple(state["emb"].shape) != (self.size, self.dim):
            raise InputError(
                f"queue state of shape {tuple(state['emb'].shape)} does not fit ({self.size}, {self.dim})"
            )
        self.emb = state["emb"].to(dev).float()
        self.ids = state["ids"].to(dev).long()
        self.groups = state["groups"].to(dev).long()
        self.ptr = int(state["ptr"])
        self.filled = int(state["filled"])
