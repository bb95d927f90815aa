"""Process-group helpers: the same code runs single-process, under ``torchrun`` on CPU (gloo) and on
GPUs (NCCL).

The contrastive loss needs every process's embeddings as negatives. :func:`gather_with_grad`
all-gathers them and puts this rank's own tensor (which carries the autograd graph) back in its
slot; its backward all-reduces (sums) the gradient of the gathered tensor, so the gradient that
reaches this rank's embeddings includes the terms of the *other* ranks' local losses too. With the
loss computed locally (rows ``rank*B:(rank+1)*B``, normalised so that the mean over ranks is the
single-process loss) and the parameter gradients averaged over ranks, one step equals the
single-process step on the same global batch (checked in tests/test_train_dist.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class DistInfo:
    """Rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), else stay single.

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda". NCCL is used with CUDA, gloo on CPU.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        from xmr.errors import InputError

        raise InputError("train.device is cuda but no CUDA device is available")
    dev = f"cuda:{local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    backend = None
    if world > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=backend)


def cleanup() -> None:
    """Leave the process group (no-op when single-process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every process (no-op when single-process)."""
    import torch.distributed as dist

    if _world() > 1:
        dist.barrier()


def all_gather_nograd(tensor):
    """Concatenate ``tensor`` (same shape on every rank) from all ranks along dim 0, without grad."""
    import torch
    import torch.distributed as dist

    if _world() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(_world())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def _gather_function():
    import torch
    import torch.distributed as dist

    class _GatherWithGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, local):
            world, rank = dist.get_world_size(), dist.get_rank()
            parts = [torch.empty_like(local) for _ in range(world)]
            dist.all_gather(parts, local.contiguous())
            parts[rank] = local  # our own slot keeps the exact local values
            ctx.rank, ctx.rows = rank, local.shape[0]
            return torch.cat(parts, dim=0)

        @staticmethod
        def backward(ctx, grad):
            # Every rank's loss depends on our rows: sum the gradients of all ranks, keep our slice.
            grad = grad.contiguous().clone()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]

    return _GatherWithGrad


def gather_with_grad(local):
    """All-gather ``local`` (B, ...) into (world*B, ...) keeping the gradient path to every rank.

    Rank r's rows sit at ``r*B:(r+1)*B``. Backward sums the incoming gradient over ranks, so the
    local embeddings receive d(sum of all ranks' losses)/d(local). Single-process: returns ``local``.

    Example:
        >>> emb_all = gather_with_grad(emb_local)  # doctest: +SKIP
    """
    if _world() == 1:
        return local
    return _gather_function().apply(local)


def all_reduce_gradients(params, *, average: bool = True) -> None:
    """Sum (or average) the ``.grad`` of ``params`` over ranks, flattened into one buffer per dtype.

    Used instead of ``DistributedDataParallel`` because a contrastive step calls the towers several
    times (one call per modality, and per sub-batch with accumulation) before one optimizer step,
    which DDP's per-forward bookkeeping does not allow; one flat all-reduce per step is exact and,
    for towers of this size, cheap. Parameters without a gradient get zeros, so every rank sends
    buffers of the same size.
    """
    import torch
    import torch.distributed as dist

    world = _world()
    if world == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict = {}
    for p in params:
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if average:
            flat /= world
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


def broadcast_buffers(module, src: int = 0) -> None:
    """Copy ``module``'s buffers (BatchNorm statistics) from ``src`` to every rank, as DDP does."""
    import torch.distributed as dist

    if _world() == 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=src)


def all_reduce_mean(value: float) -> float:
    """Mean of a Python float over ranks (for logging)."""
    import torch
    import torch.distributed as dist

    if _world() == 1:
        return float(value)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / _world()


def broadcast_object(obj, src: int = 0):
    """Send a picklable Python object from ``src`` to every rank (identity when single-process)."""
    import torch.distributed as dist

    if _world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# Freed pages are kept for reuse, never returned to the system: the process stays at its peak
# footprint instead of paying a page fault for every large tensor again.
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:-1,muzzy_decay_ms:-1"


def jemalloc_path() -> str | None:
    """The jemalloc shared library as the dynamic loader finds it (Debian's ``libjemalloc2``,
    packages.txt: ``libjemalloc.so.2``), or ``None`` when it is not installed."""
    import ctypes.util

    return ctypes.util.find_library("jemalloc")


def cpu_launch_env(env: dict[str, str] | None = None, *, allocator: str = "jemalloc") -> dict[str, str]:
    """The environment for CPU training processes started by ``torchrun``: jemalloc preloaded.

    A CPU step allocates large tensors of a different size every time (variable-length audio and
    score images). glibc's allocator keeps their freed memory fragmented in its heap, so on the
    2-core demo recipe each process grew to about 5.9 GB and pushed the 14 GB decoded-item cache
    out of the page cache, and steps slowed from 2.5 s to 4-25 s as they waited for the disk.
    jemalloc, with the decay that returns freed pages to the system turned off
    (:data:`JEMALLOC_CONF`), keeps each process at about 1.7 GB at the same step time
    (README, "The bundled checkpoint").

    Args:
        env: the environment to extend (default ``os.environ``); it is copied, not changed.
        allocator: ``"jemalloc"`` (when installed; the environment is returned unchanged when
            not) or ``"system"`` (unchanged).

    Returns:
        A new environment: ``LD_PRELOAD`` with jemalloc put first and ``MALLOC_CONF`` (a
        ``MALLOC_CONF`` already set is kept).
    """
    out = dict(os.environ if env is None else env)
    if allocator not in ("jemalloc", "system"):
        raise ValueError(f"allocator must be 'jemalloc' or 'system', not {allocator!r}")
    lib = jemalloc_path() if allocator == "jemalloc" else None
    if lib is None:
        return out
    preload = [p for p in out.get("LD_PRELOAD", "").split(":") if p and p != lib]
    out["LD_PRELOAD"] = ":".join([lib, *preload])
    out.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return out
