"""Tests of the optional C++ extension (csrc/, leaps._C): torch.ops.leaps.channel_moments.

Skipped when the extension is not built (build it with
``LEAPS_BUILD_EXT=1 pip install --no-build-isolation -e .``).
"""

import pytest
import torch

from leaps import _ext

pytestmark = pytest.mark.skipif(
    not _ext.available(),
    reason=_ext.BUILD_HINT,
)

_cuda_skip = pytest.mark.skipif(
    not (torch.cuda.is_available() and _ext.available() and _ext.has_cuda()),
    reason="needs a CUDA device and leaps._C built with its CUDA kernels",
)


def requires_cuda(fn):
    return pytest.mark.gpu(_cuda_skip(fn))


def reference(x, channel_dim):
    """Per-channel mean and biased variance with torch, in float64."""
    dim = channel_dim % x.dim()
    dims = [d for d in range(x.dim()) if d != dim]
    xd = x.double()
    return xd.mean(dims), xd.var(dims, unbiased=False)


def check(x, channel_dim, rtol, atol):
    mean, var = _ext.channel_moments(x, channel_dim)
    c = x.shape[channel_dim]
    assert mean.shape == (c,) and var.shape == (c,)
    assert mean.dtype == x.dtype and var.dtype == x.dtype
    assert mean.device == x.device and var.device == x.device
    ref_mean, ref_var = reference(x, channel_dim)
    torch.testing.assert_close(mean.double().cpu(), ref_mean.cpu(), rtol=rtol, atol=atol)
    torch.testing.assert_close(var.double().cpu(), ref_var.cpu(), rtol=rtol, atol=atol)


TIGHT = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-12, 1e-13)}
LOOSE = {torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}

SHAPES_CH1 = [
    (1, 3, 5, 7, 9),  # odd sizes, batch 1 (video B x C x T x H x W)
    (2, 17, 3, 4, 5),
    (1, 64, 8, 14, 14),
    (3, 5, 1, 1, 1),  # inner run of length 1 ("rows" path)
    (2, 4, 3),  # inner run shorter than the "runs" threshold
    (7, 3),  # B x C
    (1, 2, 70000),  # inner run longer than one work tile
    (3, 2, 40000),  # several tiles along the rows
]
SHAPES_LAST = [
    (1, 5, 7, 9, 3),  # B x T x H x W x C
    (2, 3, 4, 5, 17),
    (2, 197, 768),  # B x N x C tokens
    (1, 50, 13),
    (5000, 10),  # many rows, few channels
    (3, 5000),  # more channels than one channel block
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES_CH1)
def test_channel_dim_1(shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype) * 3 + 0.5
    check(x, 1, *TIGHT[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES_LAST)
def test_channel_dim_last(shape, dtype):
    torch.manual_seed(1)
    x = torch.randn(shape, dtype=dtype) * 2 - 1
    check(x, -1, *TIGHT[dtype])
    check(x, x.dim() - 1, *TIGHT[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_other_channel_dims(dtype):
    torch.manual_seed(2)
    x = torch.randn(3, 4, 5, 6, dtype=dtype)
    for d in range(-4, 4):
        check(x, d, *TIGHT[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous(dtype):
    torch.manual_seed(3)
    base = torch.randn(2, 9, 6, 10, 8, dtype=dtype)
    rtol, atol = TIGHT[dtype]
    # permuted (dense, no copy needed): B x T x H x W x C seen as B x C x T x H x W
    permuted = base.permute(0, 4, 1, 2, 3)
    assert not permuted.is_contiguous()
    check(permuted, 1, rtol, atol)
    check(base.permute(0, 2, 3, 4, 1), -1, rtol, atol)
    # channels_last_3d memory format
    check(base.contiguous(memory_format=torch.channels_last_3d), 1, rtol, atol)
    # slices with gaps (copy needed)
    check(base[:, ::2, 1:5, :, 1::3], 1, rtol, atol)
    check(base[..., ::2], -1, rtol, atol)
    check(base.transpose(2, 3)[:, 1:], 1, rtol, atol)
    # expanded (stride 0) input
    check(torch.randn(1, 4, 1, dtype=dtype).expand(3, 4, 5), 1, rtol, atol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,channel_dim", [((2, 17, 3, 4, 5), 1), ((2, 197, 64), -1)])
def test_reduced_precision(shape, channel_dim, dtype):
    torch.manual_seed(4)
    x = (torch.randn(shape) * 2 + 1).to(dtype)
    check(x, channel_dim, *LOOSE[dtype])


@pytest.mark.parametrize("channel_dim,shape", [(1, (2, 8, 4, 16, 16)), (-1, (2, 4, 16, 16, 8))])
def test_large_mean_is_stable(channel_dim, shape):
    # float32 data with |mean| >> std: a naive E[x^2] - E[x]^2 loses all digits here.
    torch.manual_seed(5)
    x = (1e4 + torch.randn(shape, dtype=torch.float64) * 0.1).float()
    mean, var = _ext.channel_moments(x, channel_dim)
    ref_mean, ref_var = reference(x, channel_dim)  # float64 statistics of the float32 data
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-7, atol=0.0)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-4, atol=0.0)


def test_constant_input_has_zero_variance():
    x = torch.full((2, 3, 5, 7), 123.456)
    mean, var = _ext.channel_moments(x, 1)
    torch.testing.assert_close(mean, torch.full((3,), 123.456))
    assert torch.all(var >= 0) and torch.all(var < 1e-9)


def test_matches_batchnorm_statistics():
    torch.manual_seed(6)
    x = torch.randn(2, 6, 3, 5, 5)
    bn = torch.nn.BatchNorm3d(6, momentum=1.0)  # running stats := batch stats
    bn.train()(x)
    mean, var = _ext.channel_moments(x, 1)
    n = x.numel() / x.shape[1]
    torch.testing.assert_close(mean, bn.running_mean, rtol=1e-5, atol=1e-6)
    # BatchNorm stores the unbiased variance in running_var.
    torch.testing.assert_close(var * n / (n - 1), bn.running_var, rtol=1e-5, atol=1e-6)


def test_deterministic_across_thread_counts():
    torch.manual_seed(7)
    x = torch.randn(4, 8, 16, 32, 32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = _ext.channel_moments(x, 1)
        torch.set_num_threads(max(2, old))
        b = _ext.channel_moments(x, 1)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_empty_inputs():
    mean, var = _ext.channel_moments(torch.empty(0, 3, 4), 1)
    assert mean.shape == (3,) and torch.isnan(mean).all() and torch.isnan(var).all()
    mean, var = _ext.channel_moments(torch.empty(2, 0, 4), 1)
    assert mean.shape == (0,) and var.shape == (0,)


def test_bad_inputs():
    with pytest.raises(RuntimeError, match="floating point"):
        _ext.channel_moments(torch.ones(2, 3, dtype=torch.int64), 1)
    with pytest.raises(IndexError):
        _ext.channel_moments(torch.ones(2, 3), 2)


def test_direct_op_and_meta():
    x = torch.randn(2, 3, 4)
    mean, var = torch.ops.leaps.channel_moments(x)  # schema default channel_dim=1
    ref_mean, ref_var = reference(x, 1)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-5, atol=1e-6)
    meta_mean, meta_var = torch.ops.leaps.channel_moments(torch.empty(2, 5, 7, device="meta"), -1)
    assert meta_mean.shape == (7,) and meta_var.device.type == "meta"


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "shape,channel_dim",
    [((1, 3, 5, 7, 9), 1), ((2, 17, 3, 4, 5), 1), ((2, 3, 4, 5, 17), -1), ((2, 197, 768), -1)],
)
def test_cuda_matches_reference(shape, channel_dim, dtype):
    torch.manual_seed(8)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 1).to(dtype).cuda()
    rtol, atol = TIGHT.get(dtype) or LOOSE[dtype]
    check(x, channel_dim, rtol * 10, atol * 10)
    # non-contiguous: swap the first and last axes and take every other element of the last
    check(x.transpose(0, -1)[..., ::2], 1, rtol * 10, atol * 10)


@requires_cuda
def test_cuda_large_mean_is_stable():
    torch.manual_seed(9)
    x = (1e4 + torch.randn(2, 8, 4, 16, 16, dtype=torch.float64) * 0.1).float().cuda()
    mean, var = _ext.channel_moments(x, 1)
    ref_mean, ref_var = reference(x, 1)
    torch.testing.assert_close(mean.double().cpu(), ref_mean.cpu(), rtol=1e-7, atol=0.0)
    torch.testing.assert_close(var.double().cpu(), ref_var.cpu(), rtol=1e-3, atol=0.0)
