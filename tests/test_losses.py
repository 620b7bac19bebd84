"""The LEAPS terms against values computed by hand, and their gradients (gradcheck, float64)."""

import math

import pytest
import torch

from leaps import losses
from leaps.errors import LeapsError, ShapeError


def t(x):
    return torch.tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------- JVS and distances

def test_jvs_by_hand():
    assert losses.jvs(t([1.0, 0.0]), t([1.0, 0.0])).item() == pytest.approx(1.0)
    # a.b = 11, |a|^2 = 5, |b|^2 = 25 -> 11 / (30 - 11)
    assert losses.jvs(t([1.0, 2.0]), t([3.0, 4.0])).item() == pytest.approx(11 / 19)
    assert losses.jvs(t([1.0, 0.0]), t([0.0, 1.0])).item() == pytest.approx(0.0)


def test_jvs_is_row_wise_and_magnitude_sensitive():
    a = t([[1.0, 2.0], [2.0, 4.0]])
    b = t([[1.0, 2.0]])
    sim = losses.jvs(a, b)
    assert sim.shape == (2,)
    assert sim[0].item() == pytest.approx(1.0)
    # same direction, twice the magnitude: 10 / (20 + 5 - 10)
    assert sim[1].item() == pytest.approx(10 / 15)
    # cosine does not see the magnitude
    assert losses.feature_distance(a, b, "cos")[1].item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "distance,expected",
    [("jvs", 1 - 11 / 19), ("l1", 2.0), ("l2", 2.0), ("cos", 1 - 11 / (math.sqrt(5) * 5))],
)
def test_feature_distances_by_hand(distance, expected):
    assert losses.feature_distance(t([[1.0, 2.0]]), t([[3.0, 4.0]]), distance).item() == pytest.approx(expected)


def test_l1_l2_differ_when_differences_differ():
    a, b = t([[0.0, 0.0]]), t([[1.0, 3.0]])
    assert losses.feature_distance(a, b, "l1").item() == pytest.approx(2.0)
    assert losses.feature_distance(a, b, "l2").item() == pytest.approx(math.sqrt(5.0))


def test_linear_layer_weights():
    assert losses.linear_layer_weights(5, 1.0, 0.2) == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert losses.linear_layer_weights(1, 0.75, 0.1) == [0.75]


def test_priming_loss_by_hand():
    fx = [t([[1.0, 2.0]]), t([[1.0, 0.0, 0.0]])]
    fv = [t([[3.0, 4.0]]), t([[0.0, 1.0, 0.0]])]
    got = losses.priming_loss(fx, fv, [1.0, 0.5], "jvs")
    assert got.item() == pytest.approx((1.0 * 8 / 19 + 0.5 * 1.0) / 2)


def test_priming_loss_batch_mean_and_broadcast_stimulus():
    fx = [t([[1.0, 2.0], [3.0, 4.0]])]
    fv = [t([[3.0, 4.0]])]
    got = losses.priming_loss(fx, fv, [1.0], "jvs")
    assert got.item() == pytest.approx((8 / 19 + 0.0) / 2)


def test_priming_loss_errors():
    with pytest.raises(ShapeError):
        losses.priming_loss([t([[1.0, 2.0]])], [t([[1.0, 2.0, 3.0]])], [1.0])
    with pytest.raises(ShapeError):
        losses.priming_loss([t([[1.0]])], [], [1.0])
    with pytest.raises(LeapsError, match="distance"):
        losses.priming_loss([t([[1.0]])], [t([[1.0]])], [1.0], "l3")
    with pytest.raises(LeapsError, match="backend"):
        losses.priming_loss([t([[1.0]])], [t([[1.0]])], [1.0], backend="nope")


def test_channel_means_axes():
    z = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float64).view(2, 3, 2, 2, 2)
    assert torch.allclose(losses.channel_means(z), z.mean(dim=(2, 3, 4)))
    tokens = torch.randn(2, 7, 5, dtype=torch.float64)
    assert torch.allclose(losses.channel_means(tokens, -1), tokens.mean(1))
    assert losses.channel_means(z.to(torch.bfloat16)).dtype == torch.float32


# ---------------------------------------------------------------- temporal coherence

def frames_tensor(values):
    """B=1, C=1, T=len(values), H=W=1."""
    return t(values).view(1, 1, -1, 1, 1)


def test_coherence_by_hand():
    z = frames_tensor([0.0, 0.5, 3.0])
    # consecutive: |0-0.5| = 0.5, |0.5-3| = 2.5; non-consecutive (0,2): max(0, 1 - 3) = 0
    assert losses.temporal_coherence_loss(z, 1.0).item() == pytest.approx((0.5 + 2.5 + 0.0) / 3)
    # with a margin of 5 the non-consecutive pair is pushed apart: 5 - 3 = 2
    assert losses.temporal_coherence_loss(z, 5.0).item() == pytest.approx((0.5 + 2.5 + 2.0) / 3)


def test_coherence_l1_is_mean_over_frame_features():
    # two features per frame: frame 0 = (0, 0), frame 1 = (1, 3) -> mean |diff| = 2
    z = t([[0.0, 1.0], [0.0, 3.0]]).view(1, 2, 2, 1, 1)
    assert losses.temporal_coherence_loss(z).item() == pytest.approx(2.0)


def test_coherence_single_frame_is_zero_and_batch_mean():
    assert losses.temporal_coherence_loss(frames_tensor([1.0])).item() == 0.0
    z = torch.cat([frames_tensor([0.0, 0.5, 3.0]), frames_tensor([0.0, 0.0, 0.0])])
    # second video: consecutive 0, 0; non-consecutive max(0, 1 - 0) = 1
    assert losses.temporal_coherence_loss(z).item() == pytest.approx(((3.0 / 3) + (1.0 / 3)) / 2)


def test_coherence_tokens_match_cnn_layout():
    z = torch.randn(2, 4, 3, 2, 5, dtype=torch.float64)  # B C T H W
    tokens = z.flatten(2).transpose(1, 2)  # B x (T*H*W) x C
    with_cls = torch.cat([torch.randn(2, 1, 4, dtype=torch.float64), tokens], 1)
    ref = losses.temporal_coherence_loss(z)
    assert losses.temporal_coherence_loss(with_cls, token_grid=(3, 10)).item() == pytest.approx(ref.item())
    channels_last = z.permute(0, 2, 3, 4, 1)  # B T H W C
    assert losses.temporal_coherence_loss(channels_last, channels_last=True).item() == pytest.approx(ref.item())


def test_coherence_shape_errors():
    with pytest.raises(ShapeError):
        losses.temporal_coherence_loss(torch.randn(2, 3, 4))
    with pytest.raises(ShapeError):
        losses.temporal_coherence_loss(torch.randn(2, 3, 4), token_grid=(2, 2))


# ---------------------------------------------------------------- BN statistics

def test_bn_statistics_by_hand():
    # channel 0: [1, 3, 1, 3] -> mean 2, var 1; channel 1: [0, 0, 0, 4] -> mean 1, var 3
    a = t([[[1.0, 3.0], [0.0, 0.0]], [[1.0, 3.0], [0.0, 4.0]]])  # B=2, C=2, N=2
    got = losses.bn_statistics_loss([a], [t([2.0, 0.0])], [t([0.0, 3.0])])
    # ||(0, 1)||_2 + ||(1, 0)||_2
    assert got.item() == pytest.approx(2.0)
    two_layers = losses.bn_statistics_loss([a, a], [t([2.0, 0.0])] * 2, [t([0.0, 3.0])] * 2)
    assert two_layers.item() == pytest.approx(4.0)


def test_batch_moments_match_torch():
    a = torch.randn(3, 4, 2, 5, 3, dtype=torch.float64)
    mean, var = losses.batch_moments(a)
    assert torch.allclose(mean, a.mean(dim=(0, 2, 3, 4)))
    assert torch.allclose(var, a.var(dim=(0, 2, 3, 4), unbiased=False))


def test_bn_statistics_shape_error():
    with pytest.raises(ShapeError):
        losses.bn_statistics_loss([torch.randn(2, 3, 4)], [torch.zeros(4)], [torch.ones(4)])


def test_total_variation_by_hand():
    x = torch.zeros(1, 1, 2, 2, 2, dtype=torch.float64)
    x[..., 1] = 1.0  # a step along W only
    assert losses.total_variation(x).item() == pytest.approx(1.0)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("distance", ["jvs", "l1", "l2", "cos"])
def test_priming_gradcheck(distance):
    torch.manual_seed(0)
    fx = [torch.randn(2, 5, dtype=torch.float64, requires_grad=True),
          torch.randn(2, 3, dtype=torch.float64, requires_grad=True)]
    fv = [torch.randn(1, 5, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda a, b: losses.priming_loss([a, b], fv, [1.0, 0.4], distance), tuple(fx))


def test_jvs_gradient_matches_closed_form():
    a = torch.randn(7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64)
    (1 - losses.jvs(a, b, eps=0.0)).backward()
    dot, s = (a * b).sum(), (a * a).sum() + (b * b).sum()
    expected = (2 * dot * a - s * b) / (s - dot) ** 2
    assert torch.allclose(a.grad, expected.detach())


def test_coherence_gradcheck():
    torch.manual_seed(1)
    z = torch.randn(2, 3, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: losses.temporal_coherence_loss(v, 1.0), (z,))
    tokens = torch.randn(1, 1 + 3 * 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: losses.temporal_coherence_loss(v, 3.0, token_grid=(3, 4)), (tokens,))


def test_bn_statistics_gradcheck():
    torch.manual_seed(2)
    a = torch.randn(2, 3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    rm = [torch.randn(3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    rv = [torch.rand(3, dtype=torch.float64), torch.rand(4, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda x, y: losses.bn_statistics_loss([x, y], rm, rv), (a, b))


# --------------------------------------------------------------------------------------------
# one dispatch pattern: each public term calls its _reference or leaps.fused_terms
# --------------------------------------------------------------------------------------------

def _dispatch_cases():
    x = torch.randn(2, 3, 4, 5, 5)
    return [
        ("priming_loss", "_priming_loss_reference",
         lambda backend: losses.priming_loss_from_activations([x], [torch.randn(1, 3)], [1.0], backend=backend)),
        ("temporal_coherence_loss", "_temporal_coherence_loss_reference",
         lambda backend: losses.temporal_coherence_loss(x, backend=backend)),
        ("bn_statistics_loss", "_bn_statistics_loss_reference",
         lambda backend: losses.bn_statistics_loss([x], [torch.zeros(3)], [torch.ones(3)], backend=backend)),
    ]


@pytest.mark.parametrize("fused_name,reference_name,call", _dispatch_cases(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_each_term_dispatches_to_its_reference_or_the_fused_terms(monkeypatch, fused_name, reference_name, call):
    from leaps import fused_terms, ops

    seen = []
    monkeypatch.setattr(losses, reference_name, lambda *a, **k: seen.append("reference") or torch.zeros(()))
    monkeypatch.setattr(fused_terms, fused_name, lambda *a, **k: seen.append(a[-1]) or torch.zeros(()))
    call("reference")
    monkeypatch.setattr(ops, "resolve_backend", lambda backend, like: "cuda")  # as if a fused backend ran here
    call("cuda")
    assert seen == ["reference", "cuda"]
