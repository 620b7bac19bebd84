"""pytorchvideo models (3D/(2+1)D/CSN ResNet-50 and X3D) registered with the paper's presets.

Registration only records specs; pytorchvideo is imported when a builder runs. Every builder
adapts the hub network in two ways (:func:`_adapt_head`):

* the head's fixed-kernel ``AvgPool3d`` (sized for the native input) becomes
  ``AdaptiveAvgPool3d(1)``, so the network accepts any T x H x W (down to about 4 x 64 x 64) and
  still pools to one vector — identical at the native size;
* the head's ``Softmax`` (X3D, R(2+1)D) is dropped so that every model returns logits, as the
  classification loss expects; it has no parameters, so checkpoints load unchanged.
"""

from __future__ import annotations

import os
from functools import partial

import torch
from torch import nn

from leaps.models import _compat
from leaps.models.registry import ModelSpec, Preset, register
from leaps.models.weights import load_weights

MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)
_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"


def _adapt_head(model: nn.Module) -> nn.Module:
    """Make the head of a pytorchvideo ``Net`` size-independent and return logits (in place)."""
    head = model.blocks[-1]
    pool = head.pool
    if isinstance(pool, nn.AvgPool3d):  # ResNet family
        head.pool = nn.AdaptiveAvgPool3d(1)
    elif isinstance(getattr(pool, "pool", None), nn.AvgPool3d):  # X3D ProjectedPool
        pool.pool = nn.AdaptiveAvgPool3d(1)
    else:
        raise TypeError(f"unexpected pytorchvideo head pooling {type(pool).__name__}")
    head.activation = None
    return model


def _hub_model(fn_name: str, num_classes: int, *, url: str | None = None, trust_weights: bool = False) -> nn.Module:
    """Build ``pytorchvideo.models.hub.<fn_name>`` (with the checkpoint at ``url``) and adapt its head.

    The checkpoint is downloaded here and read by :func:`leaps.models.weights.load_weights`,
    which runs no code from the file: pytorchvideo's own ``pretrained=True`` unpickles it fully.
    Pretrained checkpoints always have 400 classes (checked by ``build_model``).
    """
    fn = getattr(_compat.pytorchvideo_hub(), fn_name)
    model = fn(pretrained=False, model_num_class=num_classes)
    if url is not None:
        load_weights(model, _download(url), trust_weights=trust_weights)
    return _adapt_head(model)


def _download(url: str) -> str:
    """The file at ``url`` in torch's hub cache (downloaded once, atomically by torch)."""
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(url))
    if not os.path.isfile(path):
        torch.hub.download_url_to_file(url, path, progress=True)
    return path


def _csn_r50(num_classes: int) -> nn.Module:
    # No hub entry: same recipe as pytorchvideo's csn_r101, at depth 50.
    csn = _compat.pytorchvideo_module("csn")
    model = csn.create_csn(
        model_depth=50,
        stem_pool=nn.MaxPool3d,
        head_pool_kernel_size=(4, 7, 7),
        model_num_class=num_classes,
    )
    return _adapt_head(model)


def _spec(name, title, frames, size, fixed_size, preset, *, builder=None, hub=True, url=None,
          notes=""):
    return ModelSpec(
        name=name,
        title=title,
        source="pytorchvideo",
        kind="cnn",
        frames=frames,
        size=size,
        fixed_size=fixed_size,
        mean=MEAN,
        std=STD,
        preset=preset,
        builder=builder or partial(_hub_model, name),
        hub=partial(_hub_model, name, url=url) if hub and url else None,
        notes=notes,
        url=url,
    )


_HEAD_NOTE = "head pooling made adaptive; returns logits"

SPECS = (
    _spec("slow_r50", "3D R50", 8, 224, False, Preset(1.0, 0.3, 7.5e-3),
          url=f"{_ZOO}/SLOW_8x8_R50.pyth", notes=_HEAD_NOTE),
    _spec("r2plus1d_r50", "(2+1)D R50", 16, 224, False, Preset(0.75, 0.1, 5e-3),
          url=f"{_ZOO}/R2PLUS1D_16x4_R50.pyth",
          notes=f"{_HEAD_NOTE} (hub head applies softmax; removed)"),
    _spec("csn_r50", "CSN R50", 32, 224, False, Preset(1.0, 0.2, 5e-3), builder=_csn_r50,
          hub=False,
          notes="pytorchvideo publishes no CSN R50 weights (only csn_r101): pass --weights PATH; "
          + _HEAD_NOTE),
    _spec("csn_r101", "CSN R101", 32, 224, False, Preset(1.0, 0.2, 5e-3),
          url=f"{_ZOO}/CSN_32x2_R101.pyth",
          notes="preset borrowed from CSN R50 (Table S1 has no R101 row); " + _HEAD_NOTE),
    _spec("x3d_xs", "X3D XS", 4, 160, True, Preset(1.0, 0.2, 1e-3),
          url=f"{_ZOO}/X3D_XS.pyth", notes=f"{_HEAD_NOTE} (hub head applies softmax; removed)"),
    _spec("x3d_s", "X3D S", 13, 160, True, Preset(1.0, 0.1, 1e-3),
          url=f"{_ZOO}/X3D_S.pyth", notes=f"{_HEAD_NOTE} (hub head applies softmax; removed)"),
    _spec("x3d_m", "X3D M", 16, 224, True, Preset(0.75, 0.1, 1e-3),
          url=f"{_ZOO}/X3D_M.pyth", notes=f"{_HEAD_NOTE} (hub head applies softmax; removed)"),
    _spec("x3d_l", "X3D L", 16, 312, True, Preset(0.75, 0.1, 1e-3),
          url=f"{_ZOO}/X3D_L.pyth", notes=f"{_HEAD_NOTE} (hub head applies softmax; removed)"),
)

for _s in SPECS:
    register(_s)
