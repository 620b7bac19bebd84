"""The LEAPS terms from fused per-row statistics: the non-reference path of :mod:`leaps.losses`.

Each public loss in :mod:`leaps.losses` resolves its backend and, unless that is the plain-torch
reference, calls the function of the same name here. These reduce every tapped activation to
per-row statistics with the fused primitives of :mod:`leaps.ops` (``channel_stats``: row means
and M2 for eq. (1) and (3); ``frame_l1``: per-frame L1 distances for eq. (2)) in one launch, then
finish on those flat vectors (a few hundred thousand floats at most) with segment reductions over
cached index layouts instead of a Python loop over layers, so a step launches the same ~20 small
kernels for 5 layers or 150 (and autograd's backward of them likewise). The tests hold these to
the references in :mod:`leaps.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from . import ops
from .constants import JVS_EPS
from .constants import SQRT_FLOOR as _SQRT_FLOOR
from .errors import ShapeError


def _segment_sum(data: Tensor, lengths: Tensor) -> Tensor:
    """Sums of consecutive segments of ``data`` (along dim 0), deterministic, differentiable."""
    return torch.segment_reduce(data, "sum", lengths=lengths, unsafe=True)


_cached = ops.cached_constants


def _to(device, *tensors):
    return tuple(t.to(device) for t in tensors)


# --------------------------------------------------------------------------------------------
# L_prim, eq. (1)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _PrimingLayout:
    row_lengths: Tensor   # C_l for every (l, b) row: segments of the flat mean vector
    row_weights: Tensor   # lambda_l / (L * B_l): the batch mean and the 1/L of eq. (1)
    row_channels: Tensor  # C_l per row (l1 and l2 are per-channel means)


def _priming_layout(sizes, weights, device) -> _PrimingLayout:
    def build():
        lengths, row_w, row_c = [], [], []
        for (b, c, _), lam in zip(sizes, weights):
            lengths += [c] * b
            row_w += [lam / (len(sizes) * b)] * b
            row_c += [float(c)] * b
        return _PrimingLayout(*_to(device, torch.tensor(lengths), torch.tensor(row_w), torch.tensor(row_c)))

    return _cached(("prim", device, tuple(sizes), tuple(weights)), build)


def priming_loss(acts: Sequence[Tensor], stimulus_means: Sequence[Tensor], weights: Sequence[float],
                 distance: str, channel_dims: Sequence[int], backend: str) -> Tensor:
    """eq. (1) from the primed layers' activations (channel axis ``channel_dims[l]``); stimulus
    means ``1 x C`` or ``B x C``."""
    rows = [ops.as_rows(a, d) for a, d in zip(acts, channel_dims)]
    for l, (r, m) in enumerate(zip(rows, stimulus_means)):
        if m.dim() != 2 or m.shape[1] != r.shape[1] or m.shape[0] not in (1, r.shape[0]):
            raise ShapeError(f"priming layer {l}: stimulus means {tuple(m.shape)} do not fit {r.shape[1]} channels")
    sizes = [tuple(r.shape) for r in rows]
    layout = _priming_layout(sizes, [float(w) for w in weights], rows[0].device)
    a, _ = ops.channel_stats(rows, False, backend)
    v = torch.cat(
        [m.to(torch.float32).expand(r.shape[0], r.shape[1]).reshape(-1) for m, r in zip(stimulus_means, rows)]
    )
    if distance in ("jvs", "cos"):
        dot, na, nv = _segment_sum(torch.stack([a * v, a * a, v * v], 1), layout.row_lengths).unbind(1)
        if distance == "jvs":
            dist = 1.0 - dot / (na + nv - dot + JVS_EPS)
        else:  # as F.cosine_similarity: each norm clamped at eps
            eps = JVS_EPS
            norm_a = na.clamp_min(_SQRT_FLOOR).sqrt().clamp_min(eps)
            norm_v = nv.clamp_min(_SQRT_FLOOR).sqrt().clamp_min(eps)
            dist = 1.0 - dot / (norm_a * norm_v)
    elif distance == "l1":
        dist = _segment_sum((a - v).abs(), layout.row_lengths) / layout.row_channels
    else:  # l2
        dist = (_segment_sum((a - v).square(), layout.row_lengths) / layout.row_channels).clamp_min(_SQRT_FLOOR).sqrt()
    return (dist * layout.row_weights).sum()


# --------------------------------------------------------------------------------------------
# R_coh, eq. (2)
# --------------------------------------------------------------------------------------------

def _pair_weights(t: int, device):
    def build():
        i, j = torch.triu_indices(t, t, offset=1)
        consecutive = torch.zeros(t, t, dtype=torch.bool)
        hinge = torch.zeros(t, t, dtype=torch.bool)
        consecutive[i[(j - i) == 1], j[(j - i) == 1]] = True
        hinge[i[(j - i) > 1], j[(j - i) > 1]] = True
        return _to(device, consecutive.float(), hinge.float())

    return _cached(("coh", device, t), build)


def temporal_coherence_loss(frames: Tensor, margin: float, backend: str) -> Tensor:
    """eq. (2) for a ``B x T x P x Q`` view of the last layer (frames t, features P*Q)."""
    b, t = frames.shape[:2]
    if t < 2:  # no frame pair: 0, with a zero gradient
        return frames.sum() * 0.0
    consecutive, hinge = _pair_weights(t, frames.device)
    d = ops.frame_l1(frames, backend)
    per_pair = consecutive * d + hinge * (margin - d).clamp_min(0.0)
    return per_pair.sum() / (b * t * (t - 1) // 2)


# --------------------------------------------------------------------------------------------
# R_feat, eq. (3)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _BatchLayout:
    by_channel: Tensor       # permutation of the flat (l, b, c) rows into (l, c, b) order
    batch_lengths: Tensor    # B_l for every (l, c): segments over the batch
    channel_of_row: Tensor   # (l, c) index of every permuted row (to broadcast back)
    inv_batch: Tensor        # 1 / B_l per (l, c)
    row_size: Tensor         # S_l per (l, c)
    inv_count: Tensor        # 1 / (B_l S_l) per (l, c)
    channel_lengths: Tensor  # C_l per layer: segments over channels


def _batch_layout(sizes, device) -> _BatchLayout:
    def build():
        perm, blen, owner, inv_b, size, inv_n, clen = [], [], [], [], [], [], []
        offset = channel = 0
        for b, c, s in sizes:
            idx = torch.arange(b * c).view(b, c).t().reshape(-1) + offset  # (c, b) order
            perm.append(idx)
            owner.append(torch.arange(c).repeat_interleave(b) + channel)
            blen += [b] * c
            inv_b += [1.0 / b] * c
            size += [float(s)] * c
            inv_n += [1.0 / (b * s)] * c
            clen.append(c)
            offset += b * c
            channel += c
        return _BatchLayout(*_to(device, torch.cat(perm), torch.tensor(blen), torch.cat(owner), torch.tensor(inv_b),
                                 torch.tensor(size), torch.tensor(inv_n), torch.tensor(clen)))

    return _cached(("bn", device, tuple(sizes)), build)


def bn_statistics_loss(acts: Sequence[Tensor], running_means: Sequence[Tensor], running_vars: Sequence[Tensor],
                       backend: str) -> Tensor:
    """eq. (3) for BN inputs ``acts`` (channel axis 1): batch moments from per-row (mean, M2)."""
    rows = [ops.as_rows(a, 1) for a in acts]
    layout = _batch_layout([tuple(r.shape) for r in rows], rows[0].device)
    mean, m2 = ops.channel_stats(rows, True, backend)
    mean, m2 = mean[layout.by_channel], m2[layout.by_channel]
    # Chan's parallel formula over the batch: M2 = sum_b M2_b + S sum_b (mean_b - mu)^2.
    mu = _segment_sum(mean, layout.batch_lengths) * layout.inv_batch
    spread = (mean - mu[layout.channel_of_row]).square()
    m2_within, spread_sum = _segment_sum(torch.stack([m2, spread], 1), layout.batch_lengths).unbind(1)
    var = (m2_within + layout.row_size * spread_sum) * layout.inv_count
    rm = torch.cat([m.reshape(-1) for m in running_means]).to(torch.float32)
    rv = torch.cat([v.reshape(-1) for v in running_vars]).to(torch.float32)
    sq = _segment_sum(torch.stack([(mu - rm).square(), (var - rv).square()], 1), layout.channel_lengths)
    return sq.clamp_min(_SQRT_FLOOR).sqrt().sum()
