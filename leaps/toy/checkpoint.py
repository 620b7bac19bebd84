"""Saving and loading the toy networks' checkpoints: a state dict plus a metadata dict.

File layout (loadable with ``torch.load(..., weights_only=True)`` and with
:func:`leaps.models.load_weights`, which finds the nested ``state_dict``)::

    {"state_dict": {name: float32 tensor}, "meta": {"net": "r3d", "classes": [...], ...}}
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from leaps._atomic import atomic_path
from leaps.errors import WeightsError


def checkpoint_name(net: str, robust: bool = False) -> str:
    """File name of the shipped checkpoint of toy network ``net``: ``toy_r3d.pt``, or
    ``toy_r3d_robust.pt`` for the adversarially trained one."""
    return f"toy_{net}{'_robust' if robust else ''}.pt"


def shipped_path(net: str, robust: bool = False):
    """The shipped checkpoint of ``net`` inside the installed package (a Traversable)."""
    # one name per step: joinpath of Python 3.11's MultiplexedPath (a namespace path) takes one
    return resources.files("leaps") / "data" / checkpoint_name(net, robust)


def checkpoint_meta(name: str, model: nn.Module, frames: int, size: int, fields: dict, train_seconds: float,
                    **environment) -> dict:
    """The metadata of a toy checkpoint: the network, its classes, input geometry, normalisation and
    size, then ``fields`` (what a training run measured and its recipe), then its time and the
    environment it ran in (``environment``: e.g. the device, beside the threads and torch version)."""
    from leaps.toy.data import TOY_CLASSES, TOY_MEAN, TOY_STD

    return {"net": name, "arch": type(model).__name__, "classes": list(TOY_CLASSES), "frames": frames, "size": size,
            "mean": list(TOY_MEAN), "std": list(TOY_STD), "params": sum(p.numel() for p in model.parameters()),
            **fields, "train_seconds": round(train_seconds, 1), "threads": torch.get_num_threads(), **environment,
            "torch": str(torch.__version__)}


def save_checkpoint(model: nn.Module, meta: dict, path) -> Path:
    """Write ``{"state_dict", "meta"}`` atomically (a temp file moved over ``path``)."""
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "meta": dict(meta)}, tmp)
    return path


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, meta)`` of a toy checkpoint; :class:`WeightsError` if unreadable."""
    try:
        if isinstance(path, (str, os.PathLike)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:  # an importlib.resources Traversable
            with resources.as_file(path) as real:
                obj = torch.load(real, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"toy checkpoint not found: {path} (run `python -m leaps.toy.train`)") from exc
    except Exception as exc:  # noqa: BLE001 - truncated file, wrong format, ...
        raise WeightsError(f"cannot read toy checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict) or "state_dict" not in obj or "meta" not in obj:
        raise WeightsError(f"{path} is not a toy checkpoint (expected keys 'state_dict' and 'meta')")
    return obj["state_dict"], obj["meta"]
