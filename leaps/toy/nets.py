"""Tiny but real 3D video CNNs for the toy world, each with BatchNorm3d and an adaptive head.

Three different architectures, so that one can be inverted while another verifies:

* :class:`ToyR3D` — R3D-style residual net of full 3 x 3 x 3 convolutions (the toy stand-in
  for 3D R50, the network the paper inverts);
* :class:`ToyX3D` — X3D-style bottlenecks: 1x1x1 expand, (2+1)D factorised grouped
  convolution, squeeze-excitation, SiLU, 1x1x1 project; full temporal resolution throughout
  (the stand-in for the X3D-S verifier);
* :class:`ToyR2Plus1D` — R(2+1)D-style basic blocks: every 3 x 3 x 3 convolution is split
  into a spatial (1, 3, 3) and a temporal (3, 1, 1) one.

All accept any ``B x 3 x T x H x W`` (global average pooling before the classifier) and
return logits. Depthwise ``Conv3d`` (groups = channels) is avoided: it is very slow on CPU
in PyTorch, so the X3D-like net uses groups of 8 channels instead.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin, cout, kernel, stride=1, groups=1, act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv3d (no bias: BN follows) + BatchNorm3d (+ activation); 'same' padding."""
    kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
    padding = tuple(k // 2 for k in kernel)
    layers = [nn.Conv3d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm3d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _shortcut(cin, cout, stride) -> nn.Module:
    """Identity, or a strided 1x1x1 projection when the shape changes (ResNet option B)."""
    if cin == cout and stride == 1:
        return nn.Identity()
    return conv_bn(cin, cout, 1, stride, act=None)


class _Residual(nn.Module):
    """``act(body(x) + shortcut(x))``."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, act: nn.Module):
        super().__init__()
        self.body, self.shortcut, self.act = body, shortcut, act

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class _ToyNet(nn.Module):
    """stem -> stages -> global average pool -> linear classifier."""

    def __init__(self, stem: nn.Module, stages: nn.Module, width: int, num_classes: int, dropout: float):
        super().__init__()
        self.num_classes = num_classes
        self.stem, self.stages = stem, stages
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        _init(self)

    def forward(self, x):
        x = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.fc(self.dropout(x))


def _init(model: nn.Module) -> None:
    # Kaiming for convs, BN at (1, 0), PyTorch's default for the classifier. (Zero-initialising
    # the last BN of each residual body, common for deep ResNets, made these shallow nets
    # start learning several times later.)
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


# ---------------------------------------------------------------------------- R3D


def _r3d_block(cin, cout, stride) -> _Residual:
    body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, act=None))
    return _Residual(body, _shortcut(cin, cout, stride), nn.ReLU())


class ToyR3D(_ToyNet):
    """R3D-style: (3, 7, 7) stem, three residual stages of 3 x 3 x 3 basic blocks.

    8 x 64^2 input -> stem 16 x 8 x 32^2 -> 24 x 8 x 16^2 -> 48 x 4 x 8^2 -> 64 x 4 x 4^2
    -> pool -> fc. The first stage already halves H, W: full 3^3 convolutions at 32^2 would
    double the cost of the whole net.
    """

    def __init__(self, num_classes: int = 10, widths=(24, 48, 64), stem_width: int = 16,
                 strides=((1, 2, 2), (2, 2, 2), (1, 2, 2)), dropout: float = 0.1):
        stem = conv_bn(3, stem_width, (3, 7, 7), (1, 2, 2))
        stages, cin = [], stem_width
        for w, s in zip(widths, strides):
            stages.append(_r3d_block(cin, w, s))
            cin = w
        super().__init__(stem, nn.Sequential(*stages), cin, num_classes, dropout)


# ---------------------------------------------------------------------------- X3D


class _SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features (as in X3D's bottlenecks)."""

    def __init__(self, channels: int, ratio: float = 0.25):
        super().__init__()
        hidden = max(8, round(channels * ratio))
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.fc2 = nn.Conv3d(hidden, channels, 1)

    def forward(self, x):
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


def _x3d_block(cin, cout, stride, expansion: float, group_width: int, se: bool) -> _Residual:
    inner = round(cin * expansion / group_width) * group_width
    groups = inner // group_width
    st, ss = (stride, 1) if isinstance(stride, int) else (stride[0], stride[1])
    body = nn.Sequential(
        conv_bn(cin, inner, 1),
        # (2+1)D factorised grouped 3x3x3: spatial then temporal (X3D uses one depthwise 3^3).
        conv_bn(inner, inner, (1, 3, 3), (1, ss, ss), groups=groups, act=None),
        conv_bn(inner, inner, (3, 1, 1), (st, 1, 1), groups=groups, act=None),
        _SqueezeExcite(inner) if se else nn.Identity(),
        nn.SiLU(),
        conv_bn(inner, cout, 1, act=None),
    )
    return _Residual(body, _shortcut(cin, cout, stride), nn.ReLU())


class ToyX3D(_ToyNet):
    """X3D-style: (1, 3, 3) + (3, 1, 1) stem, bottleneck stages, conv_5 widening, no temporal
    downsampling (X3D keeps all frames).

    8 x 64^2 input -> 12 x 8 x 32^2 -> 24 x 8 x 16^2 -> 48 x 8 x 8^2 -> 96 x 8 x 4^2 -> 192 -> fc.
    """

    def __init__(self, num_classes: int = 10, widths=(24, 48, 96), depths=(1, 2, 2),
                 expansion: float = 2.0, group_width: int = 8, stem_width: int = 12, dropout: float = 0.1):
        stem = nn.Sequential(
            conv_bn(3, stem_width, (1, 3, 3), (1, 2, 2), act=None),
            conv_bn(stem_width, stem_width, (3, 1, 1)),
        )
        stages, cin = [], stem_width
        for w, d in zip(widths, depths):
            for i in range(d):
                stages.append(_x3d_block(cin, w, (1, 2, 2) if i == 0 else 1, expansion, group_width, se=i % 2 == 0))
                cin = w
        head_width = 2 * cin
        stages.append(conv_bn(cin, head_width, 1))  # X3D's conv_5
        super().__init__(stem, nn.Sequential(*stages), head_width, num_classes, dropout)


# ---------------------------------------------------------------------------- R(2+1)D


def _r2plus1d_conv(cin, cout, stride, act) -> nn.Sequential:
    st, ss = (stride, stride) if isinstance(stride, int) else (stride[0], stride[1])
    # Mid width as in R(2+1)D: keeps the parameter count of the 3x3x3 conv it replaces.
    mid = (27 * cin * cout) // (9 * cin + 3 * cout)
    return nn.Sequential(
        conv_bn(cin, mid, (1, 3, 3), (1, ss, ss)),
        conv_bn(mid, cout, (3, 1, 1), (st, 1, 1), act=act),
    )


def _r2plus1d_block(cin, cout, stride) -> _Residual:
    body = nn.Sequential(_r2plus1d_conv(cin, cout, stride, nn.ReLU), _r2plus1d_conv(cout, cout, 1, None))
    return _Residual(body, _shortcut(cin, cout, stride), nn.ReLU())


class ToyR2Plus1D(_ToyNet):
    """R(2+1)D-style: factorised stem and basic blocks, same stage layout as :class:`ToyR3D`."""

    def __init__(self, num_classes: int = 10, widths=(24, 48, 64), stem_width: int = 16,
                 strides=((1, 2, 2), (2, 2, 2), (1, 2, 2)), dropout: float = 0.1):
        stem = nn.Sequential(conv_bn(3, 24, (1, 7, 7), (1, 2, 2)), conv_bn(24, stem_width, (3, 1, 1)))
        stages, cin = [], stem_width
        for w, s in zip(widths, strides):
            stages.append(_r2plus1d_block(cin, w, s))
            cin = w
        super().__init__(stem, nn.Sequential(*stages), cin, num_classes, dropout)


#: The toy networks by short name; checkpoints ship as ``leaps/data/toy_<name>.pt``.
TOY_NETS: dict[str, type[_ToyNet]] = {"r3d": ToyR3D, "x3d": ToyX3D, "r2plus1d": ToyR2Plus1D}


def build_from(table: dict[str, type[nn.Module]], name: str, num_classes: int, kind: str) -> nn.Module:
    """A randomly initialised ``table[name]``; an unknown name is a ValueError listing the ``kind``'s names."""
    try:
        cls = table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(table)}") from None
    return cls(num_classes=num_classes)


def build_toy_net(name: str, num_classes: int = 10) -> nn.Module:
    """A randomly initialised toy network ``name`` (a key of :data:`TOY_NETS`)."""
    return build_from(TOY_NETS, name, num_classes, "toy network")
