"""torch.library.opcheck of every LEAPS custom op: schema, autograd registration, fake/Meta kernels
and AOT dispatch (dynamic shapes), which torch.compile and CUDA graphs rely on.

Two families of ops:
  * the compiled extension leaps._C (``torch.ops.leaps.channel_stats`` ..., ``backend="cuda"``):
    on CPU tensors (ids ``ext-cpu``, its CPU kernels) and CUDA tensors (``ext-cuda``, marked gpu);
  * the Triton ops ``torch.ops.leaps.triton_*`` (registered by leaps.ops): on CUDA tensors, and on
    CPU tensors under TRITON_INTERPRET=1 (conftest sets it without a GPU); skipped without triton.
"""

import importlib.util

import pytest
import torch
from torch.library import opcheck

from leaps import _ext, ops  # noqa: F401  (leaps.ops registers the Triton ops and every autograd formula)

HAS_EXT_OPS = _ext.available() and hasattr(torch.ops.leaps, "channel_stats")
HAS_TRITON = importlib.util.find_spec("triton") is not None
GPU = torch.cuda.is_available()


def _families():
    gpu = pytest.mark.gpu
    return [
        pytest.param("", "cpu", id="ext-cpu", marks=pytest.mark.skipif(not HAS_EXT_OPS, reason=_ext.BUILD_HINT)),
        pytest.param("", "cuda", id="ext-cuda", marks=[gpu, pytest.mark.skipif(
            not (GPU and HAS_EXT_OPS and _ext.has_cuda()), reason="needs a GPU and leaps._C built with CUDA kernels")]),
        pytest.param("triton_", "cpu", id="triton-cpu", marks=pytest.mark.skipif(
            not (HAS_TRITON and ops.triton_interpreted()), reason="needs triton, on CPU under TRITON_INTERPRET=1")),
        pytest.param("triton_", "cuda", id="triton-cuda", marks=[gpu, pytest.mark.skipif(
            not (GPU and HAS_TRITON), reason="needs a GPU and triton")]),
    ]


FAMILIES = _families()
DTYPES = [pytest.param(torch.float32, id="fp32"), pytest.param(torch.float16, id="fp16"),
          pytest.param(torch.bfloat16, id="bf16")]


def _op(prefix, name):
    return getattr(torch.ops.leaps, prefix + name).default


def _randn(*shape, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)


def _layers(dtype, device, requires_grad):
    """Small odd B x C x S views: contiguous, channels-last (stride(C) == 1), a strided slice."""
    xs = [
        _randn(2, 3, 5, dtype=dtype, device=device, seed=0),
        _randn(1, 7, 3, dtype=dtype, device=device, seed=1).transpose(1, 2),
        _randn(2, 6, 9, dtype=dtype, device=device, seed=2)[:, ::2, 1::2],
    ]
    return [x.detach().requires_grad_(requires_grad) for x in xs]


def _frames(dtype, device, requires_grad):
    """A small odd B x T x P x Q view whose T and P axes are swapped in memory."""
    z = _randn(2, 3, 3, 5, dtype=dtype, device=device, seed=3).transpose(1, 2)
    return z.detach().requires_grad_(requires_grad)


@pytest.mark.parametrize("prefix,device", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_m2", [True, False], ids=["m2", "mean"])
def test_channel_stats(prefix, device, dtype, with_m2):
    opcheck(_op(prefix, "channel_stats"), (_layers(dtype, device, True), with_m2))


@pytest.mark.parametrize("prefix,device", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_beta", [True, False], ids=["beta", "no-beta"])
def test_channel_stats_backward(prefix, device, dtype, with_beta):
    xs = _layers(dtype, device, False)
    n = sum(x.shape[0] * x.shape[1] for x in xs)
    alpha = _randn(n, dtype=torch.float32, device=device, seed=4)
    beta = _randn(n, dtype=torch.float32, device=device, seed=5) if with_beta else None
    opcheck(_op(prefix, "channel_stats_backward"), (xs, alpha, beta))


@pytest.mark.parametrize("prefix,device", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_frame_l1(prefix, device, dtype):
    opcheck(_op(prefix, "frame_l1"), (_frames(dtype, device, True),))


@pytest.mark.parametrize("prefix,device", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_frame_l1_backward(prefix, device, dtype):
    z = _frames(dtype, device, False)
    W = _randn(z.shape[0], z.shape[1], z.shape[1], dtype=torch.float32, device=device, seed=6)
    opcheck(_op(prefix, "frame_l1_backward"), (z, W))


def test_every_leaps_op_is_checked():
    # A new operator in csrc/ops.cpp or leaps/ops.py must get an opcheck test here.
    checked = {"channel_stats", "channel_stats_backward", "frame_l1", "frame_l1_backward"}
    names = {name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names() if name.startswith("leaps::")}
    expected = {f"triton_{n}" for n in checked} | (checked if HAS_EXT_OPS else set())
    assert names == expected
