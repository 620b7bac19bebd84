"""Optional compiled operators (the ``leaps._C`` extension, sources in ``csrc/``).

The extension is not built by a default install. Build it with::

    LEAPS_BUILD_EXT=1 pip install --no-build-isolation -e .

Importing ``leaps._C`` registers the operators with PyTorch as ``torch.ops.leaps.*``. A library
built with CMake (``CMakeLists.txt``) can be used instead by pointing the environment variable
``LEAPS_EXT_LIBRARY`` at the shared library (e.g. ``build/libleaps_ops.so``).

Nothing here fails at import time: :func:`available` says whether the operators can be used and
the wrappers raise :class:`RuntimeError` with build instructions when they cannot.
"""

from __future__ import annotations

import os

import torch

__all__ = ["available", "channel_moments", "has_cuda", "load", "BUILD_HINT"]

BUILD_HINT = (
    "the LEAPS C++ extension (leaps._C) is not built; build it with "
    "`LEAPS_BUILD_EXT=1 pip install --no-build-isolation -e .` "
    "(add -v to see compiler output, or LEAPS_BUILD_EXT=strict to make build errors fatal)"
)

_state: dict = {"loaded": None, "error": None, "has_cuda": False}


def _op_registered() -> bool:
    try:
        return hasattr(torch.ops.leaps, "channel_moments")
    except Exception:  # pragma: no cover - defensive: torch.ops lookups should not fail
        return False


def load() -> bool:
    """Loads the extension once; returns True when ``torch.ops.leaps.*`` can be used.

    Tries ``import leaps._C`` first, then the shared library named by ``LEAPS_EXT_LIBRARY``.
    The result is cached; the reason for a failure is kept in :func:`load_error`.
    """
    if _state["loaded"] is not None:
        return _state["loaded"]
    errors = []
    try:
        from leaps import _C  # noqa: F401  (registers torch.ops.leaps.* at import)

        _state["has_cuda"] = bool(getattr(_C, "has_cuda", lambda: False)())
    except Exception as exc:  # ImportError, or an ABI mismatch with the installed torch
        errors.append(f"import leaps._C: {exc!r}")
        library = os.environ.get("LEAPS_EXT_LIBRARY")
        if library:
            try:
                torch.ops.load_library(library)
            except Exception as exc2:
                errors.append(f"torch.ops.load_library({library!r}): {exc2!r}")
    ok = _op_registered()
    _state["loaded"] = ok
    _state["error"] = None if ok else "; ".join(errors) or "operators not registered"
    return ok


def available() -> bool:
    """True when the compiled operators are available (loads the extension if needed)."""
    return load()


def has_cuda() -> bool:
    """True when the loaded extension has CUDA kernels."""
    if not load():
        return False
    if _state["has_cuda"]:
        return True
    try:  # e.g. a CMake-built library loaded through LEAPS_EXT_LIBRARY
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key("leaps::channel_moments", "CUDA"))
    except Exception:
        return False


def load_error() -> str | None:
    """Why :func:`load` failed (None when it succeeded or was not tried yet)."""
    return _state["error"]


def _require() -> None:
    if not load():
        raise RuntimeError(f"{BUILD_HINT}. Cause: {_state['error']}")


def channel_moments(x: torch.Tensor, channel_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of ``x`` over every axis but ``channel_dim``.

    Equals ``(x.mean(dims), x.var(dims, unbiased=False))`` with ``dims`` all axes except
    ``channel_dim`` (BatchNorm batch statistics). Accepts any strides and float32, float64,
    float16 and bfloat16 (accumulated in float32, float64 for float64 input); results have
    the input's dtype and device. Not differentiable.

    Raises:
        RuntimeError: when the extension is not built (with instructions to build it), or the
            tensor is on a device without a kernel (e.g. CUDA in a CPU-only build).
        IndexError / RuntimeError (from the operator): bad ``channel_dim`` or a tensor that is
            not floating point.
    """
    _require()
    try:
        mean, var = torch.ops.leaps.channel_moments(x, channel_dim)
    except NotImplementedError as exc:  # no kernel for this device in this build
        raise RuntimeError(
            f"leaps._C has no channel_moments kernel for {x.device.type} tensors"
            + (
                "; rebuild with the CUDA kernels: "
                "`LEAPS_BUILD_EXT=cuda pip install --no-build-isolation -e .`"
                if x.is_cuda
                else ""
            )
        ) from exc
    return mean, var
