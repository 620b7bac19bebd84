"""torchvision video models (ResNet-18 variants, S3D, MViTv2-S, Video Swin) registered for LEAPS.

Registration only records specs; torchvision is imported when a builder runs. Table S1 of the
paper has no rows for these exact networks, so each preset is borrowed from the closest family
in the table (stated in ``notes``).
"""

from __future__ import annotations

from functools import partial

from torch import nn

from leaps.models import _compat
from leaps.models.registry import ModelSpec, Preset, register

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision's Kinetics statistics
KINETICS_STD = (0.22803, 0.22145, 0.216989)
SLOWFAST_MEAN = (0.45, 0.45, 0.45)  # MViT weights were ported from SlowFast
SLOWFAST_STD = (0.225, 0.225, 0.225)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # Video Swin weights were ported from ImageNet-style code
IMAGENET_STD = (0.229, 0.224, 0.225)
_URL = "https://download.pytorch.org/models"


def _adapt_s3d(model: nn.Module) -> nn.Module:
    """Let S3D accept small inputs (down to 4 x 64^2); unchanged at its native sizes."""
    # The head's AvgPool3d((2, 7, 7)) needs >= 14 x 224^2 inputs; global pooling accepts any
    # size (the classifier averages over the remaining positions anyway).
    model.avgpool = nn.AdaptiveAvgPool3d(1)
    # The last MaxPool3d((2, 2, 2), stride 2) fails on a 1-frame feature map (inputs < 8
    # frames); ceil_mode keeps a partial window there and changes nothing for even sizes.
    for layer in model.features:
        if isinstance(layer, nn.MaxPool3d) and layer.kernel_size == (2, 2, 2):
            layer.ceil_mode = True
    return model


_ADAPT = {"s3d": _adapt_s3d}


def _tv_model(fn_name: str, num_classes: int, *, pretrained: bool = False) -> nn.Module:
    """Build ``torchvision.models.video.<fn_name>``; with ``pretrained`` download its weights."""
    video = _compat.torchvision_video()
    fn = getattr(video, fn_name)
    if pretrained:  # torchvision fixes num_classes=400 itself when given weights
        model = fn(weights="DEFAULT")
    else:
        model = fn(weights=None, num_classes=num_classes)
    adapt = _ADAPT.get(fn_name)
    return adapt(model) if adapt else model


def mvit_token_grid(thw: tuple[int, int, int]) -> tuple[int, int]:
    """(T', H'*W') of the tokens entering MViTv2-S's final LayerNorm (after 1 class token).

    The patch embedding has stride (2, 4, 4) and three pooling stages halve H and W again:
    16 x 224^2 -> (8, 7*7).
    """
    t, h, w = thw
    t = (t - 1) // 2 + 1  # conv (3,7,7), stride (2,4,4), padding (1,3,3)
    h, w = (h - 1) // 4 + 1, (w - 1) // 4 + 1
    for _ in range(3):  # q-pooling kernel 3, stride 2, padding 1
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return t, h * w


def _spec(name, title, kind, frames, size, fixed_size, mean, std, preset, *, url, notes,
          token_grid=None):
    return ModelSpec(
        name=name,
        title=title,
        source="torchvision",
        kind=kind,
        frames=frames,
        size=size,
        fixed_size=fixed_size,
        mean=mean,
        std=std,
        preset=preset,
        builder=partial(_tv_model, name),
        hub=partial(_tv_model, name, pretrained=True),
        token_grid=token_grid,
        notes=notes,
        url=url,
    )


_CNN = dict(kind="cnn", frames=16, size=112, fixed_size=False, mean=KINETICS_MEAN,
            std=KINETICS_STD)

SPECS = (
    _spec("r3d_18", "3D R18", **_CNN, preset=Preset(1.0, 0.3, 7.5e-3),
          url=f"{_URL}/r3d_18-b3b3357e.pth", notes="preset borrowed from 3D R50"),
    _spec("mc3_18", "MC3 R18", **_CNN, preset=Preset(1.0, 0.3, 7.5e-3),
          url=f"{_URL}/mc3_18-a90a0ba3.pth", notes="preset borrowed from 3D R50"),
    _spec("r2plus1d_18", "(2+1)D R18", **_CNN, preset=Preset(0.75, 0.1, 5e-3),
          url=f"{_URL}/r2plus1d_18-91a641e6.pth", notes="preset borrowed from (2+1)D R50"),
    _spec("s3d", "S3D", "cnn", 64, 224, False, KINETICS_MEAN, KINETICS_STD,
          Preset(1.0, 0.2, 5e-3), url=f"{_URL}/s3d-d76dad2f.pth",
          notes="preset borrowed from CSN R50 (separable convolutions); 64 frames as in the S3D "
          "paper (torchvision evaluates 128); head pooling made adaptive"),
    _spec("mvit_v2_s", "MViTv2-S", "transformer", 16, 224, True, SLOWFAST_MEAN, SLOWFAST_STD,
          Preset(0.75, 0.1, 2.5e-3), url=f"{_URL}/mvit_v2_s-ae3be167.pth",
          token_grid=mvit_token_grid,
          notes="preset from the MViTv2-S row; fixed 16 x 224^2 input (positional sizes are "
          "built in); final norm sees 1 class token + 8 x 49 tokens"),
    _spec("swin3d_t", "Video Swin-T", "transformer", 32, 224, True, IMAGENET_MEAN, IMAGENET_STD,
          Preset(0.75, 0.2, 1e-3), url=f"{_URL}/swin3d_t-7615ae03.pth",
          notes="preset from the Video Swin-T row; runs at any size (it pads), inverted at "
          "32 x 224^2"),
    _spec("swin3d_s", "Video Swin-S", "transformer", 32, 224, True, IMAGENET_MEAN, IMAGENET_STD,
          Preset(0.75, 0.1, 1e-3), url=f"{_URL}/swin3d_s-da41c237.pth",
          notes="preset from the Video Swin-S row; runs at any size (it pads), inverted at "
          "32 x 224^2"),
    _spec("swin3d_b", "Video Swin-B", "transformer", 32, 224, True, IMAGENET_MEAN, IMAGENET_STD,
          Preset(0.625, 0.1, 1e-3), url=f"{_URL}/swin3d_b_1k-24f7c7c6.pth",
          notes="preset from the Video Swin-B row; runs at any size (it pads), inverted at "
          "32 x 224^2; Kinetics-400 (ImageNet-1k pretrained) weights"),
)

for _s in SPECS:
    register(_s)
