"""TimeSformer with divided space-time attention (Bertasius et al., ICML 2021), as the official code builds it.

The module and parameter names follow ``timesformer/models/vit.py`` of facebookresearch/TimeSformer, so
its Kinetics-400 checkpoints (``model_state``, keys ``model.``-prefixed: leaps' loader strips the
prefix) load without renaming. The network is frozen for inversion, so stochastic depth and dropout
(identities in eval mode) are left out.

Token layout: B x (1 + HW*T) x C, the class token first, then space-major tokens with time fastest
(``(h w t)``); the temporal attention sees ``(B*HW) x T x C`` rows, the spatial attention
``(B*T) x (1+HW) x C`` rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm's ``Mlp`` parameter names)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over the rows of B' x N x C (``qkv`` and ``proj`` as in the official code)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class DividedSpaceTimeBlock(nn.Module):
    """Temporal attention (per spatial position), then spatial attention (per frame), then the MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.temporal_norm1 = nn.LayerNorm(dim, eps=eps)
        self.temporal_attn = Attention(dim, heads)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, b: int, t: int, w: int):
        c = x.shape[-1]
        hw = (x.shape[1] - 1) // t
        # temporal: 'b (hw t) c -> (b hw) t c'
        xt = x[:, 1:].reshape(b * hw, t, c)
        res = self.temporal_attn(self.temporal_norm1(xt)).reshape(b, hw * t, c)
        xt = x[:, 1:] + self.temporal_fc(res)
        # spatial: 'b (hw t) c -> (b t) hw c', each frame with a copy of the class token
        cls = x[:, :1]
        xs = xt.reshape(b, hw, t, c).transpose(1, 2).reshape(b * t, hw, c)
        xs = torch.cat((cls.repeat(1, t, 1).reshape(b * t, 1, c), xs), 1)
        res = self.attn(self.norm1(xs))
        cls_res = res[:, 0].reshape(b, t, c).mean(1, keepdim=True)  # the class token averaged over frames
        res = res[:, 1:].reshape(b, t, hw, c).transpose(1, 2).reshape(b, hw * t, c)
        x = torch.cat((cls, xt), 1) + torch.cat((cls_res, res), 1)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Each frame cut into patches by a Conv2d: B x C x T x H x W -> (B*T) x HW x D."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        b, c, t, h, w = x.shape
        x = self.proj(x.transpose(1, 2).reshape(b * t, c, h, w))
        return x.flatten(2).transpose(1, 2), t, x.shape[-1]


class TimeSformer(nn.Module):
    """TimeSformer (divided space-time); the default is the official ViT-B/16, 8 x 224^2 Kinetics-400 model."""

    def __init__(self, num_classes: int = 400, *, img_size: int = 224, patch: int = 16, frames: int = 8,
                 dim: int = 768, depth: int = 12, heads: int = 12, mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch) ** 2 + 1, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, frames, dim))
        self.blocks = nn.ModuleList([DividedSpaceTimeBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for block in list(self.blocks)[1:]:  # as the official code: temporal_fc starts at 0 but in block 0
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    def _positions(self, n: int, w: int) -> torch.Tensor:
        """pos_embed, resized (nearest) when the input has another number of patches than it was built for."""
        pos = self.pos_embed
        if n == pos.shape[1]:
            return pos
        side = int((pos.shape[1] - 1) ** 0.5)
        grid = pos[:, 1:].transpose(1, 2).reshape(1, pos.shape[2], side, side)
        grid = F.interpolate(grid, size=((n - 1) // w, w), mode="nearest").flatten(2).transpose(1, 2)
        return torch.cat((pos[:, :1], grid), 1)

    def forward_features(self, x):
        b = x.shape[0]
        x, t, w = self.patch_embed(x)  # (B*T) x HW x D
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), 1)
        x = x + self._positions(x.shape[1], w)
        cls, x = x[:b, :1], x[:, 1:]
        hw, c = x.shape[1], x.shape[2]
        x = x.reshape(b, t, hw, c).transpose(1, 2).reshape(b * hw, t, c)  # '(b t) n c -> (b n) t c'
        time = self.time_embed
        if t != time.shape[1]:
            time = F.interpolate(time.transpose(1, 2), size=t, mode="nearest").transpose(1, 2)
        x = (x + time).reshape(b, hw * t, c)
        x = torch.cat((cls, x), 1)
        for block in self.blocks:
            x = block(x, b, t, w)
        return self.norm(x)[:, 0]

    def forward(self, x):
        return self.head(self.forward_features(x))


def timesformer_token_grid(thw: tuple[int, int, int], patch: int = 16) -> tuple[int, int]:
    """(T, H'W') of the tokens entering the final LayerNorm: one token per frame and 16 x 16 patch."""
    t, h, w = thw
    return t, (h // patch) * (w // patch)
