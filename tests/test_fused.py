"""Fused backends of the LEAPS losses against the plain-torch reference: values and gradients.

"triton" runs the Triton kernels (under TRITON_INTERPRET=1 without a GPU, see conftest), "cuda"
the compiled extension's operators (its CPU kernels without a GPU). GPU variants are marked gpu.
"""

import importlib
import importlib.util
import warnings

import pytest
import torch

from leaps import _ext, losses, ops
from leaps.errors import LeapsError

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_EXT_OPS = _ext.available() and hasattr(torch.ops.leaps, "channel_stats")
GPU = torch.cuda.is_available()


def _cases():
    cases = []
    for backend, ok, why in (("triton", HAS_TRITON, "triton not installed"),
                             ("cuda", HAS_EXT_OPS, "extension not built")):
        cases.append(pytest.param(backend, "cpu", marks=pytest.mark.skipif(not ok, reason=why), id=f"{backend}-cpu"))
        gpu_ok = ok and GPU and (backend == "triton" or _ext.has_cuda())
        cases.append(pytest.param(backend, "cuda",
                                  marks=[pytest.mark.gpu, pytest.mark.skipif(not gpu_ok, reason="needs CUDA")],
                                  id=f"{backend}-cuda"))
    return cases


BACKEND_DEVICE = _cases()
DTYPES = [(torch.float32, 1e-5, 1e-5), (torch.bfloat16, 3e-2, 3e-2), (torch.float16, 1e-2, 1e-2)]
DTYPE_IDS = ["fp32", "bf16", "fp16"]


def _run(fn, tensors, backend):
    """fn(list of leaf tensors, backend) -> (loss, grads)."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    loss = fn(leaves, backend)
    loss.backward()
    return loss.detach().float(), [x.grad for x in leaves]


def _assert_matches(fn, tensors, backend, rtol, atol):
    ref_loss, ref_grads = _run(fn, tensors, "reference")
    loss, grads = _run(fn, tensors, backend)
    torch.testing.assert_close(loss.cpu(), ref_loss.cpu(), rtol=rtol, atol=atol)
    for g, r, x in zip(grads, ref_grads, tensors):
        assert g.dtype == x.dtype and g.shape == x.shape
        scale = r.float().abs().max().clamp_min(1e-12)
        torch.testing.assert_close((g.float() / scale).cpu(), (r.float() / scale).cpu(), rtol=rtol, atol=atol)


def _layer_set(device, dtype, seed=0):
    """Activations of several layouts: NCDHW with odd sizes, channels_last_3d, a strided slice,
    B x N x C tokens, and a layer with a single position."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(*shape, generator=g) * 1.5 + 0.3).to(device=device, dtype=dtype)

    acts = [
        r(2, 5, 3, 7, 5),
        r(2, 6, 3, 4, 4).contiguous(memory_format=torch.channels_last_3d),
        r(2, 4, 6, 3, 3)[:, :, ::2],          # axes that cannot merge: a copy in as_rows
        r(2, 9, 7),                           # tokens, channel_dim -1
        r(2, 3, 1, 1, 1),
    ]
    return acts, [1, 1, 1, -1, 1]


# --------------------------------------------------------------------------------------------
# L_prim
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
@pytest.mark.parametrize("distance", ["jvs", "cos", "l1", "l2"])
@pytest.mark.parametrize("dtype,rtol,atol", DTYPES, ids=DTYPE_IDS)
def test_priming_matches_reference(backend, device, distance, dtype, rtol, atol):
    acts, dims = _layer_set(device, dtype)
    g = torch.Generator().manual_seed(1)
    channels = [a.shape[d] for a, d in zip(acts, dims)]
    # per-video stimulus means for some layers, one shared vector for others
    stim = [torch.randn(2 if i % 2 else 1, c, generator=g).to(device) for i, c in enumerate(channels)]
    weights = [1.0, 0.8, 0.55, 0.3, 0.1]

    def fn(xs, be):
        return losses.priming_loss_from_activations(xs, stim, weights, distance, channel_dims=dims, backend=be)

    _assert_matches(fn, acts, backend, rtol, atol)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
def test_priming_batch_one_and_odd_channels(backend, device):
    acts = [torch.randn(1, c, 2, 3, 5, device=device) for c in (1, 3, 17)]
    stim = [torch.randn(1, c, device=device) for c in (1, 3, 17)]

    def fn(xs, be):
        return losses.priming_loss_from_activations(xs, stim, [1.0, 0.5, 0.2], "jvs", backend=be)

    _assert_matches(fn, acts, backend, 1e-5, 1e-5)


def test_priming_from_activations_equals_priming_on_means():
    acts, dims = _layer_set("cpu", torch.float32)
    stim = [torch.randn(1, a.shape[d]) for a, d in zip(acts, dims)]
    means = [losses.channel_means(a, d) for a, d in zip(acts, dims)]
    expected = losses.priming_loss(means, stim, [1.0] * 5, "l2")
    got = losses.priming_loss_from_activations(acts, stim, [1.0] * 5, "l2", channel_dims=dims, backend="reference")
    torch.testing.assert_close(got, expected)


# --------------------------------------------------------------------------------------------
# R_feat
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
@pytest.mark.parametrize("dtype,rtol,atol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_bn_statistics_matches_reference(backend, device, dtype, rtol, atol, batch):
    g = torch.Generator().manual_seed(batch)
    acts = [
        (torch.randn(batch, 6, 3, 5, 7, generator=g) * 2 + 1).to(device=device, dtype=dtype),
        torch.randn(batch, 4, 2, 4, 4, generator=g).to(device=device, dtype=dtype)
        .contiguous(memory_format=torch.channels_last_3d),
        torch.randn(batch, 11, 1, 3, 1, generator=g).to(device=device, dtype=dtype),
    ]
    means = [torch.randn(a.shape[1], generator=g).to(device) * 0.5 for a in acts]
    variances = [torch.rand(a.shape[1], generator=g).to(device) + 0.5 for a in acts]

    def fn(xs, be):
        return losses.bn_statistics_loss(xs, means, variances, backend=be)

    _assert_matches(fn, acts, backend, rtol, atol)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
def test_bn_statistics_is_stable_for_large_offsets(backend, device):
    # Welford/Chan merging: a mean of 1e4 and a spread of 1 lose nothing in fp32.
    x = (torch.randn(2, 3, 4, 33, 31, dtype=torch.float64) + 1e4)
    mean, var = x.mean((0, 2, 3, 4)), x.var((0, 2, 3, 4), unbiased=False)
    loss = losses.bn_statistics_loss([x.float().to(device)], [mean.float().to(device)], [var.float().to(device) + 0.25],
                                     backend=backend)
    # the loss is then ||var - (var + 0.25)|| = 0.25 sqrt(C)
    assert abs(loss.item() - 0.25 * 3 ** 0.5) < 2e-3


# --------------------------------------------------------------------------------------------
# R_coh
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
@pytest.mark.parametrize("dtype,rtol,atol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d", "tokens", "swin", "strided"])
def test_temporal_coherence_matches_reference(backend, device, dtype, rtol, atol, layout):
    g = torch.Generator().manual_seed(3)
    kwargs = {}
    if layout == "ncdhw":
        z = torch.randn(2, 5, 7, 3, 3, generator=g)
    elif layout == "channels_last_3d":
        z = torch.randn(1, 6, 5, 2, 3, generator=g).contiguous(memory_format=torch.channels_last_3d)
    elif layout == "tokens":
        z, kwargs = torch.randn(2, 1 + 3 * 4, 6, generator=g), dict(token_grid=(3, 4))
    elif layout == "swin":
        z, kwargs = torch.randn(2, 4, 3, 3, 5, generator=g), dict(channels_last=True)
    else:
        z = torch.randn(2, 5, 8, 4, 3, generator=g)[:, :, :, ::2]
    z = (z * 0.7).to(device=device, dtype=dtype)
    z = z.contiguous(memory_format=torch.channels_last_3d) if layout == "channels_last_3d" else z

    def fn(xs, be):
        return losses.temporal_coherence_loss(xs[0], 0.9, backend=be, **kwargs)

    _assert_matches(fn, [z], backend, rtol, atol)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
@pytest.mark.parametrize("frames", [1, 2, 3, 9])
def test_temporal_coherence_frame_counts(backend, device, frames):
    z = torch.randn(2, 3, frames, 5, 3, device=device)

    def fn(xs, be):
        return losses.temporal_coherence_loss(xs[0], 1.0, backend=be)

    _assert_matches(fn, [z], backend, 1e-5, 1e-5)


# --------------------------------------------------------------------------------------------
# Multi-layer fusion, gradient layout, backend choice, torch.compile
# --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("layers", [2, 12])
def test_one_launch_covers_all_layers(monkeypatch, layers):
    # the package re-exports a function of the same name: take the module itself
    cs = importlib.import_module("leaps.kernels.channel_stats")

    launches = {"fwd": 0, "bwd": 0}

    class Counting:
        def __init__(self, kernel, name):
            self.kernel, self.name = kernel, name

        def __getitem__(self, grid):
            launches[self.name] += 1
            return self.kernel[grid]

    monkeypatch.setattr(cs, "_channel_stats_fwd", Counting(cs._channel_stats_fwd, "fwd"))
    monkeypatch.setattr(cs, "_channel_stats_bwd", Counting(cs._channel_stats_bwd, "bwd"))
    acts = [torch.randn(2, 3 + l % 4, 2, 3, 3, requires_grad=True) for l in range(layers)]
    loss = losses.bn_statistics_loss(acts, [torch.zeros(a.shape[1]) for a in acts],
                                     [torch.ones(a.shape[1]) for a in acts], backend="triton")
    loss.backward()
    assert launches == {"fwd": 1, "bwd": 1}


@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
def test_gradients_keep_the_activation_layout(backend, device):
    x = torch.randn(2, 4, 3, 5, 5, device=device).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    loss = losses.bn_statistics_loss([x], [torch.zeros(4, device=device)], [torch.ones(4, device=device)],
                                     backend=backend)
    loss.backward()
    assert x.grad.stride() == x.stride()


def test_auto_uses_the_reference_on_cpu():
    assert ops.resolve_backend("auto", torch.zeros(2, 2)) == "reference"
    assert ops.resolve_backend("auto", torch.zeros(2, 2, dtype=torch.float64)) == "reference"


def test_unknown_and_impossible_backends_raise_clear_errors(monkeypatch):
    with pytest.raises(LeapsError, match="unknown loss backend"):
        losses.bn_statistics_loss([torch.randn(2, 3, 4)], [torch.zeros(3)], [torch.ones(3)], backend="fast")
    with pytest.raises(LeapsError, match="float32, float16 and bfloat16"):
        ops.resolve_backend("triton", torch.zeros(2, 2, dtype=torch.float64))
    monkeypatch.setattr(ops, "triton_interpreted", lambda: False)
    if HAS_TRITON:
        with pytest.raises(LeapsError, match="CUDA tensors"):
            ops.resolve_backend("triton", torch.zeros(2, 2))
    monkeypatch.setattr(ops._ext, "available", lambda: False)
    with pytest.raises(LeapsError, match="compiled extension"):
        ops.resolve_backend("cuda", torch.zeros(2, 2))


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs CUDA")
def test_auto_degrades_with_one_warning_on_gpu(monkeypatch):
    monkeypatch.setattr(ops, "_cuda_runs_on", lambda device: False)
    monkeypatch.setattr(ops, "_warned", set())
    x = torch.zeros(2, 2, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ops.resolve_backend("auto", x)
        ops.resolve_backend("auto", x)
    assert first in ("triton", "reference")
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1


@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
def test_compiled_step_has_no_graph_break(backend, device):
    torch._dynamo.reset()
    acts = [torch.randn(2, c, 2, 3, 3, device=device, requires_grad=True) for c in (3, 5)]
    z = torch.randn(2, 4, 3, 2, 2, device=device, requires_grad=True)
    stim = [torch.randn(1, c, device=device) for c in (3, 5)]
    stats = ([torch.zeros(c, device=device) for c in (3, 5)], [torch.ones(c, device=device) for c in (3, 5)])

    def step(a0, a1, zz, be):
        return (losses.priming_loss_from_activations([a0, a1], stim, [1.0, 0.5], "jvs", backend=be)
                + losses.bn_statistics_loss([a0, a1], *stats, backend=be)
                + losses.temporal_coherence_loss(zz, 1.0, backend=be))

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    loss = compiled(*acts, z, backend)
    loss.backward()
    leaves = [t.detach().clone().requires_grad_() for t in (*acts, z)]
    ref = step(*leaves, "reference")
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip((*acts, z), leaves):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend,device", [c for c in BACKEND_DEVICE if c.id.endswith("-cpu")])
@pytest.mark.parametrize("net", ["tiny_net", "tiny_token_net"])
def test_inversion_with_fused_backend_follows_the_reference(backend, device, net, request, tiny_verifier):
    import leaps

    model = request.getfixturevalue(net)
    stim = torch.rand(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    extra = dict(token_grid=(2, 16)) if net == "tiny_token_net" else {}
    runs = [
        leaps.invert(model, [1, 4], [stim, stim.flip(1)], verifier=tiny_verifier, steps=4, frames=4, size=16,
                     progress=False, backend=be, **extra)
        for be in ("reference", backend)
    ]
    for key in ("loss", "prim", "coh", "feat"):
        assert runs[1].history[key] == pytest.approx(runs[0].history[key], rel=1e-4, abs=1e-6), key
    torch.testing.assert_close(runs[1].video, runs[0].video, rtol=1e-4, atol=1e-4)


def test_long_clips_leave_the_cuda_frame_kernel():
    from types import SimpleNamespace

    long_clip = SimpleNamespace(shape=(1, ops.CUDA_MAX_FRAMES + 1, 2, 2), device=torch.device("cuda"))
    assert ops.frame_backend("cuda", "auto", long_clip) == ("triton" if HAS_TRITON else "reference")
    with pytest.raises(LeapsError, match="at most 64 frames"):
        ops.frame_backend("cuda", "cuda", long_clip)
    short_clip = SimpleNamespace(shape=(1, 8, 2, 2), device=torch.device("cuda"))
    assert ops.frame_backend("cuda", "auto", short_clip) == "cuda"


@pytest.mark.parametrize("backend,device", BACKEND_DEVICE)
@pytest.mark.parametrize("with_beta", [False, True])
def test_channel_stats_backward_op_is_alpha_plus_beta_x(backend, device, with_beta):
    # The op on its own (autograd uses it for R_feat; L_prim's backward is a broadcast view).
    acts, dims = _layer_set(device, torch.float32)
    rows = [ops.as_rows(a, d) for a, d in zip(acts, dims)]
    n = sum(r.shape[0] * r.shape[1] for r in rows)
    alpha = torch.randn(n, device=device)
    beta = torch.randn(n, device=device) if with_beta else None
    grads = ops._op(backend, 1)(rows, alpha, beta)
    offset = 0
    for r, g in zip(rows, grads):
        b, c, _ = r.shape
        a_l = alpha[offset:offset + b * c].view(b, c, 1)
        want = a_l + beta[offset:offset + b * c].view(b, c, 1) * r if with_beta else a_l.expand_as(r)
        torch.testing.assert_close(g, want, rtol=1e-6, atol=1e-6)
        offset += b * c


def _custom_op_nodes(loss):
    seen, stack, found = set(), [loss.grad_fn], []
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        if "leaps_" in type(f).__name__:
            found.append(f)
        stack.extend(n for n, _ in f.next_functions)
    return found


@pytest.mark.skipif(not (HAS_EXT_OPS or HAS_TRITON), reason="no fused backend")
def test_priming_backward_keeps_no_activation_alive():
    backend = "cuda" if HAS_EXT_OPS else "triton"
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    prim = losses.priming_loss_from_activations([x], [torch.randn(1, 3)], [1.0], "jvs", backend=backend)
    (node,) = _custom_op_nodes(prim)
    assert [t.shape for t in node.saved_tensors] == [(6,)]  # the means only
    feat = losses.bn_statistics_loss([x], [torch.zeros(3)], [torch.ones(3)], backend=backend)
    (node,) = _custom_op_nodes(feat)
    assert any(t.shape == (2, 3, 20) for t in node.saved_tensors)  # R_feat's backward reads x
    (prim + feat).backward()
    assert x.grad.shape == x.shape
