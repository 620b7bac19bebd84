"""The fused LEAPS primitives as PyTorch custom ops with autograd, and the backend choice.

Two primitives carry every activation-sized byte of the LEAPS terms; everything else works on
vectors of per-channel statistics (see :mod:`leaps.losses`):

* ``channel_stats(xs, with_m2)``: for a list of ``B x C x S`` activations, the mean (and the
  centred sum of squares M2) of every row (layer, b, c), as one flat fp32 vector each
  (index ``off_l + b*C_l + c``). Its gradient is ``alpha + beta * x`` per row, one launch.
* ``frame_l1(z)``: for a ``B x T x P x Q`` last layer, the per-frame mean L1 distances
  ``D[b, i, j]`` (fp32). Its gradient is a sum of signs weighted by ``dL/dD``, one launch.

Backends (``backend=``):

* ``"triton"``: kernels in ``kernels/`` (``leaps.kernels``), registered here as
  ``torch.ops.leaps.triton_*``. CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``.
* ``"cuda"``: the compiled extension ``leaps._C`` (sources in ``csrc/``, registered as
  ``torch.ops.leaps.channel_stats`` ...), whatever the device: the name says "compiled", not
  "GPU". Its CPU kernels run on CPU tensors and its CUDA kernels (when it was built with them)
  on CUDA tensors; its Meta kernels serve torch.compile. ``"auto"`` picks it for CUDA tensors
  only; on CPU tensors it runs when asked for explicitly (tests, checks against the reference).
* ``"reference"``: plain torch (used by :mod:`leaps.losses` directly, not by these ops).
* ``"auto"``: for CUDA tensors cuda > triton > reference, degrading with one warning when a
  compiled extension or Triton is missing; for CPU tensors the reference (fused kernels are a
  GPU optimisation). Never fails at import.

Both backends share one autograd formula, registered for each op, so ``torch.compile`` (no
graph breaks: the ops are opaque) and CUDA-graph capture (no host syncs) work with either.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor

from . import _ext
from .constants import BACKENDS
from .errors import LeapsError, ShapeError

FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------
# Views: any activation as B x C x S, any last layer as B x T x P x Q, without copies
# --------------------------------------------------------------------------------------------

def as_rows(a: Tensor, channel_dim: int = 1) -> Tensor:
    """``a`` as a ``B x C x S`` view (S = every axis but batch and channel).

    NCDHW, channels_last_3d and B x N x C tokens (channel_dim=-1) are views; a layout whose
    non-channel axes cannot be merged into one stride is copied.
    """
    if a.dim() < 2:
        raise ShapeError(f"expected an activation with batch and channel axes, got {tuple(a.shape)}")
    channel_dim = channel_dim % a.dim()
    if channel_dim == 0:
        raise ShapeError("the channel axis cannot be the batch axis 0")
    moved = a.movedim(channel_dim, 1)
    if moved.dim() == 2:
        return moved.unsqueeze(2)
    try:
        return moved.view(moved.shape[0], moved.shape[1], -1)
    except RuntimeError:  # axes not mergeable (e.g. a strided slice of a channels-last tensor)
        return moved.reshape(moved.shape[0], moved.shape[1], -1)


# --------------------------------------------------------------------------------------------
# Backend choice
# --------------------------------------------------------------------------------------------

_TRITON_IMPORTABLE = importlib.util.find_spec("triton") is not None  # looks, does not import


def triton_importable() -> bool:
    return _TRITON_IMPORTABLE


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_runs_on(device: torch.device) -> bool:
    return triton_importable() and (device.type == "cuda" or (device.type == "cpu" and triton_interpreted()))


def _cuda_runs_on(device: torch.device) -> bool:
    if not _ext.available() or not hasattr(torch.ops.leaps, "channel_stats"):
        return False
    return device.type == "cpu" or (device.type == "cuda" and _ext.has_cuda())


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_backend(backend: str, like: Tensor) -> str:
    """The backend that will run for tensors like ``like``: "reference", "triton" or "cuda".

    Explicit choices that cannot run raise :class:`LeapsError`; ``"auto"`` never raises.
    """
    if backend not in BACKENDS:
        raise LeapsError(f"unknown loss backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device = like.device
    if backend == "reference":
        return backend
    if backend == "auto":
        if device.type != "cuda" or like.dtype not in FUSED_DTYPES:
            return "reference"
        if _cuda_runs_on(device):
            return "cuda"
        if _triton_runs_on(device):
            _warn_once("leaps: the C++/CUDA extension is not built with CUDA kernels; the fused losses use "
                       f"Triton ({_ext.BUILD_HINT.split(';')[1].strip()} with LEAPS_BUILD_EXT=cuda for the CUDA ones)")
            return "triton"
        _warn_once("leaps: neither the CUDA extension nor Triton is available; the LEAPS losses use the "
                   "plain-torch reference (slower). Install triton or build the extension.")
        return "reference"
    if like.dtype not in FUSED_DTYPES:
        raise LeapsError(f"backend={backend!r} supports float32, float16 and bfloat16 tensors, got {like.dtype}")
    if backend == "triton" and not _triton_runs_on(device):
        if not triton_importable():
            raise LeapsError("backend='triton' needs the triton package (pip install triton)")
        raise LeapsError(
            f"backend='triton' runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1), got {device.type}"
        )
    if backend == "cuda" and not _cuda_runs_on(device):
        if not _ext.available():
            raise LeapsError(f"backend='cuda' needs the compiled extension: {_ext.BUILD_HINT}")
        raise LeapsError(f"backend='cuda': the compiled extension has no kernels for {device.type} tensors; "
                         "rebuild with LEAPS_BUILD_EXT=cuda")
    return backend


CUDA_MAX_FRAMES = 64  # the CUDA frame_l1 kernels keep a frame tile per frame in shared memory


def frame_backend(which: str, requested: str, frames: Tensor) -> str:
    """``which`` for ``frame_l1`` of ``B x T x P x Q`` frames, or the next backend when the CUDA
    kernels cannot take T frames (``auto``); an explicit ``cuda`` request then raises."""
    if which != "cuda" or frames.device.type != "cuda" or frames.shape[1] <= CUDA_MAX_FRAMES:
        return which
    if requested == "cuda":
        raise LeapsError(f"backend='cuda' computes temporal coherence for at most {CUDA_MAX_FRAMES} frames of the "
                         f"last layer, got {frames.shape[1]}; use backend='triton' or 'auto'")
    return "triton" if _triton_runs_on(frames.device) else "reference"


# --------------------------------------------------------------------------------------------
# Triton ops
# --------------------------------------------------------------------------------------------

def _kernels():
    return importlib.import_module("leaps.kernels")


@torch.library.custom_op("leaps::triton_channel_stats", mutates_args=())
def _triton_channel_stats(xs: list[Tensor], with_m2: bool) -> tuple[Tensor, Tensor]:
    return _kernels().channel_stats(xs, with_m2)


@torch.library.custom_op("leaps::triton_channel_stats_backward", mutates_args=())
def _triton_channel_stats_backward(xs: list[Tensor], alpha: Tensor, beta: Optional[Tensor]) -> list[Tensor]:
    return _kernels().channel_stats_backward(xs, alpha, beta)


@torch.library.custom_op("leaps::triton_frame_l1", mutates_args=())
def _triton_frame_l1(z: Tensor) -> Tensor:
    return _kernels().frame_l1(z)


@torch.library.custom_op("leaps::triton_frame_l1_backward", mutates_args=())
def _triton_frame_l1_backward(z: Tensor, w: Tensor) -> Tensor:
    return _kernels().frame_l1_backward(z, w)


@_triton_channel_stats.register_fake
def _(xs, with_m2):
    total = sum(x.shape[0] * x.shape[1] for x in xs)
    return xs[0].new_empty(total, dtype=torch.float32), xs[0].new_empty(total if with_m2 else 0, dtype=torch.float32)


@_triton_channel_stats_backward.register_fake
def _(xs, alpha, beta):
    return [torch.empty_like(x) for x in xs]


@_triton_frame_l1.register_fake
def _(z):
    return z.new_empty((z.shape[0], z.shape[1], z.shape[1]), dtype=torch.float32)


@_triton_frame_l1_backward.register_fake
def _(z, w):
    return torch.empty_like(z)


# --------------------------------------------------------------------------------------------
# One autograd formula for both backends
# --------------------------------------------------------------------------------------------

_OPS = {
    "triton": ("triton_channel_stats", "triton_channel_stats_backward", "triton_frame_l1", "triton_frame_l1_backward"),
    "cuda": ("channel_stats", "channel_stats_backward", "frame_l1", "frame_l1_backward"),
}


def _op(backend: str, index: int):
    return getattr(torch.ops.leaps, _OPS[backend][index])


_constant_cache: dict = {}


def _tracing() -> bool:
    """True under torch.compile / AOT tracing, where tensors made now are fake and must not be kept."""
    return torch.compiler.is_compiling() or torch._guards.detect_fake_mode() is not None


def cached_constants(key, build):
    """``build()`` (small index/scale tensors that depend only on shapes), memoised per ``key`` so
    that later eager steps make no host-to-device copy; rebuilt, never stored, while tracing."""
    if _tracing():
        return build()
    value = _constant_cache.get(key)
    if value is None:
        value = _constant_cache[key] = build()
    return value


def _inverse_sizes(sizes: Sequence[tuple[int, int, int]], device: torch.device) -> Tensor:
    """1/S of every row of the ``(B, C, S)`` tensors ``sizes``, flat."""
    sizes = tuple(sizes)
    return cached_constants(
        ("inverse_sizes", device, sizes),
        lambda: torch.cat([torch.full((b * c,), 1.0 / s) for b, c, s in sizes]).to(device),
    )


def _stats_setup(backend: str):
    def setup_context(ctx, inputs, output):
        xs, with_m2 = inputs
        mean, _ = output
        ctx.with_m2 = with_m2
        ctx.layouts = [(x.shape, x.dtype) for x in xs]
        # Means alone (L_prim) need no activation in backward: keep none alive.
        if with_m2:
            ctx.save_for_backward(*xs, mean)
        else:
            ctx.save_for_backward(mean)

    def backward(ctx, g_mean, g_m2):
        *xs, mean = ctx.saved_tensors
        if g_mean is None:
            g_mean = torch.zeros_like(mean)
        sizes = [(shape[0], shape[1], shape[2]) for shape, _ in ctx.layouts]
        alpha = g_mean * _inverse_sizes(sizes, mean.device)
        if not (ctx.with_m2 and g_m2 is not None):
            # d mean / dx = 1/S: a per-row constant, returned as a broadcast view (as torch's own
            # mean backward does), so no activation-sized tensor is written here; autograd adds
            # it where the activation's other gradient is formed.
            rows = alpha.split([b * c for b, c, _ in sizes])
            return [r.view(b, c, 1).to(dtype).expand(b, c, s)
                    for r, (b, c, s), (_, dtype) in zip(rows, sizes, ctx.layouts)], None
        # d M2 / dx = 2 (x - mean): alpha gets -2 g mean, beta 2 g. One launch for every layer.
        alpha = alpha - 2.0 * g_m2 * mean
        return _op(backend, 1)(list(xs), alpha, 2.0 * g_m2), None

    return setup_context, backward


def _frame_setup(backend: str):
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    def backward(ctx, g_d):
        (z,) = ctx.saved_tensors
        return _op(backend, 3)(z, g_d + g_d.transpose(1, 2))

    return setup_context, backward


def _register_autograd(backend: str) -> None:
    names = _OPS[backend]
    setup, backward = _stats_setup(backend)
    torch.library.register_autograd(f"leaps::{names[0]}", backward, setup_context=setup)
    setup, backward = _frame_setup(backend)
    torch.library.register_autograd(f"leaps::{names[2]}", backward, setup_context=setup)


_register_autograd("triton")
_registered_cuda = False


def _ensure_cuda_autograd() -> None:
    """The C++ ops exist only once leaps._C is loaded; attach the autograd formula then, once."""
    global _registered_cuda
    if not _registered_cuda and _ext.available() and hasattr(torch.ops.leaps, "channel_stats"):
        _register_autograd("cuda")
        _registered_cuda = True


# At import, not at first use: register_autograd cannot run inside a torch.compile trace.
_ensure_cuda_autograd()


# --------------------------------------------------------------------------------------------
# Differentiable entry points
# --------------------------------------------------------------------------------------------

def channel_stats(xs: Sequence[Tensor], with_m2: bool, backend: str) -> tuple[Tensor, Tensor]:
    """Row means (and M2) of the ``B x C x S`` tensors ``xs`` with a fused backend, differentiable."""
    if backend == "cuda":
        _ensure_cuda_autograd()
    return _op(backend, 0)(list(xs), with_m2)


def frame_l1(z: Tensor, backend: str) -> Tensor:
    """Per-frame mean L1 distances ``B x T x T`` of a ``B x T x P x Q`` view, differentiable."""
    if backend == "cuda":
        _ensure_cuda_autograd()
    return _op(backend, 2)(z)
