"""Reversible MViTv2-B 16x4 (Mangalam et al., "Reversible Vision Transformers", CVPR 2022), as SlowFast builds it.

Module and parameter names follow ``slowfast/models/reversible_mvit.py``, ``attention.py`` and the ``MViT``
class of ``video_model_builder.py`` (facebookresearch/SlowFast), so the official Kinetics-400 checkpoint
(``REV_MVIT_B_16x4.pyth``, a ``model_state`` dict) loads without renaming. Configuration: SlowFast's
``Kinetics/REV_MVIT_B_16x4_CONV`` with its defaults: 16 blocks; 96 channels and 1 head, doubled (and queries
pooled (1, 2, 2)) at the stage-transition blocks 1, 3 and 14 (``MVIT.REV.BUFFER_LAYERS``); keys and values
pooled by depthwise (3, 3, 3) convolutions, strides adaptive from (1, 8, 8); no qkv bias; separate spatial
and temporal absolute positions, no class token (the YAML says ``CLS_EMBED_ON: True``, but SlowFast's ``MViT``
asserts it off when ``REV.ENABLE``: the released model has none), no relative positions,
no residual pooling; the stage transitions pool their residual with the query's convolution
(``REV.RES_PATH: conv``) and average the two streams first (``REV.PRE_Q_FUSION: avg``); the last block's
streams are concatenated (``REV.RESPATH_FUSE: concat``), normalised, averaged over tokens, classified.

Reversible blocks: Y_1 = X_1 + F(X_2), Y_2 = X_2 + G(Y_1) with F = attention, G = MLP (each with its
pre-LayerNorm). They run with plain autograd, as SlowFast itself runs them outside training
(``ReversibleMViT.vanilla_backward``): LEAPS primes on the inputs of every LayerNorm *inside* the blocks
(eq. 1), and SlowFast's memory-saving ``RevBackProp`` (activations recomputed backwards from the outputs in
a custom ``autograd.Function`` whose forward runs without a graph) would carry the gradient of the output
only, not of those tapped intermediate activations. The network is frozen for inversion, so stochastic
depth and dropout (identities in eval mode) are left out, and the head returns logits (SlowFast's
``TransformerBasicHead`` applies a softmax in eval mode).

Token layout: every tapped input is batch-first, ``B x (T' H' W') x C``, time-major (``patch_embed`` flattens
``B x C x T x H x W``); the pooling norms (``norm_q/k/v``) see ``B x heads x L x C/heads``. The final ``norm``
sees ``B x (8*49) x 1536``: the two 768-channel residual streams concatenated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leaps.errors import LeapsError, ShapeError
from leaps.models.timesformer import Mlp

#: Blocks per stage of REV_MVIT_B_16x4_CONV; stages after the first open with a stage-transition block
#: (BUFFER_LAYERS 1, 3, 14) that doubles channels and heads and pools the queries.
B_STAGE_DEPTHS = (1, 2, 11, 2)


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


def attention_pool(tensor: torch.Tensor, pool: nn.Module | None, thw: tuple[int, int, int],
                   norm: nn.Module | None = None) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pool ``B x heads x L x C`` tokens on their (T, H, W) grid with ``pool``, then ``norm`` (SlowFast's
    ``attention_pool`` without a class token); returns the tokens and their new grid."""
    if pool is None:
        return tensor, thw
    b, n, _, c = tensor.shape
    t, h, w = thw
    tensor = pool(tensor.reshape(b * n, t, h, w, c).permute(0, 4, 1, 2, 3))
    thw = tuple(tensor.shape[2:])
    tensor = tensor.reshape(b, n, c, -1).transpose(2, 3)
    if norm is not None:
        tensor = norm(tensor)
    return tensor, thw


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _pool_conv(channels: int, kernel, stride) -> nn.Conv3d:
    return nn.Conv3d(channels, channels, kernel, stride=stride, padding=[k // 2 for k in kernel], groups=channels,
                     bias=False)


class MultiScaleAttention(nn.Module):
    """MViTv2 pooling attention (``mode="conv"``, pooling after the qkv projection, channels changed inside)."""

    def __init__(self, dim: int, dim_out: int, heads: int, kernel_q=(), kernel_kv=(), stride_q=(), stride_kv=(),
                 qkv_bias: bool = False):
        super().__init__()
        self.num_heads = heads
        self.dim_out = dim_out
        self.qkv = nn.Linear(dim, dim_out * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)
        head_dim = dim_out // heads
        # SlowFast skips a pooling whose kernel and stride are both all ones
        q_on = len(kernel_q) > 0 and not (_prod(kernel_q) == 1 and _prod(stride_q) == 1)
        kv_on = len(kernel_kv) > 0 and not (_prod(kernel_kv) == 1 and _prod(stride_kv) == 1)
        self.pool_q = _pool_conv(head_dim, kernel_q, stride_q) if q_on else None
        self.norm_q = _layer_norm(head_dim) if q_on else None
        self.pool_k = _pool_conv(head_dim, kernel_kv, stride_kv) if kv_on else None
        self.norm_k = _layer_norm(head_dim) if kv_on else None
        self.pool_v = _pool_conv(head_dim, kernel_kv, stride_kv) if kv_on else None
        self.norm_v = _layer_norm(head_dim) if kv_on else None

    def forward(self, x: torch.Tensor, thw: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, q_thw = attention_pool(q, self.pool_q, thw, self.norm_q)
        k, _ = attention_pool(k, self.pool_k, thw, self.norm_k)
        v, _ = attention_pool(v, self.pool_v, thw, self.norm_v)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(x.transpose(1, 2).reshape(b, -1, self.dim_out)), q_thw


class AttentionSubBlock(nn.Module):
    """F: pre-LayerNorm, then pooling attention on the block's fixed input grid ``thw``."""

    def __init__(self, dim: int, dim_out: int, heads: int, thw: tuple[int, int, int], **pooling):
        super().__init__()
        self.norm = _layer_norm(dim)
        self.thw = tuple(thw)  # SlowFast sets it after construction (``layers[-1].F.thw = input_size``)
        self.attn = MultiScaleAttention(dim, dim_out, heads, **pooling)

    def forward(self, x):
        return self.attn(self.norm(x), self.thw)[0]


class MLPSubblock(nn.Module):
    """G: pre-LayerNorm, then fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm = _layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        return self.mlp(self.norm(x))


class ReversibleBlock(nn.Module):
    """Y_1 = X_1 + F(X_2), Y_2 = X_2 + G(Y_1): the inputs are recoverable from the outputs."""

    def __init__(self, dim: int, heads: int, thw, *, mlp_ratio: float = 4.0, layer_id: int = 0, **pooling):
        super().__init__()
        self.F = AttentionSubBlock(dim, dim, heads, thw, **pooling)
        self.G = MLPSubblock(dim, mlp_ratio)
        self.layer_id = layer_id

    def forward(self, x_1, x_2):
        y_1 = x_1 + self.F(x_2)
        return y_1, x_2 + self.G(y_1)


class StageTransitionBlock(nn.Module):
    """A non-reversible MViT block on the averaged streams: channels up inside attention, queries pooled; the
    residual is projected and pooled with the query's own convolution and norm (``REV.RES_PATH: conv``)."""

    def __init__(self, dim: int, dim_out: int, heads: int, thw, *, mlp_ratio: float = 4.0, layer_id: int = 0,
                 **pooling):
        super().__init__()
        self.F = AttentionSubBlock(dim, dim_out, heads, thw, **pooling)
        self.G = MLPSubblock(dim_out, mlp_ratio)
        self.layer_id = layer_id
        self.res_proj = nn.Linear(dim, dim_out) if dim != dim_out else None

    def forward(self, x):
        x = torch.stack(torch.chunk(x, 2, dim=2)).mean(0)  # pre_q_fuse "avg" of the two streams
        res = self.res_proj(x) if self.res_proj is not None else x
        b, n, c = res.shape
        heads = self.F.attn.num_heads
        res, _ = attention_pool(res.reshape(b, n, heads, c // heads).permute(0, 2, 1, 3), self.F.attn.pool_q,
                                self.F.thw, self.F.attn.norm_q)
        res = res.permute(0, 2, 1, 3).reshape(b, res.shape[2], c)
        x = res + self.F(x)
        return x + self.G(x)


def round_width(width: float, multiplier: float, divisor: int = 1) -> int:
    """SlowFast's ``round_width``: ``width * multiplier`` rounded to a multiple of ``divisor``."""
    width *= multiplier
    out = max(1, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def _check_stage_depths(stage_depths) -> None:
    # reversible runs hold two streams; a transition block fuses them, so each stage needs a reversible block
    # after its transition (and the first stage one of its own) for the streams to exist where they are read
    if len(stage_depths) < 1 or stage_depths[0] < 1 or any(d < 2 for d in stage_depths[1:]):
        raise LeapsError(f"rev-MViT stage depths {tuple(stage_depths)}: the first stage needs at least 1 block, "
                         "every later stage at least 2 (its transition block and a reversible block)")


class ReversibleMViT(nn.Module):
    """The block stack (``rev_backbone``): reversible runs on two streams, stage transitions between them."""

    def __init__(self, patch_thw, *, stage_depths=B_STAGE_DEPTHS, dim: int = 96, heads: int = 1,
                 kernel=(3, 3, 3), kv_stride=(1, 8, 8), mlp_ratio: float = 4.0):
        super().__init__()
        _check_stage_depths(stage_depths)
        thw, kv_stride = list(patch_thw), list(kv_stride)
        self.layers = nn.ModuleList()
        for stage, depth in enumerate(stage_depths):
            for i in range(depth):
                layer_id = len(self.layers)
                if stage > 0 and i == 0:  # DIM_MUL / HEAD_MUL 2.0 and POOL_Q_STRIDE (1, 2, 2) at this layer
                    stride_q = [1, 2, 2]
                    kv_stride = [max(s // q, 1) for s, q in zip(kv_stride, stride_q)]
                    heads = round_width(heads, 2.0)
                    dim_out = round_width(dim, 2.0, divisor=heads)
                    self.layers.append(StageTransitionBlock(
                        dim, dim_out, heads, thw, mlp_ratio=mlp_ratio, layer_id=layer_id, kernel_q=kernel,
                        stride_q=stride_q, kernel_kv=kernel, stride_kv=kv_stride))
                    thw = [(s - 1) // q + 1 for s, q in zip(thw, stride_q)]  # the pooling conv's output grid
                    dim = dim_out
                else:
                    self.layers.append(ReversibleBlock(
                        dim, heads, thw, mlp_ratio=mlp_ratio, layer_id=layer_id, kernel_kv=kernel,
                        stride_kv=kv_stride))
        self.dim_out = dim
        self.thw_out = tuple(thw)

    def forward(self, x):
        streams = None  # (X_1, X_2) inside a run of reversible blocks
        for layer in self.layers:
            if isinstance(layer, StageTransitionBlock):
                x = layer(torch.cat(streams, dim=-1))
                streams = None
            else:
                x_1, x_2 = streams if streams is not None else (x, x)  # a run starts from two copies of x
                streams = layer(x_1, x_2)
        return torch.cat(streams, dim=-1)


class PatchEmbed(nn.Module):
    """Conv3d (3, 7, 7), stride (2, 4, 4): B x 3 x T x H x W -> B x (T' H' W') x C, time-major."""

    def __init__(self, dim: int, kernel=(3, 7, 7), stride=(2, 4, 4), padding=(1, 3, 3)):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, kernel, stride=stride, padding=padding)

    def forward(self, x):
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])


class TransformerBasicHead(nn.Module):
    """The classifier (``head.projection``); logits, no softmax."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.projection = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.projection(x)


def patch_grid(thw: tuple[int, int, int]) -> tuple[int, int, int]:
    """(T', H', W') after the patch embedding: conv (3, 7, 7), stride (2, 4, 4), padding (1, 3, 3)."""
    t, h, w = thw
    return (t - 1) // 2 + 1, (h - 1) // 4 + 1, (w - 1) // 4 + 1


class RevMViT(nn.Module):
    """rev-MViT-B; the default is the official 16 x 224^2 Kinetics-400 model (``REV_MVIT_B_16x4_CONV``)."""

    def __init__(self, num_classes: int = 400, *, frames: int = 16, size: int = 224, stage_depths=B_STAGE_DEPTHS,
                 dim: int = 96):
        super().__init__()
        self.input_thw = (frames, size, size)
        self.patch_dims = patch_grid(self.input_thw)
        t, h, w = self.patch_dims
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, dim))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, dim))
        self.rev_backbone = ReversibleMViT(self.patch_dims, stage_depths=stage_depths, dim=dim)
        out = self.rev_backbone.dim_out
        self.norm = _layer_norm(2 * out)  # RESPATH_FUSE "concat": both streams, side by side
        self.head = TransformerBasicHead(2 * out, num_classes)
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed_spatial, std=0.02)
        nn.init.trunc_normal_(self.pos_embed_temporal, std=0.02)
        for m in self.modules():  # as SlowFast's MViT._init_weights
            if isinstance(m, (nn.Linear, nn.Conv3d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.constant_(m.bias, 0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.constant_(m.bias, 0.02)
                nn.init.constant_(m.weight, 1.0)

    def forward_features(self, x):
        if tuple(x.shape[2:]) != self.input_thw:
            raise ShapeError(f"rev-MViT takes B x 3 x {' x '.join(map(str, self.input_thw))} videos (its attention "
                             f"grids are fixed), got {tuple(x.shape)}")
        x, _ = self.patch_embed(x)
        t, h, w = self.patch_dims
        pos = self.pos_embed_spatial.repeat(1, t, 1) + torch.repeat_interleave(self.pos_embed_temporal, h * w, dim=1)
        x = self.rev_backbone(x + pos)
        return self.norm(x).mean(1)

    def forward(self, x):
        return self.head(self.forward_features(x))


def rev_mvit_token_grid(thw: tuple[int, int, int], poolings: int = 3) -> tuple[int, int]:
    """(T', H'W') of the tokens entering the final LayerNorm (no class token): the patch embedding, then
    ``poolings`` query poolings (kernel 3, stride 2, padding 1) in space; 16 x 224^2 -> (8, 49)."""
    t, h, w = patch_grid(thw)
    for _ in range(poolings):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return t, h * w
