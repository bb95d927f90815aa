"""The trainer's default global batch sampler (the 3CMLF curriculum's lives in
:mod:`xmr.train.curriculum`)."""

from __future__ import annotations

import numpy as np

from xmr.errors import InputError


class RandomBatchSampler:
    """Global batches of distinct indices: a fresh permutation per epoch (seeded by ``(seed, epoch)``),
    the last incomplete batch dropped. State is ``(epoch, position)`` so resume is exact.

    Example:
        >>> s = RandomBatchSampler(10, 4, seed=0); len(s.next_batch())
        4
    """

    def __init__(self, num_items: int, batch_size: int, *, seed: int = 0):
        if num_items < batch_size:
            raise InputError(f"batch size {batch_size} is larger than the {num_items} training items")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_items)

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.batch_size

    def next_batch(self) -> tuple[list[int], bool]:
        """The next global batch and whether it closes an epoch."""
        start = self.position * self.batch_size
        batch = self._order[start:start + self.batch_size].tolist()
        self.position += 1
        ended = self.position >= self.batches_per_epoch
        if ended:
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
        return batch, ended

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
