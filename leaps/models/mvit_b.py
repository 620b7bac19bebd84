"""MViTv2-B 32x3 (Li et al., CVPR 2022) on torchvision's generic ``MViT`` class, and SlowFast key conversion.

torchvision builds MViTv2-S from a per-block table (``MSBlockConfig``); the same class expresses SlowFast's
``MVITv2_B_32x3`` config exactly: 24 blocks, 96 channels and 1 head at first, channels and heads doubled
and queries pooled (1, 2, 2) at blocks 2, 5 and 21 (DIM_MUL / HEAD_MUL / POOL_Q_STRIDE), keys and values
pooled adaptively from (1, 8, 8), kernels (3, 3, 3), relative positions in space and time, residual
pooling, the channel change inside attention (DIM_MUL_IN_ATT). SlowFast names the parameters
differently; :func:`slowfast_to_torchvision` renames an official checkpoint's keys.
"""

from __future__ import annotations

import re

from torch import nn

from leaps.models import _compat

#: MVITv2_B_32x3: blocks per stage; each later stage doubles channels and heads and pools queries.
B_STAGE_DEPTHS = (2, 3, 16, 3)


def mvit_block_setting(stage_depths=B_STAGE_DEPTHS, dim: int = 96, heads: int = 1,
                       kv_stride: int = 8) -> list:
    """torchvision ``MSBlockConfig`` rows for an MViTv2 whose stage s has ``stage_depths[s]`` blocks."""
    _compat.torchvision_video()  # a clear error when torchvision is missing
    from torchvision.models.video.mvit import MSBlockConfig

    rows = []
    for stage, depth in enumerate(stage_depths):
        for i in range(depth):
            first = stage > 0 and i == 0  # the stage's first block doubles channels and heads, pools q
            rows.append(MSBlockConfig(
                num_heads=heads * (2 if first else 1),
                input_channels=dim,
                output_channels=dim * (2 if first else 1),
                kernel_q=[3, 3, 3],
                kernel_kv=[3, 3, 3],
                stride_q=[1, 2, 2] if first else [1, 1, 1],
                stride_kv=[1, max(1, kv_stride // 2), max(1, kv_stride // 2)] if first else [1, kv_stride, kv_stride],
            ))
            if first:
                dim, heads, kv_stride = dim * 2, heads * 2, max(1, kv_stride // 2)
    return rows


def build_mvit_v2_b(num_classes: int = 400, *, frames: int = 32, size: int = 224, stage_depths=B_STAGE_DEPTHS,
                    dim: int = 96) -> nn.Module:
    """MViTv2-B 32 x 224^2 (51.2 M parameters); smaller ``stage_depths`` / ``dim`` give test models."""
    from torchvision.models.video.mvit import MViT

    _compat.torchvision_video()
    return MViT(
        spatial_size=(size, size), temporal_size=frames, block_setting=mvit_block_setting(stage_depths, dim),
        residual_pool=True, residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True,
        dropout=0.5, stochastic_depth_prob=0.3, num_classes=num_classes,
    )


#: SlowFast name -> torchvision name, on the key's tail after ``blocks.i.`` (or the whole key).
_RENAMES = (
    (r"^patch_embed\.proj\.", "conv_proj."),
    (r"^head\.projection\.", "head.1."),
    (r"\.attn\.proj\.", ".attn.project.0."),
    (r"\.attn\.pool_([qkv])\.", r".attn.pool_\1.pool."),
    (r"\.attn\.norm_([qkv])\.", r".attn.pool_\1.norm_act.0."),
    (r"\.mlp\.fc1\.", ".mlp.0."),
    (r"\.mlp\.fc2\.", ".mlp.3."),
    (r"^(blocks\.\d+)\.proj\.", r"\1.project."),
)


def slowfast_to_torchvision(state: dict) -> dict:
    """Rename a SlowFast MViTv2 state dict to torchvision's ``MViT`` keys (values untouched but the class token)."""
    if "conv_proj.weight" in state:  # already torchvision's naming
        return dict(state)
    out = {}
    for key, value in state.items():
        if key == "cls_token":  # SlowFast: 1 x 1 x C; torchvision: C
            out["pos_encoding.class_token"] = value.reshape(-1)
            continue
        for pattern, repl in _RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def torchvision_to_slowfast(state: dict) -> dict:
    """The inverse of :func:`slowfast_to_torchvision` (writes checkpoints in the official layout, for tests)."""
    inverse = (
        (r"^conv_proj\.", "patch_embed.proj."),
        (r"^head\.1\.", "head.projection."),
        (r"\.attn\.project\.0\.", ".attn.proj."),
        (r"\.attn\.pool_([qkv])\.pool\.", r".attn.pool_\1."),
        (r"\.attn\.pool_([qkv])\.norm_act\.0\.", r".attn.norm_\1."),
        (r"\.mlp\.0\.", ".mlp.fc1."),
        (r"\.mlp\.3\.", ".mlp.fc2."),
        (r"^(blocks\.\d+)\.project\.", r"\1.proj."),
    )
    out = {}
    for key, value in state.items():
        if key == "pos_encoding.class_token":
            out["cls_token"] = value.reshape(1, 1, -1)
            continue
        for pattern, repl in inverse:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out

