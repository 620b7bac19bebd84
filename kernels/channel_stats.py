"""Per-channel statistics of many activations in one launch, and their gradient in one launch.

This is the hot path of L_prim (eq. 1: channel means mu(z^l) of every primed layer) and R_feat
(eq. 3: BatchNorm batch mean and variance of every verifier BN input). Both reduce activations
``B x C x S`` (S = T*H*W, or tokens) over S; the ~130 layers of a 3D R50 + X3D-S pair are
covered by one forward and one backward launch, in the manner of a multi-tensor apply: a table
of per-layer pointers, sizes and strides, and a list of work items (layer, first row).

Forward, per row (l, b, c):   mean = mean_s x[l][b, c, s],   m2 = sum_s (x - mean)^2
    (block-wise Welford/Chan merge in fp32, numerically stable for any S).
Backward, per element:        grad[l][b, c, s] = alpha[i] + beta[i] * x[l][b, c, s]
    where i = off_l + b*C_l + c. Every gradient of a function of (mean, m2) has this form:
    d mean/dx = 1/S and d m2/dx = 2 (x - mean), so alpha = g_mean/S - 2 g_m2 mean, beta = 2 g_m2.
    With beta = None (priming only needs means) the activations are not read at all.

Rows are addressed through strides (b*sB + c*sC + s*sS), so NCDHW, channels_last_3d and B x N x C
tokens all work without copies. Layers are grouped by (dtype, layout): rows with sS == 1 are
read along S, channels-last rows (sC == 1) along C, so loads are coalesced in both cases.
"""

from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl

from .tables import TRITON_DTYPES, LayerTable, launch_groups

# Layer table columns (int64): input pointer, C, S, stride B, stride C, stride S, output offset,
# output pointer, output stride B, output stride C, output stride S, number of rows (B*C).
_IN, _C, _S, _SB, _SC, _SS, _OFF, _OUT, _OSB, _OSC, _OSS, _ROWS = range(12)
COLUMNS = 12


@triton.jit
def _row_offsets(table, layer, r0, BLOCK_R: tl.constexpr):
    """Rows r0 .. r0 + BLOCK_R of a layer: their (b, c) offsets and a validity mask."""
    base = table + layer * 12
    C = tl.load(base + 1)
    rows = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
    valid = rows < tl.load(base + 11)
    b = rows // C
    c = rows % C
    return base, rows, valid, b, c


@triton.jit
def _channel_stats_fwd(table, items, mean_out, m2_out,
                       DTYPE: tl.constexpr, WITH_M2: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr):
    item = tl.program_id(0)
    layer = tl.load(items + item * 2).to(tl.int64)
    r0 = tl.load(items + item * 2 + 1).to(tl.int64)
    base, rows, valid, b, c = _row_offsets(table, layer, r0, BLOCK_R)
    x_ptr = tl.load(base + 0).to(tl.pointer_type(DTYPE))
    S = tl.load(base + 2)
    row_off = b * tl.load(base + 3) + c * tl.load(base + 4)
    s_stride = tl.load(base + 5)
    out_off = tl.load(base + 6)

    mean = tl.zeros([BLOCK_R], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_R], dtype=tl.float32)
    count = 0.0
    for s0 in range(0, S, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S).to(tl.int64)
        mask = valid[:, None] & (s < S)[None, :]
        x = tl.load(x_ptr + row_off[:, None] + s[None, :] * s_stride, mask=mask, other=0.0).to(tl.float32)
        n_blk = tl.minimum(S - s0, BLOCK_S).to(tl.float32)
        blk_mean = tl.sum(x, axis=1) / n_blk
        if WITH_M2:
            # Chan et al.: merge the block's (n, mean, M2) into the running one.
            centred = tl.where(mask, x - blk_mean[:, None], 0.0)
            blk_m2 = tl.sum(centred * centred, axis=1)
            total = count + n_blk
            delta = blk_mean - mean
            mean = mean + delta * (n_blk / total)
            m2 = m2 + blk_m2 + delta * delta * (count * n_blk / total)
            count = total
        else:
            total = count + n_blk
            mean = mean + (blk_mean - mean) * (n_blk / total)
            count = total
    tl.store(mean_out + out_off + rows, mean, mask=valid)
    if WITH_M2:
        tl.store(m2_out + out_off + rows, m2, mask=valid)


@triton.jit
def _channel_stats_bwd(table, items, alpha, beta,
                       DTYPE: tl.constexpr, HAS_BETA: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr):
    item = tl.program_id(0)
    layer = tl.load(items + item * 2).to(tl.int64)
    r0 = tl.load(items + item * 2 + 1).to(tl.int64)
    base, rows, valid, b, c = _row_offsets(table, layer, r0, BLOCK_R)
    S = tl.load(base + 2)
    out_off = tl.load(base + 6)
    g_ptr = tl.load(base + 7).to(tl.pointer_type(DTYPE))
    g_row = b * tl.load(base + 8) + c * tl.load(base + 9)
    g_stride = tl.load(base + 10)
    a = tl.load(alpha + out_off + rows, mask=valid, other=0.0)
    if HAS_BETA:
        x_ptr = tl.load(base + 0).to(tl.pointer_type(DTYPE))
        x_row = b * tl.load(base + 3) + c * tl.load(base + 4)
        x_stride = tl.load(base + 5)
        bt = tl.load(beta + out_off + rows, mask=valid, other=0.0)
    for s0 in range(0, S, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S).to(tl.int64)
        mask = valid[:, None] & (s < S)[None, :]
        if HAS_BETA:
            x = tl.load(x_ptr + x_row[:, None] + s[None, :] * x_stride, mask=mask, other=0.0).to(tl.float32)
            g = a[:, None] + bt[:, None] * x
        else:
            g = tl.broadcast_to(a[:, None], (BLOCK_R, BLOCK_S))
        tl.store(g_ptr + g_row[:, None] + s[None, :] * g_stride, g.to(DTYPE), mask=mask)


#: (rows, positions, warps) per tile, per pass and layout: long rows for S-contiguous layers,
#: wide rows for channels-last. The "rows" tiles come from benchmarks/tune_triton.py on an H100
#: (3D R50 + X3D-S layer sets, fp32; benchmarks/results/h100/tune.json): one row per program
#: keeps the few-channel, long-S early layers spread over enough programs at batch 1 (forward
#: 0.48 -> 0.15 ms for L_prim's means, 0.31 -> 0.10 ms for R_feat's moments, backward
#: 0.30 -> 0.14 ms) and costs at most 20% at batch 16 (backward: 2.03 -> 1.63 ms, a gain).
#: The "cols" tiles (channels-last/token layers) are not tuned yet.
BLOCKS: dict[tuple[str, str], tuple[int, int, int]] = {
    ("fwd", "rows"): (1, 1024, 4),
    ("fwd", "cols"): (64, 16, 4),
    ("bwd", "rows"): (1, 1024, 4),
    ("bwd", "cols"): (64, 16, 4),
}


def _table(xs: Sequence[torch.Tensor], offsets: Sequence[int], grads: Sequence[torch.Tensor] | None) -> list[list[int]]:
    rows = []
    for i, (x, off) in enumerate(zip(xs, offsets)):
        g = grads[i] if grads is not None else x
        B, C, S = x.shape
        rows.append([x.data_ptr(), C, S, *x.stride(), off, g.data_ptr(), *g.stride(), B * C])
    return rows


def channel_stats(xs: Sequence[torch.Tensor], with_m2: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Means (and M2 when ``with_m2``) of every row of the ``B x C x S`` tensors ``xs``, flat fp32."""
    offsets, total = _offsets(xs)
    device = xs[0].device
    mean = torch.empty(total, device=device, dtype=torch.float32)
    m2 = torch.empty(total if with_m2 else 0, device=device, dtype=torch.float32)
    for group in launch_groups(xs):
        block_r, block_s, warps = BLOCKS["fwd", group.layout]
        tab = LayerTable.build(_table([xs[i] for i in group.indices], [offsets[i] for i in group.indices], None),
                               [xs[i].shape[0] * xs[i].shape[1] for i in group.indices], block_r, device)
        _channel_stats_fwd[(tab.num_items,)](
            tab.layers, tab.items, mean, m2 if with_m2 else mean,
            DTYPE=TRITON_DTYPES[group.dtype], WITH_M2=with_m2, BLOCK_R=block_r, BLOCK_S=block_s, num_warps=warps,
        )
    return mean, m2


def channel_stats_backward(
    xs: Sequence[torch.Tensor], alpha: torch.Tensor, beta: torch.Tensor | None
) -> list[torch.Tensor]:
    """``grad[l][b, c, s] = alpha[i] + beta[i] * xs[l][b, c, s]`` (i = the row's flat index)."""
    offsets, _ = _offsets(xs)
    grads = [torch.empty_like(x) for x in xs]  # keeps x's strides when x is dense
    alpha = alpha.contiguous()
    beta = beta.contiguous() if beta is not None else None
    for group in launch_groups(xs):
        block_r, block_s, warps = BLOCKS["bwd", group.layout]
        tab = LayerTable.build(
            _table([xs[i] for i in group.indices], [offsets[i] for i in group.indices],
                   [grads[i] for i in group.indices]),
            [xs[i].shape[0] * xs[i].shape[1] for i in group.indices], block_r, xs[0].device,
        )
        _channel_stats_bwd[(tab.num_items,)](
            tab.layers, tab.items, alpha, beta if beta is not None else alpha,
            DTYPE=TRITON_DTYPES[group.dtype], HAS_BETA=beta is not None, BLOCK_R=block_r, BLOCK_S=block_s,
            num_warps=warps,
        )
    return grads


def _offsets(xs: Sequence[torch.Tensor]) -> tuple[list[int], int]:
    offsets, total = [], 0
    for x in xs:
        offsets.append(total)
        total += x.shape[0] * x.shape[1]
    return offsets, total

