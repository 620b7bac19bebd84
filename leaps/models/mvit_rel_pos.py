"""torchvision's MViT relative-position term, computed on the attention's device.

torchvision's ``_add_rel_pos`` builds its distance indices with ``torch.arange`` on the CPU and
indexes the CUDA position tables with them: a host-to-device copy on every forward, which a CUDA
graph cannot capture ("Cannot copy between CPU and CUDA tensors during CUDA graph capture"), so
``fast=True`` failed on ``mvit_v2_s`` / ``mvit_v2_b`` (measured on an H200). :func:`install` swaps
in :func:`add_rel_pos`, the same arithmetic with the indices made on the attention's device; the
values are bit-identical (``tests/test_models.py``).
"""

from __future__ import annotations

import torch


def _distances(q: int, k: int, device) -> torch.Tensor:
    # SlowFast's relative distance of query i to key j, rescaled when q and k sizes differ.
    q_ratio, k_ratio = max(k / q, 1.0), max(q / k, 1.0)
    return (torch.arange(q, device=device)[:, None] * q_ratio
            - (torch.arange(k, device=device)[None, :] + (1.0 - k)) * k_ratio).long()


def add_rel_pos(attn: torch.Tensor, q: torch.Tensor, q_thw: tuple[int, int, int], k_thw: tuple[int, int, int],
                rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, rel_pos_t: torch.Tensor) -> torch.Tensor:
    """torchvision.models.video.mvit._add_rel_pos with its index tensors on ``q.device``."""
    from torchvision.models.video.mvit import _interpolate

    q_t, q_h, q_w = q_thw
    k_t, k_h, k_w = k_thw
    rh = _interpolate(rel_pos_h, int(2 * max(q_h, k_h) - 1))[_distances(q_h, k_h, q.device)]
    rw = _interpolate(rel_pos_w, int(2 * max(q_w, k_w) - 1))[_distances(q_w, k_w, q.device)]
    rt = _interpolate(rel_pos_t, int(2 * max(q_t, k_t) - 1))[_distances(q_t, k_t, q.device)]

    b, heads, _, dim = q.shape
    r_q = q[:, :, 1:].reshape(b, heads, q_t, q_h, q_w, dim)
    rel_h = torch.einsum("bythwc,hkc->bythwk", r_q, rh)
    rel_w = torch.einsum("bythwc,wkc->bythwk", r_q, rw)
    r_q = r_q.permute(2, 0, 1, 3, 4, 5).reshape(q_t, b * heads * q_h * q_w, dim)
    rel_t = torch.matmul(r_q, rt.transpose(1, 2)).transpose(0, 1)
    rel_t = rel_t.view(b, heads, q_h, q_w, q_t, k_t).permute(0, 1, 4, 2, 3, 5)
    rel_pos = (rel_h[:, :, :, :, :, None, :, None] + rel_w[:, :, :, :, :, None, None, :]
               + rel_t[:, :, :, :, :, :, None, None]).reshape(b, heads, q_t * q_h * q_w, k_t * k_h * k_w)
    attn[:, :, 1:, 1:] += rel_pos
    return attn


def install() -> bool:
    """Make torchvision's MViT use :func:`add_rel_pos`; True if it was swapped in now."""
    try:
        from torchvision.models.video import mvit
    except ImportError:
        return False
    if getattr(mvit, "_add_rel_pos", None) is add_rel_pos or not hasattr(mvit, "_add_rel_pos"):
        return False
    mvit._torchvision_add_rel_pos = mvit._add_rel_pos  # kept for the bit-identity test
    mvit._add_rel_pos = add_rel_pos
    return True
