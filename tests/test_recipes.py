"""Feature-visualisation recipes (leaps.parameterization, leaps.augment, extra_models, several stimuli a
class): each off by default, leaving the paper's loop bit for bit as it was; each on, a valid, seeded
change."""

import math

import pytest
import torch

import leaps
from leaps import augment, cli, engine, parameterization
from leaps.config import InversionConfig
from leaps.errors import LeapsError, ShapeError
from leaps.inversion import Network, _stimulus_features, prepare
from leaps.models import build_model

TINY = dict(steps=3, frames=4, size=16, progress=False)
#: Every recipe field at its default, spelled out.
DEFAULTS = dict(param="pixel", aug_scale=None, aug_rotate=0.0, aug_time_shift=0, coarse_to_fine=1, extra_models=(),
                extra_weight=1.0, priming_per_frame=False, priming_mirror=False)
#: Each recipe switched on.
ON = {
    "fourier": dict(param="fourier"),
    "rigid": dict(param="rigid"),
    "aug_scale": dict(aug_scale=(0.8, 1.2)),
    "aug_rotate": dict(aug_rotate=15.0),
    "aug_time_shift": dict(aug_time_shift=1),
    "coarse_to_fine": dict(coarse_to_fine=2),
    "fourier_coarse_to_fine": dict(param="fourier", coarse_to_fine=2),
    "extra_models": dict(extra_models=("toy_r3d",)),
    "priming_per_frame": dict(priming_per_frame=True),
    "priming_mirror": dict(priming_mirror=True),
    "priming_per_frame_mirror": dict(priming_per_frame=True, priming_mirror=True),
}


def stimulus(seed=0, frames=4, size=16):
    return torch.rand(3, frames, size, size, generator=torch.Generator().manual_seed(seed))


def invert(net, ver, **options):
    return leaps.invert(net, [1, 2], stimulus(), verifier=ver, **(TINY | options))


# --------------------------------------------------------------------------------------------
# off by default: the trajectory of before
# --------------------------------------------------------------------------------------------

def reference_run(net, ver, steps=3, seed=0):
    """The loop as it was before the recipes: Adam on x* itself, roll + flip, clip; nothing else."""
    inv = prepare(net, [1, 2], stimulus(), ver, **(TINY | dict(steps=steps, seed=seed)))
    cfg = inv.cfg
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, cfg.frames, cfg.size, cfg.size, generator=gen) * cfg.init_scale
    low, high = (0 - inv.net.mean) / inv.net.std, (1 - inv.net.mean) / inv.net.std
    x = torch.maximum(torch.minimum(x, high), low).requires_grad_(True)
    schedule = engine.Schedule.build(cfg, x.device)
    lr = schedule.lr[0].clone()
    adam = torch.optim.Adam([x], lr=lr, betas=cfg.betas, fused=True)
    losses = []
    with inv:
        for s in range(steps):
            adam.zero_grad(set_to_none=True)
            lr.copy_(schedule.lr[s])
            terms = inv.objective(engine.augment(x, schedule.rows[s], schedule.cols[s]), inv.model_taps,
                                  inv.verifier_taps)
            values = inv.objective.stack(terms)
            for taps in inv._taps():
                taps.clear()
            values[0].backward()
            adam.step()
            with torch.no_grad():
                torch.maximum(torch.minimum(x, high), low, out=x)
            losses.append(values[0].item())
    return x.detach(), losses


def test_default_loop_is_the_loop_of_before(tiny_net, tiny_verifier):
    x, losses = reference_run(tiny_net, tiny_verifier)
    result = invert(tiny_net, tiny_verifier)
    assert torch.equal(result.x, x)
    assert result.history["loss"] == losses


def test_recipe_fields_at_their_defaults_change_nothing(tiny_net, tiny_verifier):
    plain = invert(tiny_net, tiny_verifier, seed=4)
    spelled = invert(tiny_net, tiny_verifier, seed=4, **DEFAULTS)
    assert torch.equal(plain.x, spelled.x) and plain.history == spelled.history


def test_by_default_adam_updates_x_star_itself_and_nothing_else_runs(tiny_net, tiny_verifier):
    inv = prepare(tiny_net, [1, 2], stimulus(), tiny_verifier, **TINY)
    assert inv.x is inv.param.leaf
    assert inv.optimiser.param_groups[0]["params"] == [inv.param.leaf]
    assert inv.transforms is None and inv._stage_starts == []
    assert list(inv.objective.names) == ["ce", "prim", "coh", "feat"]


# --------------------------------------------------------------------------------------------
# each recipe on: valid, different, reproducible
# --------------------------------------------------------------------------------------------

@pytest.fixture
def toy_nets(tiny_net, tiny_verifier):
    return tiny_net, tiny_verifier


@pytest.mark.parametrize("name", list(ON))
def test_recipe_changes_the_result_validly_and_reproducibly(name, tiny_net, tiny_verifier):
    default = invert(tiny_net, tiny_verifier)
    a = invert(tiny_net, tiny_verifier, **ON[name])
    b = invert(tiny_net, tiny_verifier, **ON[name])
    assert a.video.shape == default.video.shape == (2, 3, 4, 16, 16)
    assert a.x.shape == default.x.shape
    assert 0.0 <= a.video.min() and a.video.max() <= 1.0
    assert all(math.isfinite(v) for v in a.history["loss"])
    assert not torch.equal(a.x, default.x)
    assert torch.equal(a.x, b.x) and a.history == b.history
    c = invert(tiny_net, tiny_verifier, seed=1, **ON[name])
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("fields, message", [
    (dict(param="wavelet"), "parameterisation"),
    (dict(aug_scale=(1.2, 0.8)), "aug_scale"),
    (dict(aug_scale=(0.0, 1.0)), "aug_scale"),
    (dict(aug_scale=(1.0,)), "aug_scale"),
    (dict(aug_rotate=-1.0), "aug_rotate"),
    (dict(aug_rotate=float("nan")), "aug_rotate"),
    (dict(aug_time_shift=-1), "aug_time_shift"),
    (dict(aug_time_shift=1.5), "aug_time_shift"),
    (dict(coarse_to_fine=0), "coarse_to_fine"),
    (dict(coarse_to_fine=True), "coarse_to_fine"),
    (dict(coarse_to_fine=4, steps=3), "coarse_to_fine"),
    (dict(coarse_to_fine=5, size=16), "coarse_to_fine"),
    (dict(param="rigid", coarse_to_fine=2), "coarse to fine"),
    (dict(extra_models="toy_r3d"), "extra_models"),
    (dict(extra_weight=-1.0), "extra_weight"),
    (dict(extra_models=("toy_r3d",), objective="am"), "extra_models"),
    (dict(priming_per_frame=True, aug_time_shift=1), "priming_per_frame"),
    (dict(priming_per_frame=True, coarse_to_fine=2), "priming_per_frame"),
])
def test_bad_recipe_values_give_one_clear_error(fields, message):
    with pytest.raises(LeapsError, match=message):
        InversionConfig().replace(**fields).validate()


# --------------------------------------------------------------------------------------------
# parameterisation
# --------------------------------------------------------------------------------------------

def test_fourier_optimises_a_spectrum_and_gives_pixels_in_range(toy_nets):
    inv = prepare(toy_nets[0], [1, 2], stimulus(), toy_nets[1], **TINY, param="fourier")
    (spectrum,) = inv.optimiser.param_groups[0]["params"]
    assert spectrum.shape == (2, 3, 4, 16, 9, 2) and spectrum is inv.param.leaf
    with inv:
        inv.step()
    assert spectrum.grad is not None and spectrum.grad.abs().sum() > 0
    video = inv.pixels()
    assert video.shape == (2, 3, 4, 16, 16) and 0 < video.min() and video.max() < 1
    # x* is the spectrum's video in the model's normalisation
    assert torch.allclose(inv.x.detach(), (inv.param.pixels01().detach() - inv.net.mean) / inv.net.std)


def test_fourier_starts_grey_and_weights_low_frequencies():
    mean, std = torch.full((1, 3, 1, 1, 1), 0.45), torch.full((1, 3, 1, 1, 1), 0.225)
    p = parameterization.FourierParam(1, 4, 16, mean, std, torch.Generator().manual_seed(0), 1.0, "cpu")
    assert (p.pixels01() - 0.5).abs().max() < 0.05  # lucid's sd 0.01: a grey start
    scale = p.scale[0, 0, ..., 0]
    assert scale[0, 0, 0] == scale.max() and scale[0, 0, 1] > scale[0, 0, 4] > scale[0, 0, 8]
    colors = parameterization.color_correlation()
    assert torch.isclose(colors.norm(dim=0).max(), torch.tensor(1.0))


def rigid(image, frames=4, clip=False):
    low, high = torch.full((1, 3, 1, 1, 1), -9.0), torch.full((1, 3, 1, 1, 1), 9.0)
    return parameterization.RigidParam(image, frames, low, high, clip)


def test_rigid_starts_as_the_image_in_every_frame():
    image = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    video = rigid(image).video()
    assert video.shape == (2, 3, 4, 16, 16)
    assert torch.allclose(video, image[:, :, None].expand_as(video), atol=1e-5)


def test_rigid_motion_rotates_and_shifts_the_image_and_the_residual_adds():
    image = torch.zeros(1, 3, 16, 16)
    image[:, :, 2:4, 6:10] = 1.0  # a bar near the top, on a side of 16 (even: rot90 maps pixels onto pixels)
    p = rigid(image, frames=3)
    _, motion, _ = p.parts()
    angle, shift = math.pi / 2, 0.25  # a quarter turn in frame 1; 1/8 of the width (2 px) to the right in frame 2
    with torch.no_grad():
        p.leaf[0, 3 * 256 + 4 * 1] = angle / parameterization.RIGID_MOTION_SCALE
        p.leaf[0, 3 * 256 + 4 * 2 + 2] = shift / parameterization.RIGID_MOTION_SCALE
        p.leaf[0, 3 * 256 + 12:] = 0.5 / parameterization.RIGID_RESIDUAL_SCALE  # +0.5 everywhere
    video = p.video() - 0.5
    assert torch.allclose(video[:, :, 0], image, atol=1e-5)
    turned = video[:, :, 1]
    assert any(torch.allclose(turned, torch.rot90(image, k, dims=(2, 3)), atol=1e-4) for k in (1, -1))
    assert torch.allclose(video[:, :, 2, :, 2:], image[..., :-2], atol=1e-4)


def test_rigid_optimises_image_motion_and_residual_in_range(toy_nets):
    inv = prepare(toy_nets[0], [1, 2], stimulus(), toy_nets[1], **TINY, param="rigid")
    (leaf,) = inv.optimiser.param_groups[0]["params"]
    assert leaf is inv.param.leaf and leaf.shape == (2, 3 * 16 * 16 + 4 * 4 + 3 * 4 * 16 * 16)
    with inv:
        inv.step()
        inv.step()
    image, motion, residual = inv.param.parts()
    assert motion.abs().sum() > 0 and residual.abs().sum() > 0
    video = inv.pixels()
    assert video.shape == (2, 3, 4, 16, 16) and 0 <= video.min() and video.max() <= 1


def test_coarse_to_fine_grows_x_star_stage_by_stage(toy_nets):
    inv = prepare(toy_nets[0], [1], stimulus(), toy_nets[1], **(TINY | dict(steps=4, frames=8)), coarse_to_fine=2)
    assert inv._stage_starts == [2]
    shapes = []
    with inv:
        for _ in range(4):
            inv.step()
            shapes.append(tuple(inv.param.leaf.shape[2:]))
            assert inv.optimiser.param_groups[0]["params"] == [inv.param.leaf]
    assert shapes == [(4, 8, 8), (4, 8, 8), (8, 16, 16), (8, 16, 16)]
    assert inv.result().x.shape == (1, 3, 8, 16, 16)


def test_stage_shapes_halve_per_earlier_stage():
    assert [parameterization.stage_shape(8, 32, k, 3) for k in range(3)] == [(2, 8, 8), (4, 16, 16), (8, 32, 32)]
    assert parameterization.stage_starts(200, 3) == [67, 133]


def test_fourier_coarse_to_fine_masks_high_frequencies_first():
    mean, std = torch.zeros(1, 3, 1, 1, 1), torch.ones(1, 3, 1, 1, 1)
    p = parameterization.FourierParam(1, 4, 16, mean, std, torch.Generator().manual_seed(0), 1.0, "cpu", stages=2)
    mask = p.mask[0, 0, ..., 0]
    assert mask[0, 0, 0] == 1 and mask[0, 0, 8] == 0 and mask[2, 0, 0] == 0 and 0 < mask.mean() < 0.5
    p.next_stage()
    assert p.mask is None


def test_coarse_to_fine_cannot_be_captured():
    cfg = InversionConfig(coarse_to_fine=2, steps=4)
    with pytest.raises(LeapsError, match="CUDA graph"):
        engine.resolve_engine(cfg.replace(cuda_graph=True), torch.device("cuda"))
    fast = engine.resolve_engine(cfg.replace(fast=True), torch.device("cuda"))  # no GPU needed to decide
    assert not fast.cuda_graph and fast.amp is None
    assert engine.resolve_engine(InversionConfig(fast=True), torch.device("cuda")).cuda_graph


# --------------------------------------------------------------------------------------------
# transformation robustness
# --------------------------------------------------------------------------------------------

def test_transforms_leave_the_roll_and_flip_draws_alone():
    base = InversionConfig(steps=20, size=16, frames=4)
    on = base.replace(aug_scale=(0.9, 1.1), aug_rotate=10.0, aug_time_shift=2)
    a, b = engine.Schedule.build(base, "cpu"), engine.Schedule.build(on, "cpu")
    assert torch.equal(a.rows, b.rows) and torch.equal(a.cols, b.cols)
    t1, t2 = augment.Transforms.build(on, "cpu"), augment.Transforms.build(on, "cpu")
    assert torch.equal(t1.theta, t2.theta) and torch.equal(t1.frames, t2.frames)
    other = augment.Transforms.build(on.replace(seed=1), "cpu")
    assert not torch.equal(t1.theta, other.theta)
    shifts = {int((t1.frames[s, 0] - 0) % 4) for s in range(20)}
    assert shifts <= {0, 1, 2, 3} and len(shifts) > 1


def test_transforms_compute_what_they_say():
    x = torch.rand(2, 3, 4, 16, 16)
    step = torch.zeros(1, dtype=torch.long)
    identity = augment.Transforms.build(InversionConfig(steps=1, size=16, frames=4, aug_scale=(1.0, 1.0)), "cpu")
    assert torch.allclose(identity(x, step), x, atol=1e-5)
    roll = augment.Transforms(None, torch.tensor([[3, 0, 1, 2]]))
    assert torch.equal(roll(x, step), torch.roll(x, 1, dims=2))
    quarter = augment.Transforms(torch.tensor([[[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]]),
                                 None)
    turned = quarter(x, step)  # a quarter turn of a square frame is a permutation of its pixels
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(3, 4)), atol=1e-5) or \
        torch.allclose(turned, torch.rot90(x, -1, dims=(3, 4)), atol=1e-5)
    zoom = augment.Transforms.build(InversionConfig(steps=1, size=16, frames=4, aug_scale=(2.0, 2.0)), "cpu")
    flat = torch.ones(1, 3, 4, 16, 16)
    assert torch.allclose(zoom(flat, step), flat)


# --------------------------------------------------------------------------------------------
# an ensemble
# --------------------------------------------------------------------------------------------

def test_extra_models_add_their_weighted_mean_ce(toy_nets):
    one = invert(*toy_nets, extra_models=("toy_r3d",))
    half = invert(*toy_nets, extra_models=("toy_r3d",), extra_weight=0.5)
    assert "ce_extra" in one.history
    assert half.history["ce_extra"][0] == pytest.approx(0.5 * one.history["ce_extra"][0], rel=1e-6)
    # the first step's term is the extra model's CE on x* before any update
    inv = prepare(*toy_nets[:1], [1, 2], stimulus(), toy_nets[1], **TINY, extra_models=("toy_r3d",))
    extra = Network.wrap(build_model("toy_r3d", pretrained=True), "toy_r3d", None)
    with inv:
        terms = dict(zip(inv.term_names, inv.inference()[1:].tolist()))
    with torch.no_grad():
        x = inv.net.to_normalisation_of(inv.x, extra)
        ce = torch.nn.functional.cross_entropy(extra.module(x), inv.targets).item()
    assert terms["ce_extra"] == pytest.approx(ce, rel=1e-5)


def test_unknown_extra_model_is_one_clear_error(toy_nets):
    with pytest.raises(LeapsError, match="no_such_net"):
        invert(*toy_nets, extra_models=("no_such_net",))


# --------------------------------------------------------------------------------------------
# several stimuli a class
# --------------------------------------------------------------------------------------------

def test_several_stimuli_prime_with_their_mean(toy_nets):
    net = Network.wrap(toy_nets[0], None, None)
    cfg = InversionConfig(**TINY)
    a, b = stimulus(0), stimulus(1)
    both = _stimulus_features(net, [[a, b]], cfg, "cpu")
    one_a, one_b = _stimulus_features(net, [[a]], cfg, "cpu"), _stimulus_features(net, [[b]], cfg, "cpu")
    for m, ma, mb in zip(both, one_a, one_b):
        assert torch.allclose(m, (ma + mb) / 2, atol=1e-6)


# --------------------------------------------------------------------------------------------
# priming per frame, and by the nearer of the stimulus and its mirror image
# --------------------------------------------------------------------------------------------

def test_frames_as_channels_gives_per_frame_channel_means():
    from leaps.losses import channel_means, frames_as_channels

    z = torch.randn(2, 3, 5, 4, 6, dtype=torch.float64)
    per_frame = channel_means(frames_as_channels(z))
    assert per_frame.shape == (2, 15)
    assert torch.allclose(per_frame.view(2, 3, 5), z.mean(dim=(3, 4)))
    # channels last (B x T x H x W x C) gives the same vector
    assert torch.allclose(channel_means(frames_as_channels(z.permute(0, 2, 3, 4, 1), -1)), per_frame)
    # the whole-clip means are the mean of the per-frame ones
    assert torch.allclose(per_frame.view(2, 3, 5).mean(-1), channel_means(z))
    with pytest.raises(ShapeError, match="5-D"):
        frames_as_channels(torch.randn(2, 7, 3))


def test_mirrored_priming_takes_the_nearer_target_per_video():
    from leaps.losses import feature_distance, mirrored_priming_loss, priming_loss

    gen = torch.Generator().manual_seed(0)
    fx = [torch.rand(3, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    fv = [torch.rand(3, 4, generator=gen, dtype=torch.float64) for _ in range(2)]
    fm = [torch.rand(3, 4, generator=gen, dtype=torch.float64) for _ in range(2)]
    weights = [2.0, 0.5]
    loss = mirrored_priming_loss(fx, fv, fm, weights)
    by_hand = sum(w * torch.minimum(feature_distance(x, v), feature_distance(x, m)).mean()
                  for x, v, m, w in zip(fx, fv, fm, weights)) / 2
    assert torch.allclose(loss, by_hand)
    # a mirror equal to the stimulus gives eq. (1) itself; x* equal to the mirror costs nothing
    assert torch.allclose(mirrored_priming_loss(fx, fv, fv, weights), priming_loss(fx, fv, weights))
    assert mirrored_priming_loss(fm, fv, fm, weights).abs() < 1e-7  # JVS eps
    loss.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in fx)
    with pytest.raises(ShapeError, match="mirror"):
        mirrored_priming_loss(fx, fv, [m[:, :3] for m in fm], weights)


def test_mirror_features_are_those_of_the_flipped_stimulus(toy_nets):
    net = Network.wrap(toy_nets[0], None, None)
    cfg = InversionConfig(**TINY, priming_per_frame=True)
    a = stimulus(0)
    mirrored = _stimulus_features(net, [[a]], cfg, "cpu", mirror=True)
    flipped = _stimulus_features(net, [[a.flip(-1)]], cfg, "cpu")
    plain = _stimulus_features(net, [[a]], cfg, "cpu")
    whole_clip = _stimulus_features(net, [[a]], InversionConfig(**TINY), "cpu")
    for m, f, p, w in zip(mirrored, flipped, plain, whole_clip):
        assert torch.equal(m, f) and not torch.equal(m, p)
        assert p.shape[1] % w.shape[1] == 0 and p.shape[1] > w.shape[1]  # C_l T_l per-frame means
        frames = p.shape[1] // w.shape[1]
        assert torch.allclose(p.view(1, -1, frames).mean(-1), w, atol=1e-6)


def test_priming_options_compute_their_formula(toy_nets):
    from leaps.losses import channel_means, feature_distance, frames_as_channels

    x = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    for per_frame, mirror in [(True, False), (False, True), (True, True)]:
        inv = prepare(toy_nets[0], [1, 2], stimulus(), toy_nets[1],
                      **TINY, priming_per_frame=per_frame, priming_mirror=mirror)
        weight, prim = next((w, t) for w, t in inv.objective.terms.weighted if t.name == "prim")
        assert weight == 1.0 and prim.per_frame == per_frame and (prim.mirror_means is not None) == mirror
        with inv:
            got = inv.objective(x, inv.model_taps, inv.verifier_taps)["prim"]
            n = len(prim.layer_weights)
            acts, dims = inv.model_taps.features()[:n], inv.model_taps.feature_dims()[:n]
            feats = [channel_means(frames_as_channels(z, d)) if per_frame else channel_means(z, d)
                     for z, d in zip(acts, dims)]
        targets = prim.mirror_means if mirror else prim.stimulus_means
        want = sum(lam * torch.minimum(feature_distance(f, v), feature_distance(f, m)).mean()
                   for f, v, m, lam in zip(feats, prim.stimulus_means, targets, prim.layer_weights)) / n
        assert torch.allclose(got, want, atol=1e-6), (per_frame, mirror)


def test_demo_batch_gives_several_stimuli_a_class(tmp_path, monkeypatch):
    from leaps import demo, video

    written = []
    monkeypatch.setattr(video, "write_video", lambda clip, path, fps: written.append(path))  # no encoding
    labels, single = demo.demo_batch(tmp_path / "one")
    labels3, triple = demo.demo_batch(tmp_path / "three", stimuli_per_class=3)
    assert labels3 == labels and all(len(group) == 3 for group in triple)
    assert all(torch.equal(group[0], s) for group, s in zip(triple, single))
    assert not torch.equal(triple[0][0], triple[0][1])
    assert len({p for p in written if "three" in str(p)}) == 30
    with pytest.raises(LeapsError, match="stimuli_per_class"):
        demo.demo_batch(tmp_path, stimuli_per_class=0)


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------

REQUIRED = ["invert", "--model", "toy_r3d", "--target", "0", "--out", "o"]


def test_every_recipe_has_a_flag_that_parses_into_its_field():
    argv = REQUIRED + ["--param", "fourier", "--aug-scale", "0.9", "1.1", "--aug-rotate", "5", "--aug-time-shift", "1",
                       "--coarse-to-fine", "2", "--extra-models", "toy_r3d", "toy_x3d", "--extra-weight", "0.5",
                       "--priming-mirror"]
    cfg = cli._config_from_args(cli.build_parser().parse_args(argv))
    assert cfg.priming_mirror and not cfg.priming_per_frame
    assert cli._config_from_args(cli.build_parser().parse_args(REQUIRED + ["--priming-per-frame"])).priming_per_frame
    assert (cfg.param, cfg.aug_scale, cfg.aug_rotate, cfg.aug_time_shift, cfg.coarse_to_fine) == \
        ("fourier", (0.9, 1.1), 5.0, 1, 2)
    assert cfg.extra_models == ("toy_r3d", "toy_x3d") and cfg.extra_weight == 0.5
    assert cli._config_from_args(cli.build_parser().parse_args(REQUIRED)) == InversionConfig()


def test_help_lists_the_recipes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["invert", "--help"])
    text = capsys.readouterr().out
    for flag in ("--param {pixel,fourier,rigid}", "--aug-scale LO HI", "--aug-rotate DEG", "--aug-time-shift K",
                 "--coarse-to-fine N", "--extra-models NAME [NAME ...]", "--extra-weight", "--priming-per-frame",
                 "--priming-mirror"):
        assert flag in text


def test_invert_command_runs_a_recipe_and_rejects_a_bad_one(tmp_path, capsys):
    stim = tmp_path / "s.gif"
    from leaps.video import write_video

    write_video(stimulus(frames=8, size=32), stim, fps=8)
    base = ["invert", "--model", "toy_r3d", "--target", "0", "--stimulus", str(stim), "--steps", "2", "--frames", "4",
            "--size", "16", "--quiet"]
    assert cli.main(base + ["--out", str(tmp_path / "a"), "--param", "fourier", "--aug-rotate", "5"]) == 0
    assert (tmp_path / "a" / "leaps_0.mp4").exists() or list((tmp_path / "a").glob("*.gif"))
    capsys.readouterr()
    assert cli.main(base + ["--out", str(tmp_path / "b"), "--coarse-to-fine", "0"]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.count("error:") == 1
