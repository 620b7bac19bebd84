"""Optional compiled operators (the ``leaps._C`` extension, sources in ``csrc/``).

The extension is not built by a default install. Build it with::

    LEAPS_BUILD_EXT=1 pip install --no-build-isolation -e .

Importing ``leaps._C`` registers the operators with PyTorch as ``torch.ops.leaps.*``
(``channel_stats``, ``channel_stats_backward``, ``frame_l1``, ``frame_l1_backward``); they are
what ``backend="cuda"`` runs (see :mod:`leaps.ops`). A library built with CMake
(``CMakeLists.txt``) can be used instead by pointing the environment variable
``LEAPS_EXT_LIBRARY`` at the shared library (e.g. ``build/libleaps_ops.so``).

Nothing here fails at import time: :func:`available` says whether the operators can be used and
:func:`load_error` why not (not built, or built but not loadable, e.g. against another torch).
"""

from __future__ import annotations

import importlib
import os

import torch

__all__ = ["available", "has_cuda", "load", "load_error", "BUILD_HINT"]

BUILD_COMMAND = "LEAPS_BUILD_EXT=1 pip install --no-build-isolation -e ."
BUILD_HINT = (
    "the LEAPS C++ extension (leaps._C) is not built; build it with "
    f"`{BUILD_COMMAND}` "
    "(add -v to see compiler output, or LEAPS_BUILD_EXT=strict to make build errors fatal)"
)

_MODULE = "leaps._C"
_PROBE_OP = "channel_stats"  # any operator of the extension: present once it is registered

_state: dict = {"loaded": None, "error": None, "has_cuda": False}


def _import_extension():
    """``import leaps._C`` (a seam: the tests replace it to simulate a missing or broken build)."""
    return importlib.import_module(_MODULE)


def _op_registered() -> bool:
    try:
        return hasattr(torch.ops.leaps, _PROBE_OP)
    except Exception:  # pragma: no cover - defensive: torch.ops lookups should not fail
        return False


def _import_failure(exc: BaseException) -> str:
    """Why ``import leaps._C`` failed, in words: not built at all, or built but not loadable."""
    if isinstance(exc, ModuleNotFoundError) and exc.name == _MODULE:
        return BUILD_HINT
    # The module exists but cannot be loaded: e.g. built against another torch (undefined symbol,
    # ABI mismatch) or a missing shared library. Rebuilding against the installed torch fixes it.
    return (f"import {_MODULE} failed: {type(exc).__name__}: {exc} "
            f"(rebuild it against the installed torch with `{BUILD_COMMAND}`)")


def load() -> bool:
    """Loads the extension once; returns True when ``torch.ops.leaps.*`` can be used.

    Tries ``import leaps._C`` first, then the shared library named by ``LEAPS_EXT_LIBRARY``.
    The result is cached; the reason for a failure is kept in :func:`load_error`.
    """
    if _state["loaded"] is not None:
        return _state["loaded"]
    errors = []
    try:
        module = _import_extension()
        _state["has_cuda"] = bool(getattr(module, "has_cuda", lambda: False)())
    except Exception as exc:  # not built, or an ABI mismatch with the installed torch
        errors.append(_import_failure(exc))
        library = os.environ.get("LEAPS_EXT_LIBRARY")
        if library:
            try:
                torch.ops.load_library(library)
            except Exception as exc2:
                errors.append(f"torch.ops.load_library({library!r}) (LEAPS_EXT_LIBRARY) failed: {exc2!r}")
    ok = _op_registered()
    _state["loaded"] = ok
    _state["error"] = None if ok else "; ".join(errors) or f"{_MODULE} loaded but registered no operators"
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
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"leaps::{_PROBE_OP}", "CUDA"))
    except Exception:
        return False


def load_error() -> str | None:
    """Why :func:`load` failed (None when it succeeded or was not tried yet)."""
    return _state["error"]
