"""Tests of the compiled extension (csrc/, leaps._C): the torch.ops.leaps.* operators on their own
against plain torch, and how leaps._ext reports a missing or broken build.

``backend="cuda"`` means "the compiled extension", not "a GPU": its CPU kernels run on CPU tensors
(test ids ``ext-cpu``) and its CUDA kernels on CUDA tensors (``ext-cuda``, marked gpu). The operator
tests skip when the extension is not built (``LEAPS_BUILD_EXT=1 pip install --no-build-isolation -e .``).
"""

import pytest
import torch

from leaps import _ext

HAS_EXT_OPS = _ext.available() and hasattr(torch.ops.leaps, "channel_stats")
needs_ext = pytest.mark.skipif(not HAS_EXT_OPS, reason=_ext.BUILD_HINT)

EXT_DEVICES = [
    pytest.param("cpu", marks=needs_ext, id="ext-cpu"),
    pytest.param("cuda", id="ext-cuda", marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not (torch.cuda.is_available() and HAS_EXT_OPS and _ext.has_cuda()),
                           reason="needs a CUDA device and leaps._C built with its CUDA kernels"),
    ]),
]
DTYPES = [pytest.param(torch.float32, id="fp32"), pytest.param(torch.float16, id="fp16"),
          pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float64, id="fp64")]


def _tol(device):
    # CPU kernels accumulate in double, CUDA kernels in float (both from the exact input values).
    return {"rtol": 1e-5, "atol": 1e-5} if device == "cpu" else {"rtol": 1e-4, "atol": 1e-4}


def _out_tol(dtype):
    # Gradients are formed in float and rounded once to the input dtype: one ulp of fp16 / bf16.
    return {"rtol": 1e-5, "atol": 1e-6} if dtype in (torch.float32, torch.float64) else {"rtol": 1e-2, "atol": 1e-3}


def _randn(*shape, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 1.5 + 0.3).to(device=device, dtype=dtype)


def _layers(dtype, device):
    """B x C x S views of every layout the kernels distinguish, with odd sizes."""
    r = lambda *shape, seed: _randn(*shape, dtype=dtype, device=device, seed=seed)  # noqa: E731
    return [
        r(2, 5, 7, seed=0),                          # rows: S is the fastest axis
        r(2, 9, 5, seed=1).transpose(1, 2),          # cols: channels-last / tokens (stride(C) == 1)
        r(2, 6, 14, seed=2)[:, ::2, 1::3],           # strided slice (not dense)
        r(3, 4, 1, seed=3),                          # a single position
        r(2, 70, 3, seed=4),                         # more channels than one CPU channel block
        r(1, 2, 20000, seed=5),                      # a row longer than one CUDA split
    ]


def _frames(dtype, device):
    """B x T x P x Q views: contiguous, permuted, sliced, one frame, more features than one chunk."""
    r = lambda *shape, seed: _randn(*shape, dtype=dtype, device=device, seed=seed)  # noqa: E731
    return [
        r(2, 5, 3, 7, seed=0),
        r(2, 3, 5, 7, seed=1).transpose(1, 2),
        r(1, 4, 6, 9, seed=2)[:, :, ::2, 1::2],
        r(3, 1, 2, 2, seed=3),
        r(1, 3, 40, 30, seed=4),
    ]


def _is_dense(x):
    """True when x covers its memory without gaps or overlaps (in some axis order)."""
    expected = 1
    for d in sorted(range(x.dim()), key=x.stride):
        if x.size(d) != 1 and x.stride(d) != expected:
            return False
        expected *= x.size(d)
    return True


def _stats_reference(x):
    xd = x.double()
    mean = xd.mean(2)
    return mean.flatten(), ((xd - mean.unsqueeze(2)) ** 2).sum(2).flatten()


# --------------------------------------------------------------------------------------------
# channel_stats / channel_stats_backward
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", EXT_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_channel_stats_matches_torch(device, dtype):
    xs = _layers(dtype, device)
    mean, m2 = torch.ops.leaps.channel_stats(xs, True)
    ref = [_stats_reference(x) for x in xs]
    assert mean.dtype == m2.dtype == torch.float32 and mean.device.type == device
    torch.testing.assert_close(mean.double().cpu(), torch.cat([m for m, _ in ref]).cpu(), **_tol(device))
    torch.testing.assert_close(m2.double().cpu(), torch.cat([s for _, s in ref]).cpu(), **_tol(device))
    mean_only, no_m2 = torch.ops.leaps.channel_stats(xs, False)
    assert no_m2.shape == (0,)
    torch.testing.assert_close(mean_only, mean, rtol=0, atol=0)


@pytest.mark.parametrize("device", EXT_DEVICES)
def test_channel_stats_is_stable_for_large_offsets(device):
    # |mean| >> std: a one-pass E[x^2] - E[x]^2 would lose every digit of m2 in float.
    x = (1e4 + _randn(2, 3, 4096, dtype=torch.float64, device="cpu", seed=6) * 0.1).float().to(device)
    _, m2 = torch.ops.leaps.channel_stats([x], True)
    torch.testing.assert_close(m2.double().cpu(), _stats_reference(x)[1].cpu(), rtol=1e-3, atol=0.0)


@pytest.mark.parametrize("device", EXT_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_beta", [False, True], ids=["alpha", "alpha+beta"])
def test_channel_stats_backward_is_alpha_plus_beta_x(device, dtype, with_beta):
    xs = _layers(dtype, device)
    n = sum(x.shape[0] * x.shape[1] for x in xs)
    alpha = torch.randn(n, device=device)
    beta = torch.randn(n, device=device) if with_beta else None
    grads = torch.ops.leaps.channel_stats_backward(xs, alpha, beta)
    offset = 0
    for x, g in zip(xs, grads):
        b, c, _ = x.shape
        assert g.shape == x.shape and g.dtype == x.dtype
        if _is_dense(x):
            assert g.stride() == x.stride()  # the gradient keeps the activation's layout
        want = alpha[offset:offset + b * c].view(b, c, 1).double().expand(x.shape)
        if with_beta:
            want = want + beta[offset:offset + b * c].view(b, c, 1).double() * x.double()
        torch.testing.assert_close(g.double(), want.to(x.dtype).double(), **_out_tol(dtype))
        offset += b * c


# --------------------------------------------------------------------------------------------
# frame_l1 / frame_l1_backward
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", EXT_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_frame_l1_matches_torch(device, dtype):
    for z in _frames(dtype, device):
        D = torch.ops.leaps.frame_l1(z)
        zd = z.double()
        want = (zd.unsqueeze(2) - zd.unsqueeze(1)).abs().mean((3, 4))
        assert D.dtype == torch.float32 and D.shape == (z.shape[0], z.shape[1], z.shape[1])
        torch.testing.assert_close(D.double(), want, **_tol(device))
        assert torch.equal(D, D.transpose(1, 2))  # symmetric by construction, zero diagonal
        assert not D.diagonal(dim1=1, dim2=2).any()


@pytest.mark.parametrize("device", EXT_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_frame_l1_backward_is_weighted_signs(device, dtype):
    for seed, z in enumerate(_frames(dtype, device)):
        B, T = z.shape[:2]
        W = _randn(B, T, T, dtype=torch.float32, device=device, seed=10 + seed)
        grad = torch.ops.leaps.frame_l1_backward(z, W)
        zd = z.double()
        signs = torch.sign(zd.unsqueeze(2) - zd.unsqueeze(1))  # b, t, u, p, q
        want = (W.double()[..., None, None] * signs).sum(2) / (z.shape[2] * z.shape[3])
        assert grad.shape == z.shape and grad.dtype == z.dtype
        torch.testing.assert_close(grad.double(), want.to(dtype).double(), **_out_tol(dtype))


# --------------------------------------------------------------------------------------------
# CPU kernels: determinism, errors, Meta kernels
# --------------------------------------------------------------------------------------------

@needs_ext
def test_cpu_results_do_not_depend_on_the_thread_count():
    xs = _layers(torch.float32, "cpu") + [_randn(4, 130, 600, dtype=torch.float32, device="cpu", seed=7)]
    z = _randn(2, 6, 50, 60, dtype=torch.float32, device="cpu", seed=8)
    W = _randn(2, 6, 6, dtype=torch.float32, device="cpu", seed=9)

    def run():
        return (*torch.ops.leaps.channel_stats(xs, True), torch.ops.leaps.frame_l1(z),
                torch.ops.leaps.frame_l1_backward(z, W))

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


@needs_ext
def test_empty_batches():
    mean, m2 = torch.ops.leaps.channel_stats([torch.empty(0, 3, 4), torch.ones(1, 2, 3)], True)
    assert mean.shape == m2.shape == (2,) and torch.equal(mean, torch.ones(2))
    assert torch.ops.leaps.frame_l1(torch.empty(0, 3, 2, 2)).shape == (0, 3, 3)


@needs_ext
def test_bad_inputs_raise_clear_errors():
    ops = torch.ops.leaps
    with pytest.raises(RuntimeError, match="expected float32, float16, bfloat16 or float64"):
        ops.channel_stats([torch.ones(2, 3, 4, dtype=torch.int64)], False)
    with pytest.raises(RuntimeError, match="expected B x C x S tensors"):
        ops.channel_stats([torch.ones(2, 3)], False)
    with pytest.raises(RuntimeError, match="alpha must be 1-D of length 6"):
        ops.channel_stats_backward([torch.ones(2, 3, 4)], torch.ones(5), None)
    with pytest.raises(RuntimeError, match="beta must be float32"):
        ops.channel_stats_backward([torch.ones(2, 3, 4)], torch.ones(6), torch.ones(6, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="expected a B x T x P x Q tensor"):
        ops.frame_l1(torch.ones(2, 3, 4))
    with pytest.raises(RuntimeError, match="W must be B x T x T"):
        ops.frame_l1_backward(torch.ones(2, 3, 4, 5), torch.ones(2, 3, 4))


@needs_ext
def test_meta_kernels_give_the_output_shapes():
    xs = [torch.empty(2, 5, 7, device="meta"), torch.empty(3, 4, 1, device="meta", dtype=torch.bfloat16)]
    mean, m2 = torch.ops.leaps.channel_stats(xs, True)
    assert mean.shape == m2.shape == (22,) and mean.dtype == torch.float32 and mean.device.type == "meta"
    assert torch.ops.leaps.channel_stats(xs, False)[1].shape == (0,)
    grads = torch.ops.leaps.channel_stats_backward(xs, torch.empty(22, device="meta"), None)
    assert [(g.shape, g.dtype) for g in grads] == [(x.shape, x.dtype) for x in xs]
    z = torch.empty(2, 6, 3, 5, device="meta", dtype=torch.float16)
    assert torch.ops.leaps.frame_l1(z).shape == (2, 6, 6)
    assert torch.ops.leaps.frame_l1_backward(z, torch.empty(2, 6, 6, device="meta")).dtype == torch.float16


# --------------------------------------------------------------------------------------------
# leaps._ext: a missing build is "not built", a broken one is reported as it is
# --------------------------------------------------------------------------------------------

@pytest.fixture
def fresh_loader(monkeypatch):
    """leaps._ext with nothing loaded yet and no operators registered (whatever this process holds)."""
    monkeypatch.setattr(_ext, "_state", {"loaded": None, "error": None, "has_cuda": False})
    monkeypatch.setattr(_ext, "_op_registered", lambda: False)
    monkeypatch.delenv("LEAPS_EXT_LIBRARY", raising=False)
    return monkeypatch


def _failing_import(exc):
    def fail():
        raise exc
    return fail


def test_load_error_says_the_extension_is_not_built(fresh_loader):
    fresh_loader.setattr(_ext, "_import_extension", _failing_import(ModuleNotFoundError("No module named 'leaps._C'",
                                                                                        name="leaps._C")))
    assert not _ext.available()
    message = _ext.load_error()
    assert "not built" in message
    assert "LEAPS_BUILD_EXT=1 pip install --no-build-isolation -e ." in message
    assert "circular" not in message


def test_load_error_reports_a_broken_build_as_such(fresh_loader):
    symbol = "undefined symbol: _ZN3c1017RegisterOperatorsD1Ev"
    fresh_loader.setattr(_ext, "_import_extension", _failing_import(ImportError(f"/x/leaps/_C.so: {symbol}")))
    assert not _ext.available()
    message = _ext.load_error()
    assert symbol in message and "ImportError" in message
    assert "not built" not in message
    assert "rebuild" in message


def test_load_error_reports_a_missing_dependency_as_a_broken_build(fresh_loader):
    # A module the extension itself imports is missing: that is not "leaps._C is not built".
    fresh_loader.setattr(_ext, "_import_extension",
                         _failing_import(ModuleNotFoundError("No module named 'x'", name="x")))
    assert not _ext.available()
    assert "not built" not in _ext.load_error() and "No module named 'x'" in _ext.load_error()


def test_load_error_names_a_bad_library_path(fresh_loader, tmp_path):
    fresh_loader.setattr(_ext, "_import_extension", _failing_import(ModuleNotFoundError("", name="leaps._C")))
    fresh_loader.setenv("LEAPS_EXT_LIBRARY", str(tmp_path / "missing.so"))
    assert not _ext.available()
    assert "not built" in _ext.load_error() and "LEAPS_EXT_LIBRARY" in _ext.load_error()
    assert not _ext.has_cuda()


def test_the_real_import_from_inside_the_package_is_not_a_circular_import(fresh_loader):
    # sys.modules[name] = None makes the real import machinery fail as for a module that is absent.
    fresh_loader.setitem(__import__("sys").modules, "leaps._C", None)
    assert not _ext.available()
    assert "not built" in _ext.load_error()


@needs_ext
def test_a_built_extension_loads_without_error():
    assert _ext.available() and _ext.load_error() is None
