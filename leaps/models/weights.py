"""Loading and saving model checkpoints from local files, with errors a user can act on."""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from typing import Union

import torch
from torch import nn

from leaps.errors import WeightsError

PathLike = Union[str, os.PathLike]

#: Keys under which common training frameworks nest the state dict
#: (pytorchvideo .pyth: "model_state"; Lightning and many repos: "state_dict"; others: "model").
_NESTING_KEYS = ("model_state", "state_dict", "model")
#: Prefixes added by wrappers (DataParallel / DDP: "module."; Lightning modules: "model.").
_WRAPPER_PREFIXES = ("module.", "model.")
_SHOWN = 5  # how many offending keys an error message lists


def save_weights(model: nn.Module, path: PathLike) -> None:
    """Save ``model``'s state dict to ``path`` (parent folders are created)."""
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    torch.save(model.state_dict(), path)


def load_weights(model: nn.Module, path: PathLike) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (strictly) and return ``model``.

    Accepts a plain state dict, a dict nesting it under ``model_state`` / ``state_dict`` /
    ``model``, or a pickled module; strips ``module.`` / ``model.`` prefixes when that makes the
    keys match. Raises :class:`WeightsError` if the file is missing, unreadable, or does not fit
    the model (naming the missing, unexpected and mis-shaped keys).
    """
    shown = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {shown}")
    state = _extract_state_dict(_read(path), shown)
    expected = model.state_dict()
    state = _strip_prefixes(state, expected)
    _check_fits(model, state, expected, shown)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # belt and braces: _check_fits should have caught it
        raise WeightsError(f"weights file {shown} does not fit the model: {exc}") from exc
    return model


def _read(path: PathLike) -> object:
    shown = os.fspath(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses pickles that reference other classes ("Unsupported global":
        # old pytorchvideo checkpoints store numpy scalars / configs). Garbage bytes raise the
        # same exception type with other messages ("Unsupported operand", "invalid load key").
        if "global" not in str(exc).lower():
            raise WeightsError(f"cannot read weights file {shown}: {_summary(exc)}") from exc
    except Exception as exc:  # noqa: BLE001 - truncated zip, EOF, wrong format, ...
        raise WeightsError(f"cannot read weights file {shown}: {_summary(exc)}") from exc

    warnings.warn(
        f"{shown} holds more than tensors; loading it with weights_only=False, trusting the "
        f"file (this can run arbitrary code: only use checkpoints from sources you trust)",
        stacklevel=3,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"cannot read weights file {shown}: {_summary(exc)}") from exc


def _summary(exc: BaseException) -> str:
    """A one-line summary of a torch.load error (the CLI prints errors on one line)."""
    # torch's weights_only errors open with paragraphs of advice; the cause is the line
    # naming what was unsupported.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = next((line for line in lines if line.startswith("Unsupported")), None)
    detail = cause or (lines[0] if lines else "empty or truncated file")
    return f"not a PyTorch checkpoint or corrupt ({type(exc).__name__}: {detail})"


def _extract_state_dict(obj: object, shown: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):  # a whole pickled model
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in _NESTING_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"weights file {shown} does not hold a state dict")
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        raise WeightsError(f"weights file {shown} holds no tensors")
    return state


def _strip_prefixes(state: dict, expected: Mapping) -> dict:
    """Strip wrapper prefixes as long as doing so makes more keys match the model."""

    def hits(sd: Mapping) -> int:
        return sum(k in expected for k in sd)

    best, best_hits = state, hits(state)
    improved = True
    while improved:
        improved = False
        for prefix in _WRAPPER_PREFIXES:
            candidate = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in best.items()}
            if hits(candidate) > best_hits:
                best, best_hits, improved = candidate, hits(candidate), True
    return best


def _check_fits(model: nn.Module, state: Mapping, expected: Mapping, shown: str) -> None:
    # BatchNorm fills in a missing num_batches_tracked itself (old checkpoints lack it).
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or mismatched):
        return

    problems = []
    if mismatched:
        problems.append(
            "shape mismatch: "
            + "; ".join(
                f"{k} is {tuple(state[k].shape)} in the file but {tuple(expected[k].shape)} "
                f"in the model"
                for k in mismatched[:_SHOWN]
            )
        )
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:_SHOWN])})")
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:_SHOWN])})"
        )
    message = f"weights file {shown} does not fit the model: " + "; ".join(problems)

    classes = _checkpoint_classes(model, state, mismatched)
    if classes is not None:
        message += (
            f". The checkpoint's classifier has {classes} outputs: pass num_classes={classes} "
            f"(--num-classes {classes})"
        )
    elif missing and unexpected:
        message += ". Is it a checkpoint of a different architecture?"
    raise WeightsError(message)


def _checkpoint_classes(model: nn.Module, state: Mapping, mismatched: list[str]) -> int | None:
    """The checkpoint's number of classes if only the final layer's output size differs."""
    params = [name for name, _ in model.named_parameters()]
    if not params or not mismatched:
        return None
    head = params[-1].rsplit(".", 1)[0] + "."  # the last layer is the classifier in every zoo model
    if not all(k.startswith(head) for k in mismatched):
        return None
    sizes = {int(state[k].shape[0]) for k in mismatched if state[k].dim() >= 1}
    return sizes.pop() if len(sizes) == 1 else None
