"""UniFormerV2 (Li et al., ICCV 2023) as OpenGVLab/UniFormerV2 builds its Kinetics-400 models (K710 -> K400).

Parameter names follow ``slowfast/models/uniformerv2_model.py`` and the ``backbone`` attribute of its
wrapper, so the official checkpoints (keys ``backbone.``-prefixed) load unchanged. The released K400
configurations (``exp/k400/k400+k710_{b16,l14}_f8x224``) use ``NO_LMHRA: True`` and
``TEMPORAL_DOWNSAMPLE: False``: no local MHRA (hence no BatchNorm) and a (1, p, p) patch embedding; only
that variant is built. Dropout and stochastic depth are identities for a frozen network and left out.

Layouts: ``ln_pre`` sees ``(B*T) x (1+HW) x C``; the backbone blocks are sequence-first,
``(1+HW) x (B*T) x C`` (a class token per frame); the global decoder's norms see ``1 x B x C`` queries
and ``(T*(1+HW)) x B x C`` keys; the last LayerNorm (``transformer.proj.0``) sees ``B x C``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input's dtype (as the official code)."""

    def forward(self, x):
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("c_fc", nn.Linear(dim, hidden)), ("gelu", QuickGELU()),
                                      ("c_proj", nn.Linear(hidden, dim))]))


class ResidualAttentionBlock(nn.Module):
    """A CLIP ViT block on sequence-first tokens ``(1+HW) x (B*T) x C``: attention within each frame."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads)
        self.ln_1 = LayerNorm(dim)
        self.mlp = _mlp(dim, dim * 4)
        self.ln_2 = LayerNorm(dim)

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Extractor(nn.Module):
    """Global UniBlock decoder layer: a video query cross-attends to all frames' tokens."""

    def __init__(self, dim: int, heads: int, mlp_factor: float = 4.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads)
        self.ln_1 = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, round(mlp_factor * dim))
        self.ln_2 = nn.LayerNorm(dim)
        self.ln_3 = nn.LayerNorm(dim)

    def attention(self, x, y):
        d, heads = x.shape[-1], self.attn.num_heads
        w, b = self.attn.in_proj_weight, self.attn.in_proj_bias
        q = F.linear(x, w[:d], b[:d])
        k = F.linear(y, w[d:-d], b[d:-d])
        v = F.linear(y, w[-d:], b[-d:])
        tq, tk, n = q.shape[0], k.shape[0], q.shape[1]
        q = q.view(tq, n, heads, d // heads).permute(1, 2, 0, 3)
        k = k.view(tk, n, heads, d // heads).permute(1, 2, 0, 3)
        v = v.view(tk, n, heads, d // heads).permute(1, 2, 0, 3)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.attn.out_proj(out.permute(2, 0, 1, 3).flatten(2))

    def forward(self, x, y):
        x = x + self.attention(self.ln_1(x), self.ln_3(y))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Backbone blocks, then (at the blocks of ``return_list``) the global decoder on their tokens."""

    def __init__(self, width: int, layers: int, heads: int, t_size: int, return_list, n_dim: int, n_head: int,
                 mlp_factor: float, num_classes: int):
        super().__init__()
        self.T = t_size
        self.return_list = list(return_list)
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, n_dim))
        n_layers = len(self.return_list)
        self.dpe = nn.ModuleList([nn.Conv3d(n_dim, n_dim, 3, padding=1, groups=n_dim) for _ in range(n_layers)])
        self.dec = nn.ModuleList([Extractor(n_dim, n_head, mlp_factor) for _ in range(n_layers)])
        self.proj = nn.Sequential(nn.LayerNorm(n_dim), nn.Dropout(0.5), nn.Linear(n_dim, num_classes))
        self.balance = nn.Parameter(torch.zeros(n_dim))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        length, nt, c = x.shape
        t = self.T
        n = nt // t
        h = w = int((length - 1) ** 0.5)
        cls_token = self.temporal_cls_token.repeat(1, n, 1)
        j = -1
        for i, block in enumerate(self.resblocks):
            x = block(x)
            if i in self.return_list:
                j += 1
                tokens = x.view(length, n, t, c)
                feats = tokens[1:].permute(1, 3, 2, 0).reshape(n, c, t, h, w)  # dynamic positional encoding
                feats = self.dpe[j](feats).view(n, c, t, length - 1).permute(3, 0, 2, 1)
                tokens = torch.cat((tokens[:1], tokens[1:] + feats), 0)
                cls_token = self.dec[j](cls_token, tokens.permute(2, 0, 1, 3).flatten(0, 1))  # (T*L) x N x C
        weight = self.sigmoid(self.balance)
        residual = x.view(length, n, t, c)[0].mean(1)  # the frames' class tokens, averaged
        return self.proj((1 - weight) * cls_token[0] + weight * residual)


class VisionTransformer(nn.Module):
    """The UniFormerV2 backbone: patch embedding per frame, CLIP ViT blocks, global decoder and head."""

    def __init__(self, *, input_resolution: int, patch_size: int, width: int, layers: int, heads: int,
                 t_size: int, return_list, n_dim: int, n_head: int, mlp_factor: float = 4.0,
                 num_classes: int = 400):
        super().__init__()
        self.conv1 = nn.Conv3d(3, width, (1, patch_size, patch_size), (1, patch_size, patch_size), bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, t_size, return_list, n_dim, n_head, mlp_factor,
                                       num_classes)

    def forward(self, x):
        x = self.conv1(x)
        n, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(n * t, h * w, c)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, c)
        x = torch.cat((cls, x), 1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        return self.transformer(x.permute(1, 0, 2))  # NLD -> LND


class UniFormerV2(nn.Module):
    """The official wrapper: everything under ``backbone``."""

    def __init__(self, num_classes: int = 400, **arch):
        super().__init__()
        self.backbone = VisionTransformer(num_classes=num_classes, **arch)

    def forward(self, x):
        return self.backbone(x)


#: The released K400 configurations (K710 pre-training, 8 x 224^2).
ARCHS = {
    "b16": dict(input_resolution=224, patch_size=16, width=768, layers=12, heads=12, t_size=8,
                return_list=(8, 9, 10, 11), n_dim=768, n_head=12),
    "l14": dict(input_resolution=224, patch_size=14, width=1024, layers=24, heads=16, t_size=8,
                return_list=(20, 21, 22, 23), n_dim=1024, n_head=16),
}

