"""Pairwise per-frame L1 distances of the last layer (R_coh, eq. 2), forward and backward.

The input is a B x T x P x Q view of the last layer (frames t, and the P*Q features of a frame:
C x H*W for CNNs, H'W' x C for transformer tokens), with any strides.

Forward:   D[b, i, j] = (1 / PQ) sum_f |z[b, i, f] - z[b, j, f]|      (B x T x T, fp32)
Backward:  grad[b, t, f] = (1 / PQ) sum_t' W[b, t, t'] sign(z[b, t, f] - z[b, t', f])
           with W = dL/dD + (dL/dD)^T (the caller symmetrises), sign(0) = 0.

Each program owns one feature chunk of all T frames of one video, so every activation is read
once (frame rows of the chunk are re-read from cache for each pair). Forward partial sums are
written per chunk and summed afterwards: deterministic, no float atomics.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .tables import TRITON_DTYPES

# Features per program, per pass (benchmarks/tune_triton.py on an H100, 3D R50's last layer: the
# backward's T x BLOCK_F accumulator prefers 128, 0.084 -> 0.065 ms at batch 16).
BLOCK_F = 256
BLOCK_F_BWD = 128


@triton.jit
def _feature_offsets(f, Q, sP, sQ):
    return (f // Q) * sP + (f % Q) * sQ


@triton.jit
def _frame_l1_fwd(z, partial, F, Q, sB, sT, sP, sQ, n_chunks,
                  T: tl.constexpr, T_PAD: tl.constexpr, BLOCK_F: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    f = chunk * BLOCK_F + tl.arange(0, BLOCK_F).to(tl.int64)
    t = tl.arange(0, T_PAD).to(tl.int64)
    fmask = f < F
    foff = _feature_offsets(f, Q, sP, sQ)
    base = z + b * sB
    tile = tl.load(
        base + t[:, None] * sT + foff[None, :], mask=(t < T)[:, None] & fmask[None, :], other=0.0
    ).to(tl.float32)
    out = partial + (b * n_chunks + chunk) * T * T
    for i in tl.static_range(T):
        zi = tl.load(base + i * sT + foff, mask=fmask, other=0.0).to(tl.float32)
        d = tl.sum(tl.abs(tile - zi[None, :]), axis=1)  # distances of every frame to frame i
        tl.store(out + t * T + i, d, mask=t < T)


@triton.jit
def _frame_l1_bwd(z, w, grad, F, Q, sB, sT, sP, sQ, gB, gT, gP, gQ, inv_f,
                  T: tl.constexpr, T_PAD: tl.constexpr, BLOCK_F: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    f = chunk * BLOCK_F + tl.arange(0, BLOCK_F).to(tl.int64)
    t = tl.arange(0, T_PAD).to(tl.int64)
    fmask = f < F
    tmask = t < T
    mask = tmask[:, None] & fmask[None, :]
    base = z + b * sB
    foff = _feature_offsets(f, Q, sP, sQ)
    tile = tl.load(base + t[:, None] * sT + foff[None, :], mask=mask, other=0.0).to(tl.float32)
    acc = tl.zeros([T_PAD, BLOCK_F], dtype=tl.float32)
    for j in tl.static_range(T):
        zj = tl.load(base + j * sT + foff, mask=fmask, other=0.0).to(tl.float32)
        wj = tl.load(w + b * T * T + t * T + j, mask=tmask, other=0.0)
        diff = tile - zj[None, :]
        sign = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
        acc += wj[:, None] * sign
    goff = _feature_offsets(f, Q, gP, gQ)
    dst = grad + b * gB + t[:, None] * gT + goff[None, :]
    tl.store(dst, (acc * inv_f).to(grad.dtype.element_ty), mask=mask)


def _check(z: torch.Tensor) -> None:
    if z.dim() != 4:
        raise ValueError(f"frame_l1 expects B x T x P x Q, got {tuple(z.shape)}")
    if z.dtype not in TRITON_DTYPES:
        raise TypeError(f"frame_l1 supports float32/float16/bfloat16, got {z.dtype}")


def frame_l1(z: torch.Tensor) -> torch.Tensor:
    """D[b, i, j] = mean_f |z[b, i] - z[b, j]| over the P*Q features of a frame (B x T x T, fp32)."""
    _check(z)
    B, T, P, Q = z.shape
    F = P * Q
    n_chunks = triton.cdiv(F, BLOCK_F)
    partial = torch.empty((B, n_chunks, T, T), device=z.device, dtype=torch.float32)
    _frame_l1_fwd[(B, n_chunks)](z, partial, F, Q, *z.stride(), n_chunks,
                                 T=T, T_PAD=max(2, triton.next_power_of_2(T)), BLOCK_F=BLOCK_F)
    return partial.sum(1) / F


def frame_l1_backward(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """grad[b, t] = mean_f-scaled sum_t' w[b, t, t'] sign(z[b, t] - z[b, t']); w symmetric B x T x T."""
    _check(z)
    B, T, P, Q = z.shape
    F = P * Q
    grad = torch.empty_like(z)  # keeps z's strides when z is dense
    w = w.to(torch.float32).contiguous()
    _frame_l1_bwd[(B, triton.cdiv(F, BLOCK_F_BWD))](z, w, grad, F, Q, *z.stride(), *grad.stride(), 1.0 / F,
                                                    T=T, T_PAD=max(2, triton.next_power_of_2(T)), BLOCK_F=BLOCK_F_BWD)
    return grad
