"""Sequence towers that keep pitch and read in order: a small VGG-style CNN, height folded into
channels, a bidirectional GRU (or attention pooling) over time / left to right.

After Dorfer et al. (TISMIR 2018): per modality a stack of 3x3 convolutions with BatchNorm + ELU
and 2x2 max-pools, about 0.3 M weights; and Carvalho & Widmer (ISMIR 2023): the CNN's output read
as a sequence and summarised by a recurrent network. Here the frequency axis of a log-frequency
spectrogram (or the height of a score image) is pooled only partly and then *folded into the
channels* ``(B, C, H', W') -> (B, W', C * H')``, so that pitch position (the staff position of a
note head) stays in the features instead of being averaged away.

Inputs of different lengths share a batch: the tower takes ``lengths`` (valid frames / pixel
columns per item) and masks everything after them, through every convolution, BatchNorm
(:class:`MaskedBatchNorm`), pool, the GRU (packed sequences) and the attention softmax, so an item
gives the same embedding alone and padded next to a longer one.

Images reach the tower as :func:`xmr.media.image.prepare_image` makes them with ``resize="pad"``:
scaled to fit ``(H, W)`` with the aspect ratio kept and centred on white. The model moves the
content to the left and passes its width (:func:`fitted_width`), so the padding is masked instead
of read.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from xmr.errors import InputError
from xmr.models.config import TowerConfig
from xmr.models.towers import register_tower


def fitted_width(width: int, height: int, size: tuple[int, int], policy: str = "pad") -> int:
    """Columns of a ``width x height`` image that hold content once fitted into ``size = (H, W)``
    by ``policy`` (the arithmetic of :func:`xmr.media.image.resize_image`): for ``"pad"`` the
    scaled width, centred at column ``(W - w) // 2``; the whole width otherwise."""
    out_h, out_w = int(size[0]), int(size[1])
    if policy != "pad":
        return out_w
    scale = min(out_w / width, out_h / height)
    return max(1, min(out_w, round(width * scale)))


def left_align(images: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Centred content of width ``widths[b]`` (as ``resize="pad"`` places it) moved to column 0,
    trimmed to the widest item; the columns after each width are zero (they are masked)."""
    b, c, h, w = images.shape
    keep = int(widths.max().item()) if b else 0
    out = images.new_zeros((b, c, h, max(keep, 1)))
    for k, wk in enumerate(widths.tolist()):
        wk = int(min(max(wk, 1), w))
        x0 = (w - wk) // 2
        out[k, :, :, :wk] = images[k, :, :, x0:x0 + wk]
    return out


def _ceil_div(n, d: int):
    """``ceil(n / d)`` for ints and integer tensors: the valid steps left after a stride-``d`` conv."""
    return -(-n // d)


def step_mask(lengths: torch.Tensor, steps: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, 1, 1, steps)`` mask, 1 before each item's length and 0 after."""
    idx = torch.arange(steps, device=lengths.device)
    return (idx[None, :] < lengths[:, None]).to(dtype)[:, None, None, :]


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the channels of ``(B, C, H, T)`` whose training statistics count only the
    valid steps (``mask`` 1); in eval mode the running statistics, as ``nn.BatchNorm2d``.

    Deliberately not an ``nn.BatchNorm2d`` subclass: ``SyncBatchNorm.convert_sync_batchnorm``
    leaves it alone (it takes a mask).
    """

    def __init__(self, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        if self.training:
            xf, m = x.float(), mask.float()
            count = (m.sum() * x.shape[2]).clamp(min=1.0)
            mean = (xf * m).sum(dim=(0, 2, 3)) / count
            var = (((xf - mean.view(shape)) ** 2) * m).sum(dim=(0, 2, 3)) / count
            with torch.no_grad():
                n = float(count)
                unbiased = var * (n / max(n - 1.0, 1.0))
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        out = (x.float() - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


class _ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = MaskedBatchNorm(cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.elu(self.bn(self.conv(x), mask)) * mask


DEFAULT_BLOCKS = ((24, 24), (48, 48), (96, 96), (96, 96))  # Dorfer et al. 2018's widths


@register_tower("seq_cnn")
class SequenceCNN(nn.Module):
    """VGG-style CNN + fold of the remaining height into channels + sequence pooling.

    Input ``(B, C, rows, steps)`` (a spectrogram ``(B, 1, bins, frames)`` or an image
    ``(B, C, H, W)``) and ``lengths`` ``(B,)`` in steps. ``TowerConfig.pooling``: ``"gru"``
    (bidirectional GRU, the last state of each direction; Carvalho & Widmer 2023), ``"attention"``
    (masked softmax attention over the steps) or ``"mean"`` (masked mean).

    ``options``:
        rows: input rows (frequency bins / image height) — fixes the fold width; required.
        blocks: conv widths per block, each block followed by a max-pool (default 24-24, 48-48,
            96-96, 96-96 as Dorfer et al. 2018).
        pool_rows / pool_steps: pool factor per block along rows / steps (default 2 each).
        stem_stride: stride of the very first convolution along both axes (default 1): 2 reads a
            256-px score at full resolution (staff lines about 6 px apart) at the cost of a
            128-px one for everything after the first layer.
        fold_dim: width of the linear layer after the fold (default 256).
        hidden: GRU hidden size per direction (default 128).
        dropout: dropout on the folded sequence (default 0.1).
        input_norm: ``"rows"`` (a masked BatchNorm per input row, as PANNs' ``bn0`` per
            frequency bin) or ``"channels"``.
    """

    takes_lengths = True

    def __init__(self, cfg: TowerConfig, *, in_chans: int) -> None:
        super().__init__()
        opt = dict(cfg.options)
        unknown = set(opt) - {"rows", "blocks", "pool_rows", "pool_steps", "fold_dim", "hidden", "dropout",
                              "input_norm", "stem_stride"}
        if unknown:
            raise InputError(f"seq_cnn: unknown options {sorted(unknown)}")
        if "rows" not in opt:
            raise InputError("seq_cnn needs options.rows (frequency bins or image height)")
        rows = int(opt["rows"])
        blocks = [tuple(int(c) for c in b) for b in opt.get("blocks", DEFAULT_BLOCKS)]
        self.pool_rows = [int(p) for p in opt.get("pool_rows", [2] * len(blocks))]
        self.pool_steps = [int(p) for p in opt.get("pool_steps", [2] * len(blocks))]
        if not (len(self.pool_rows) == len(self.pool_steps) == len(blocks)) or not blocks:
            raise InputError("seq_cnn: blocks, pool_rows and pool_steps need one entry per block")
        if cfg.pooling not in ("gru", "attention", "mean"):
            raise InputError(f"seq_cnn pooling must be gru, attention or mean, got {cfg.pooling!r}")
        self.input_norm = opt.get("input_norm", "rows")
        if self.input_norm not in ("rows", "channels"):
            raise InputError(f"seq_cnn input_norm must be rows or channels, got {self.input_norm!r}")
        self.rows = rows
        self.bn0 = MaskedBatchNorm(rows if self.input_norm == "rows" else in_chans)
        self.stem_stride = int(opt.get("stem_stride", 1))
        if self.stem_stride < 1:
            raise InputError(f"seq_cnn: stem_stride must be at least 1, got {self.stem_stride}")
        layers, cin, stride = [], in_chans, self.stem_stride
        for block in blocks:
            convs = nn.ModuleList()
            for c in block:
                convs.append(_ConvBN(cin, c, stride))
                cin, stride = c, 1
            layers.append(convs)
        self.blocks = nn.ModuleList(layers)
        out_rows = _ceil_div(rows, self.stem_stride)
        for p in self.pool_rows:
            out_rows //= p
        if out_rows < 1:
            raise InputError(f"seq_cnn: {rows} rows are too few for pools {self.pool_rows}")
        fold_dim = int(opt.get("fold_dim", 256))
        self.fold = nn.Linear(cin * out_rows, fold_dim)
        self.dropout = nn.Dropout(float(opt.get("dropout", 0.1)))
        self.pooling = cfg.pooling
        self.min_steps = math.prod(self.pool_steps) * self.stem_stride
        if self.pooling == "gru":
            hidden = int(opt.get("hidden", 128))
            self.rnn = nn.GRU(fold_dim, hidden, batch_first=True, bidirectional=True)
            self.out_dim = 2 * hidden
        else:
            if self.pooling == "attention":
                self.attn = nn.Sequential(nn.Linear(fold_dim, fold_dim), nn.Tanh(), nn.Linear(fold_dim, 1))
            self.out_dim = fold_dim

    def step_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid steps of the sequence the pooling reads, per item (input lengths through the pools)."""
        out = _ceil_div(lengths, self.stem_stride)
        for p in self.pool_steps:
            out = torch.clamp(out // p, min=1)
        return out

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, _, rows, steps = x.shape
        if rows != self.rows:
            raise InputError(f"seq_cnn was built for {self.rows} rows, got {rows}")
        if lengths is None:
            lengths = torch.full((b,), steps, dtype=torch.long, device=x.device)
        lengths = lengths.to(x.device, torch.long).clamp(min=1, max=steps)
        if steps < self.min_steps:  # every pool keeps at least one step (the zeros are masked)
            x = nn.functional.pad(x, (0, self.min_steps - steps))
        mask = step_mask(lengths, x.shape[-1], x.dtype)
        if self.input_norm == "rows":
            x = self.bn0(x.transpose(1, 2), mask).transpose(1, 2) * mask  # per row (frequency bin)
        else:
            x = self.bn0(x, mask) * mask
        for convs, pr, ps in zip(self.blocks, self.pool_rows, self.pool_steps, strict=True):
            for conv in convs:
                if conv.stride > 1:  # the strided stem
                    lengths = _ceil_div(lengths, conv.stride)
                    mask = step_mask(lengths, _ceil_div(x.shape[-1], conv.stride), x.dtype)
                x = conv(x, mask)
            x = nn.functional.max_pool2d(x, (pr, ps))
            lengths = torch.clamp(lengths // ps, min=1)
            mask = step_mask(lengths, x.shape[-1], x.dtype)
            x = x * mask
        seq = x.flatten(1, 2).transpose(1, 2)  # (B, C, H', T') -> (B, T', C * H'): height in channels
        seq = self.dropout(nn.functional.elu(self.fold(seq)))
        if self.pooling == "gru":
            packed = nn.utils.rnn.pack_padded_sequence(seq, lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            _, h = self.rnn(packed)  # (2, B, hidden): last state forwards, first state backwards
            return torch.cat([h[0], h[1]], dim=-1)
        valid = mask[:, 0, 0, :]  # (B, T')
        if self.pooling == "attention":
            score = self.attn(seq).squeeze(-1).float().masked_fill(valid == 0, float("-inf"))
            weight = torch.softmax(score, dim=-1).to(seq.dtype)
            return (seq * weight.unsqueeze(-1)).sum(1)
        return (seq * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True)
