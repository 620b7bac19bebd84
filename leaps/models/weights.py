"""Loading and saving model checkpoints from local files, with errors a user can act on."""

from __future__ import annotations

import functools
import importlib
import os
import pickle
import warnings
from collections.abc import Mapping
from typing import Callable, Union

import torch
from torch import nn

from leaps.errors import UntrustedWeightsError, WeightsError

PathLike = Union[str, os.PathLike]

#: Keys under which common training frameworks nest the state dict
#: (pytorchvideo .pyth: "model_state"; Lightning and many repos: "state_dict"; others: "model").
_NESTING_KEYS = ("model_state", "state_dict", "model")
#: Prefixes added by wrappers (DataParallel / DDP: "module."; Lightning modules: "model.").
_WRAPPER_PREFIXES = ("module.", "model.")
_SHOWN = 5  # how many offending keys an error message lists

#: Globals, by their pickled name, that a checkpoint may reference without trust_weights: what
#: official checkpoints hold besides tensors (pytorchvideo / SlowFast / TimeSformer: numpy
#: epoch counters and arrays, their configs as YAML strings; many repositories: an argparse
#: Namespace). None of them runs code when unpickled: they rebuild plain data. (torch cannot
#: rebuild dict subclasses such as yacs' CfgNode without a full unpickle.) numpy 1.x pickles
#: numpy.core.*, numpy 2.x numpy._core.*; both names are listed.
_ALLOWED_NAMES = (
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "argparse.Namespace",
)
#: numpy >= 1.25 pickles dtypes of arrays as classes of numpy.dtypes (plain data types only).
_NUMPY_DTYPE_CLASSES = (
    "Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float16", "Float32", "Float64", "LongDouble", "Complex64", "Complex128", "Byte", "UByte",
    "Short", "UShort", "Int", "UInt", "Long", "ULong", "LongLong", "ULongLong",
)


@functools.lru_cache(maxsize=1)
def allowed_globals() -> list:
    """The allow-list as ``torch.serialization.safe_globals`` takes it: ``(object, pickled name)``.

    Objects whose module is not installed are left out: such a file could not be unpickled anyway.
    """
    found = []
    names = list(_ALLOWED_NAMES) + [f"numpy.dtypes.{c}DType" for c in _NUMPY_DTYPE_CLASSES]
    for name in names:
        module, _, attr = name.rpartition(".")
        try:
            with warnings.catch_warnings():  # numpy 2 warns on importing its numpy.core alias
                warnings.simplefilter("ignore")
                obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        found.append((obj, name))
    return found


def save_weights(model: nn.Module, path: PathLike) -> None:
    """Save ``model``'s state dict to ``path`` (parent folders are created)."""
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    torch.save(model.state_dict(), path)


def load_weights(model: nn.Module, path: PathLike, *, trust_weights: bool = False,
                 convert: Callable[[dict], dict] | None = None) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (strictly) and return ``model``.

    Accepts a plain state dict, a dict nesting it under ``model_state`` / ``state_dict`` /
    ``model``, or a pickled module; strips ``module.`` / ``model.`` prefixes when that makes the
    keys match. Raises :class:`WeightsError` if the file is missing, unreadable, or does not fit
    the model (naming the missing, unexpected and mis-shaped keys).

    Loading runs no code from the file: it is unpickled with ``weights_only=True`` and only the
    globals of :func:`allowed_globals` (what the official checkpoints of the registered models
    hold besides tensors: numpy scalars and arrays, argparse/yacs configs). A file referencing
    anything else raises :class:`UntrustedWeightsError` naming those globals, unless
    ``trust_weights=True`` (a full unpickle: only for files from a source you trust).

    ``convert`` renames a checkpoint written by another code base to the model's keys (e.g.
    SlowFast's MViT names to torchvision's); wrapper prefixes common to every key come off first.
    """
    shown = os.fspath(path)
    if os.path.isdir(path):
        raise WeightsError(f"weights path {shown} is a directory, not a checkpoint file")
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {shown}")
    state = _extract_state_dict(_read(path, trust_weights), shown)
    expected = model.state_dict()
    if convert is not None:
        # the converter knows the other code base's names, not its wrappers': unwrap, then rename
        state = convert(_strip_common_prefixes(state))
    state = _strip_prefixes(state, expected)
    _check_fits(model, state, expected, shown)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # belt and braces: _check_fits should have caught it
        raise WeightsError(f"weights file {shown} does not fit the model: {exc}") from exc
    return model


def _read(path: PathLike, trust_weights: bool = False) -> object:
    shown = os.fspath(path)
    if trust_weights:
        # The user vouched for the file: a full unpickle, which can run code stored in it.
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"cannot read weights file {shown}: {_summary(exc)}") from exc
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses pickles that reference globals outside the allow-list (a crafted
        # __reduce__ shows up here). Garbage bytes raise the same exception type with other
        # messages ("Unsupported operand", "invalid load key").
        if "global" in str(exc).lower():
            raise UntrustedWeightsError(_untrusted_message(path, exc)) from exc
        raise WeightsError(f"cannot read weights file {shown}: {_summary(exc)}") from exc
    except Exception as exc:  # noqa: BLE001 - truncated zip, EOF, wrong format, ...
        raise WeightsError(f"cannot read weights file {shown}: {_summary(exc)}") from exc


def _untrusted_message(path: PathLike, exc: BaseException) -> str:
    allowed = {name for _, name in allowed_globals()}
    try:
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path) if n not in allowed]
    except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be scanned; the error names one
        names = []
    if not names:
        cause = next((line.strip() for line in str(exc).splitlines() if "global" in line.lower()), "")
        names = [cause] if cause else ["(unknown)"]
    return (
        f"weights file {os.fspath(path)} references Python objects that leaps does not load from "
        f"an untrusted file, because unpickling them can run code: {', '.join(names[:_SHOWN])}. "
        f"If you trust the file's source, pass trust_weights=True (--trust-weights)"
    )


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


def _strip_common_prefixes(state: dict) -> dict:
    """Strip each wrapper prefix that every key carries (DataParallel, Lightning)."""
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
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
