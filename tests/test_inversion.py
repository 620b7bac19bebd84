"""The inversion loop on tiny networks: every option of eq. (4), the baselines, errors."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import NaNAfter

import leaps
from leaps.errors import LeapsError, NonFiniteLossError, VerifierError
from leaps.inversion import Network, _renormalise

FAST = dict(steps=3, frames=4, size=16, progress=False)


def stimulus(seed=0, frames=4, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, frames, size, size, generator=g)


def test_leaps_full_objective(tiny_net, tiny_verifier):
    result = leaps.invert(tiny_net, 3, stimulus(), verifier=tiny_verifier, **FAST)
    assert result.video.shape == (1, 3, 4, 16, 16)
    assert 0.0 <= result.video.min() and result.video.max() <= 1.0
    assert set(result.history) == {"loss", "lr", "ce", "prim", "coh", "feat"}
    assert all(len(v) == 3 for v in result.history.values())
    total = [sum(result.history[k][i] for k in ("ce", "prim", "coh", "feat")) for i in range(3)]
    assert result.history["loss"] == pytest.approx(total)
    assert result.model_probs.shape == (1, 10) and result.verifier_probs.shape == (1, 10)
    assert result.targets == [3]


def test_hooks_removed_after_inversion(tiny_net, tiny_verifier):
    leaps.invert(tiny_net, 0, stimulus(), verifier=tiny_verifier, **FAST)
    hooks = sum(len(m._forward_pre_hooks) for net in (tiny_net, tiny_verifier) for m in net.modules())
    assert hooks == 0


def test_seed_reproducible_and_seed_matters(tiny_net, tiny_verifier):
    a = leaps.invert(tiny_net, 1, stimulus(), verifier=tiny_verifier, seed=7, **FAST)
    b = leaps.invert(tiny_net, 1, stimulus(), verifier=tiny_verifier, seed=7, **FAST)
    c = leaps.invert(tiny_net, 1, stimulus(), verifier=tiny_verifier, seed=8, **FAST)
    assert torch.equal(a.video, b.video)
    assert not torch.equal(a.video, c.video)


def test_optimisation_reduces_the_loss(tiny_net, tiny_verifier):
    result = leaps.invert(tiny_net, 2, stimulus(), verifier=tiny_verifier, steps=40, frames=4, size=16, progress=False,
                          lr=0.05)
    first, last = result.history["loss"][0], result.history["loss"][-1]
    assert last < first
    assert result.history["ce"][-1] < result.history["ce"][0]


def test_cosine_schedule(tiny_net):
    result = leaps.invert(tiny_net, 0, stimulus(), steps=4, frames=4, size=16, progress=False, use_feat=False)
    assert result.history["lr"] == pytest.approx([0.2 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)])
    warm = leaps.invert(tiny_net, 0, stimulus(), steps=4, warmup_steps=2, lr_schedule="constant", frames=4, size=16,
                        progress=False)
    assert warm.history["lr"] == pytest.approx([0.1, 0.2, 0.2, 0.2])


@pytest.mark.parametrize(
    "off,missing",
    [("use_ce", "ce"), ("use_priming", "prim"), ("use_coherence", "coh"), ("use_feat", "feat")],
)
def test_loss_ablations(tiny_net, tiny_verifier, off, missing):
    result = leaps.invert(tiny_net, 0, stimulus(), verifier=tiny_verifier, **{off: False}, **FAST)
    assert missing not in result.history
    assert {"ce", "prim", "coh", "feat"} - {missing} <= set(result.history)


def test_presets_and_overrides_scale_terms(tiny_net, tiny_verifier):
    spec = SimpleNamespace(mean=(0.45,) * 3, std=(0.225,) * 3, fixed_size=False, frames=4, size=16,
                           preset=SimpleNamespace(lambda_first=1.0, lambda_last=0.5, r=0.01), token_grid=None)
    base = leaps.invert(tiny_net, 0, stimulus(), verifier=tiny_verifier, spec=spec, steps=1, frames=4, size=16,
                        progress=False)
    doubled = leaps.invert(tiny_net, 0, stimulus(), verifier=tiny_verifier, spec=spec, r=0.02, steps=1, frames=4,
                           size=16, progress=False)
    assert doubled.history["coh"][0] == pytest.approx(2 * base.history["coh"][0])
    assert doubled.history["feat"][0] == pytest.approx(2 * base.history["feat"][0])
    assert doubled.history["prim"][0] == pytest.approx(base.history["prim"][0])


def test_priming_fraction_uses_first_layers(tiny_net):
    from leaps import losses
    from leaps.taps import FeatureTaps

    s = stimulus()
    x_seed = 5
    full = leaps.invert(tiny_net, 0, s, steps=1, seed=x_seed, jitter=0, flip=False, use_coherence=False, use_ce=False,
                        frames=4, size=16, progress=False, lambda_first=1.0, lambda_last=1.0)
    third = leaps.invert(tiny_net, 0, s, steps=1, seed=x_seed, jitter=0, flip=False, use_coherence=False, use_ce=False,
                         frames=4, size=16, progress=False, lambda_first=1.0, lambda_last=1.0, priming_fraction=0.4)
    # recompute both from the initial x* by hand: same noise as the loop draws
    x0 = torch.randn(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(x_seed))
    mean, std = torch.tensor([0.45] * 3).view(1, 3, 1, 1, 1), torch.tensor([0.225] * 3).view(1, 3, 1, 1, 1)
    x0 = torch.max(torch.min(x0, (1 - mean) / std), -mean / std)
    with FeatureTaps(tiny_net) as taps:
        tiny_net((s[None] - mean) / std)
        fv = taps.channel_means()
        tiny_net(x0)
        fx = taps.channel_means()
    assert full.history["prim"][0] == pytest.approx(losses.priming_loss(fx, fv, [1.0] * 3).item(), rel=1e-5)
    assert third.history["prim"][0] == pytest.approx(losses.priming_loss(fx[:1], fv[:1], [1.0]).item(), rel=1e-5)


def test_batch_of_targets_with_own_stimuli(tiny_net, tiny_verifier):
    result = leaps.invert(tiny_net, [1, 4], [stimulus(0), stimulus(1)], verifier=tiny_verifier, **FAST)
    assert result.video.shape[0] == 2 and result.targets == [1, 4]
    with pytest.raises(LeapsError, match="stimuli for 3 targets"):
        leaps.invert(tiny_net, [1, 2, 3], [stimulus(0), stimulus(1)], **FAST)


def test_multi_stimuli_priming_uses_mean_features(tiny_net):
    kw = dict(steps=1, use_ce=False, use_coherence=False, **{k: v for k, v in FAST.items() if k != "steps"})
    a, b = stimulus(0), stimulus(1)
    multi = leaps.invert(tiny_net, 0, [a, b], **kw)
    single = leaps.invert(tiny_net, 0, a, **kw)
    assert multi.history["prim"][0] != pytest.approx(single.history["prim"][0])
    # a stimulus listed twice gives the same means as the stimulus once
    twice = leaps.invert(tiny_net, 0, [a, a], **kw)
    assert twice.history["prim"][0] == pytest.approx(single.history["prim"][0], rel=1e-5)


def test_stimulus_from_file(tiny_net, tmp_path):
    from leaps.video import make_test_video

    path = tmp_path / "stim.mp4"
    make_test_video(path, frames=8, size=32)
    result = leaps.invert(tiny_net, 0, str(path), **FAST)
    assert math.isfinite(result.history["prim"][0])


def test_transformer_tokens(tiny_token_net):
    result = leaps.invert(tiny_token_net, 0, stimulus(), token_grid=(2, 16), **FAST)
    assert "coh" in result.history
    with pytest.raises(LeapsError, match="token_grid"):
        leaps.invert(tiny_token_net, 0, stimulus(), **FAST)


def test_verifier_without_batchnorm(tiny_net, tiny_token_net):
    with pytest.raises(VerifierError):
        leaps.invert(tiny_net, 0, stimulus(), verifier=tiny_token_net, **FAST)


def test_fixed_size_models_see_their_geometry(tiny_net):
    seen = []
    tiny_net.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[2:])))
    leaps.invert(tiny_net, 0, stimulus(), model_input=(2, 8), **FAST)
    assert set(seen) == {(2, 8, 8)}


def test_renormalise_between_networks(tiny_net):
    a = Network(tiny_net, torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1, 1),
                torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1, 1), None)
    b = Network(tiny_net, torch.tensor([0.45] * 3).view(1, 3, 1, 1, 1),
                torch.tensor([0.225] * 3).view(1, 3, 1, 1, 1), None)
    pixels = torch.rand(1, 3, 2, 4, 4)
    x_a = (pixels - a.mean) / a.std
    assert torch.allclose(_renormalise(x_a, a, b), (pixels - b.mean) / b.std, atol=1e-6)


def test_non_finite_loss_is_reported_with_last_video(tiny_net):
    model = NaNAfter(tiny_net, after=4)  # calls 1-2: stimulus and class-count probe; 3-4: steps 0-1
    with pytest.raises(NonFiniteLossError) as info:
        leaps.invert(model, 0, stimulus(), steps=10, frames=4, size=16, progress=False)
    err = info.value
    assert err.step == 2 and "nan" in str(err)
    assert err.last_finite.shape == (1, 3, 4, 16, 16) and torch.isfinite(err.last_finite).all()
    assert len(err.history["loss"]) == 2


def test_baselines(tiny_net, tiny_verifier):
    dd = leaps.deepdream(tiny_net, 1, verifier=tiny_verifier, **FAST)
    assert set(dd.history) == {"loss", "lr", "ce", "tv", "l2"}
    am = leaps.activation_maximization(tiny_net, 1, **FAST)
    assert set(am.history) == {"loss", "lr", "logit", "l2"}
    assert am.verifier_probs is None and dd.verifier_probs is not None


def test_am_increases_the_logit(tiny_net):
    am = leaps.activation_maximization(tiny_net, 5, steps=30, lr=0.05, frames=4, size=16, progress=False)
    assert am.history["logit"][-1] < am.history["logit"][0]


def test_config_errors(tiny_net):
    with pytest.raises(LeapsError, match="stimulus"):
        leaps.invert(tiny_net, 0, None, **FAST)
    with pytest.raises(LeapsError, match="unknown inversion option"):
        leaps.invert(tiny_net, 0, stimulus(), stepz=3)
    with pytest.raises(LeapsError, match="distance"):
        leaps.invert(tiny_net, 0, stimulus(), distance="l3", **FAST)
    with pytest.raises(LeapsError):
        leaps.invert(tiny_net, 10, stimulus(), **FAST)  # 10 classes: index out of range
    with pytest.raises(LeapsError):
        leaps.invert(tiny_net, 0, torch.rand(4, 16, 16), **FAST)  # not 3 x T x H x W


def test_snapshots_and_save(tiny_net, tmp_path):
    result = leaps.invert(tiny_net, 0, stimulus(), snapshot_every=2, steps=4, frames=4, size=16, progress=False)
    assert [s for s, _ in result.snapshots] == [2, 4]
    paths = result.save(tmp_path / "out")
    for key in ("mp4", "gif", "png", "history"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    assert paths["snapshot_2"].exists()
    summary = json.loads(paths["history"].read_text())
    assert len(summary["frame_ssim"]) == 1 and len(summary["frame_ssim"][0]) == 3  # T - 1 pairs
    assert all(-1.0 <= v <= 1.0 for v in summary["frame_ssim"][0])


def test_prepare_and_step_matches_invert(tiny_net, tiny_verifier):
    from leaps.inversion import prepare

    inv = prepare(tiny_net, 2, stimulus(), verifier=tiny_verifier, **FAST)
    with inv:
        values = [inv.step() for _ in range(3)]
    assert sum(len(m._forward_pre_hooks) for m in tiny_net.modules()) == 0
    direct = leaps.invert(tiny_net, 2, stimulus(), verifier=tiny_verifier, **FAST)
    assert values == pytest.approx(direct.history["loss"])
    assert torch.equal(inv.result().video, direct.video)


# --------------------------------------------------------------------------------------------
# the optional TV prior (prior_tv), off by default: not part of eq. (4)
# --------------------------------------------------------------------------------------------

def _plain_tv(x, time_weight=1.0):
    """time_weight mean |x[t+1] - x[t]| + mean |x[h+1] - x[h]| + mean |x[w+1] - x[w]| of B x C x T x H x W."""
    return sum(w * (x.narrow(d, 1, x.shape[d] - 1) - x.narrow(d, 0, x.shape[d] - 1)).abs().mean()
               for d, w in ((2, time_weight), (3, 1.0), (4, 1.0)))


def _plain_tv_grad(x, time_weight=1.0):
    """The subgradient of :func:`_plain_tv`, by hand: each difference pushes its two ends apart."""
    g = torch.zeros_like(x)
    for d, w in ((2, time_weight), (3, 1.0), (4, 1.0)):
        n = x.shape[d]
        s = w * torch.sign(x.narrow(d, 1, n - 1) - x.narrow(d, 0, n - 1)) / _count(x, d)
        g.narrow(d, 1, n - 1).add_(s)
        g.narrow(d, 0, n - 1).sub_(s)
    return g


def _count(x, d):
    return x.numel() // x.shape[d] * (x.shape[d] - 1)


def test_prior_tv_is_off_by_default():
    assert leaps.InversionConfig().prior_tv == 0.0


@pytest.mark.parametrize("time_weight", [1.0, 0.0, 0.3])
def test_prior_tv_value_and_gradient(tiny_net, tiny_verifier, time_weight):
    # prior_tv_time weighs the differences along T: 1 (default) as H and W, 0 space only
    from leaps.inversion import prepare

    weight = 0.7
    inv = prepare(tiny_net, [0, 1], stimulus(), tiny_verifier, leaps.InversionConfig(
        prior_tv=weight, prior_tv_time=time_weight, jitter=0, flip=False, **FAST))
    assert inv.term_names[-1] == "prior_tv"
    full = torch.arange(16)
    with inv:
        values = inv._loss_terms(inv.x, full, full)
        prior = values[1 + inv.term_names.index("prior_tv")]
        x = inv.x.detach()
        assert prior.item() == pytest.approx(weight * _plain_tv(x, time_weight).item(), rel=1e-5)
        grad, = torch.autograd.grad(prior, inv.x)
    torch.testing.assert_close(grad, weight * _plain_tv_grad(x, time_weight))


def test_prior_tv_adds_to_the_loss(tiny_net, tiny_verifier):
    result = leaps.invert(tiny_net, 3, stimulus(), verifier=tiny_verifier, prior_tv=0.5, **FAST)
    assert set(result.history) == {"loss", "lr", "ce", "prim", "coh", "feat", "prior_tv"}
    total = [sum(result.history[k][i] for k in ("ce", "prim", "coh", "feat", "prior_tv")) for i in range(3)]
    assert result.history["loss"] == pytest.approx(total)
    assert all(v > 0 for v in result.history["prior_tv"])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "0.1", None])
def test_prior_tv_bad_values(tiny_net, bad):
    with pytest.raises(LeapsError, match="prior_tv"):
        leaps.invert(tiny_net, 0, stimulus(), prior_tv=bad, **FAST)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), True, "0"])
def test_prior_tv_time_bad_values(tiny_net, bad):
    with pytest.raises(LeapsError, match="prior_tv_time"):
        leaps.invert(tiny_net, 0, stimulus(), prior_tv=0.1, prior_tv_time=bad, **FAST)


def test_prior_tv_only_for_leaps(tiny_net):
    with pytest.raises(LeapsError, match="prior_tv.*tv_weight"):
        leaps.invert(tiny_net, 0, stimulus(), objective="deepdream", prior_tv=0.1, **FAST)
