"""The toy world: generator, dataset, stimuli, and the shipped (really trained) toy networks.

CPU only and fast: the accuracy checks classify 500 generated held-out clips per network.
"""

from collections import Counter
from pathlib import Path

import pytest
import torch

import leaps
from leaps.models import Preset, build_model, get_spec
from leaps.models.registry import ModelSpec
from leaps.toy import TOY_CLASSES, TOY_MEAN, TOY_NETS, TOY_STD, ToyVideos, build_toy_net, generate, generate_batch
from leaps.toy.checkpoint import read_checkpoint, save_checkpoint, shipped_path
from leaps.toy.data import stimulus_name, write_stimuli
from leaps.video import read_video

TOY_MODELS = [f"toy_{net}" for net in TOY_NETS] + ["toy_r3d_robust"]
SHIPPED = [(net, False) for net in TOY_NETS] + [("r3d", True)]  # (net, adversarially trained)
SHAPES = ("square", "ring", "bar")



@pytest.fixture(scope="module")
def test_clips():
    """500 held-out clips (split 'test', never used in training), normalised, with labels."""
    return ToyVideos("test", 500).batch(range(500))


@pytest.fixture(scope="module")
def shipped():
    """The shipped toy networks, loaded once for the module."""
    return {name: build_model(name, pretrained=True) for name in TOY_MODELS}


def _index(name: str) -> int:
    return TOY_CLASSES.index(name)


@torch.no_grad()
def _predict(model, videos01: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(TOY_MEAN).view(1, 3, 1, 1, 1), torch.tensor(TOY_STD).view(1, 3, 1, 1, 1)
    return model((videos01 - mean) / std).argmax(1)


# ---------------------------------------------------------------- classes and generator


def test_ten_distinct_classes_each_shape_in_several():
    assert len(TOY_CLASSES) == len(set(TOY_CLASSES)) == 10
    shapes = Counter(name.split()[0] for name in TOY_CLASSES)
    assert set(shapes) == set(SHAPES) and min(shapes.values()) >= 2  # no shape alone gives the class


def test_generate_is_deterministic_and_seed_dependent():
    a, b = generate(3, seed=11), generate(3, seed=11)
    assert torch.equal(a, b)
    assert not torch.equal(a, generate(3, seed=12))
    assert (a - generate(3, seed=12)).abs().mean() > 0.02  # a different video, not just noise
    assert not torch.equal(a, generate(3, seed=11 + 2**32))  # every bit of a seed counts
    with pytest.raises(ValueError):
        generate(3, seed=-1)


def test_shape_range_and_custom_geometry():
    video = generate(0, seed=0)
    assert video.shape == (3, 8, 64, 64) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1
    small = generate(8, seed=0, frames=5, size=40)
    assert small.shape == (3, 5, 40, 40)


def test_batch_rendering_equals_one_at_a_time():
    labels, seeds = [0, 4, 9, 6] * 20, list(range(80))  # more than one internal chunk
    batch = generate_batch(labels, seeds)
    for i in (0, 1, 2, 3, 79):
        assert torch.equal(batch[i], generate(labels[i], seeds[i]))


@pytest.mark.parametrize("shape", SHAPES)
def test_first_frame_tells_only_the_shape(shape):
    """All classes of a shape render the same frame 0 for a seed: one frame cannot tell them apart."""
    labels = [i for i, name in enumerate(TOY_CLASSES) if name.startswith(shape)]
    for seed in range(3):
        videos = generate_batch(labels, [seed] * len(labels))
        for other in videos[1:]:
            assert torch.equal(other[:, 0], videos[0][:, 0])
            assert (other[:, 1:] - videos[0][:, 1:]).abs().amax() > 0.3  # but the motion differs


def test_object_contrasts_with_background():
    from leaps.toy.data import _colours, _draw

    uniforms, _, _ = _draw(range(2000), frames=1, size=8)
    background, obj = _colours(uniforms)
    assert (obj.mean(1) - background.mean(1)).abs().min() >= 0.15  # luminance, after tinting


# ---------------------------------------------------------------- dataset


def test_dataset_is_balanced_deterministic_and_split_specific():
    data = ToyVideos("train", 200)
    assert len(data) == 200
    assert Counter(data.label(i) for i in range(len(data))) == {c: 20 for c in range(10)}
    video, label = data[13]
    assert label == 3 and video.shape == (3, 8, 64, 64)
    assert torch.equal(video, ToyVideos("train", 200)[13][0])
    assert torch.equal(data.batch([13])[0][0], video)
    pixels = video * torch.tensor(TOY_STD).view(3, 1, 1, 1) + torch.tensor(TOY_MEAN).view(3, 1, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert not torch.equal(video, ToyVideos("test", 200)[13][0])
    assert not torch.equal(video, ToyVideos("train", 200, seed=1)[13][0])
    with pytest.raises(IndexError):
        data[200]
    with pytest.raises(ValueError):
        ToyVideos("holdout")


def test_write_stimuli_writes_readable_mp4s(tmp_path):
    paths = write_stimuli(tmp_path, per_class=1, seed=0)
    assert [p.name for p in paths] == [f"{stimulus_name(c)}.mp4" for c in range(10)]
    assert paths[0].name == "00_square_moving_up_0.mp4"
    clip = read_video(paths[6], frames=8, size=64)
    assert clip.shape == (3, 8, 64, 64)
    assert clip.std() > 0.05  # not blank


# ---------------------------------------------------------------- networks


@pytest.mark.parametrize("net", list(TOY_NETS))
def test_networks_are_small_have_batchnorm_and_adaptive_heads(net):
    model = build_toy_net(net).eval()
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules()) >= 5
    with torch.no_grad():
        for shape in ((1, 3, 8, 64, 64), (2, 3, 4, 48, 80), (1, 3, 16, 112, 112)):
            assert model(torch.rand(shape)).shape == (shape[0], 10)


@pytest.mark.parametrize("name", TOY_MODELS)
def test_specs_registered_with_class_names(name):
    spec = get_spec(name)
    assert spec.source == "toy" and spec.kind == "cnn" and not spec.fixed_size
    assert spec.input_geometry == (8, 64, 64)
    assert spec.mean == TOY_MEAN and spec.std == TOY_STD
    assert spec.class_names == tuple(TOY_CLASSES)


def test_toy_presets_follow_table_s1():
    assert get_spec("toy_r3d").preset == Preset(1.0, 0.3, 7.5e-3)  # 3D R50
    assert get_spec("toy_x3d").preset == Preset(1.0, 0.1, 1e-3)  # X3D-S


def test_class_names_field_is_optional():
    assert get_spec("slow_r50").class_names is None
    assert ModelSpec.__dataclass_fields__["class_names"].default is None


@pytest.mark.parametrize("net, robust", SHIPPED)
def test_shipped_checkpoint_metadata(net, robust):
    path = Path(str(shipped_path(net, robust)))
    assert path.is_file() and path.stat().st_size < 2_500_000
    state, meta = read_checkpoint(path)
    assert meta["classes"] == TOY_CLASSES and meta["net"] == net
    assert (meta["frames"], meta["size"]) == (8, 64)
    assert tuple(meta["mean"]) == TOY_MEAN and tuple(meta["std"]) == TOY_STD
    assert meta["test_accuracy"] >= 0.95 and meta["test_clips"] >= 1000
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    if robust:  # what the zoo notes say it was trained with
        assert meta["adv_eps"] == pytest.approx(32 / 255) and meta["adv_attack"] == "pgd-3"
        assert meta["init_adv_eps"] == pytest.approx(16 / 255) and meta["adv_warmup_epochs"] == 1
        assert meta["robust_test_accuracy"] >= 0.6  # PGD-3 at 32/255 on 200 test clips (measured 0.705)
    else:
        assert "adv_eps" not in meta


@pytest.mark.parametrize("name", TOY_MODELS)
def test_shipped_models_are_accurate_on_held_out_clips(name, shipped, test_clips):
    model = shipped[name]
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    videos, labels = test_clips
    with torch.no_grad():
        accuracy = (model(videos).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.95, f"{name}: {accuracy:.3f}"


def test_classes_need_motion_time_reversal_swaps_them(shipped):
    """Reversed in time, a square moving up is a square moving down; a ring growing shrinks."""
    model = shipped["toy_r3d"]
    seeds = range(1000, 1030)
    for forward, backward in (("square moving up", "square moving down"), ("ring growing", "ring shrinking")):
        clips = generate_batch([_index(forward)] * len(seeds), list(seeds))
        assert (_predict(model, clips) == _index(forward)).float().mean() >= 0.9
        assert (_predict(model, clips.flip(2)) == _index(backward)).float().mean() >= 0.9


def test_classes_are_mirror_invariant(shipped, test_clips):
    """LEAPS flips x* left-right while optimising: no toy class may change under a mirror."""
    videos, labels = test_clips
    with torch.no_grad():
        accuracy = (shipped["toy_x3d"](videos.flip(-1)).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.95


def test_invert_resolves_toy_class_names(shipped):
    model, verifier = shipped["toy_r3d"], shipped["toy_x3d"]
    stimulus = generate(_index("ring growing"), seed=5)
    result = leaps.invert(model, "Ring growing", stimulus, verifier=verifier, frames=8, size=64, steps=2,
                          progress=False)
    assert result.targets == [_index("ring growing")]
    assert result.video.shape == (1, 3, 8, 64, 64)


def test_fgsm_perturbation_stays_in_the_pixel_ball():
    """Adversarial training (--adv-eps): perturbed pixels within eps of the clean ones, in [0, 1]."""
    from leaps.toy.train import fgsm_perturb

    torch.manual_seed(0)
    model = build_toy_net("x3d", len(TOY_CLASSES)).eval()
    videos, labels = ToyVideos("train", 4).batch(range(4))
    eps = 8 / 255
    before = [p.clone() for p in model.parameters()]
    adv = fgsm_perturb(model, videos, labels, eps, torch.Generator().manual_seed(0))
    mean, std = torch.tensor(TOY_MEAN).view(1, 3, 1, 1, 1), torch.tensor(TOY_STD).view(1, 3, 1, 1, 1)
    clean, pert = videos * std + mean, adv * std + mean
    assert adv.shape == videos.shape and not adv.requires_grad
    assert (pert - clean).abs().max() <= eps + 1e-5 and (pert - clean).abs().max() > eps / 2
    assert pert.min() >= -1e-6 and pert.max() <= 1 + 1e-6
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, model.parameters()))


def test_robust_name_refuses_a_standard_checkpoint(monkeypatch):
    import leaps.models.toy_zoo as toy_zoo

    monkeypatch.setattr(toy_zoo, "shipped_path", lambda net, robust=False: shipped_path(net))  # the standard file
    with pytest.raises(leaps.errors.WeightsError, match="not trained adversarially"):
        build_model("toy_r3d_robust", pretrained=True)


def test_shipped_path_through_a_namespace_path(monkeypatch):
    # a package found through a namespace path is a MultiplexedPath, whose joinpath takes one name (Python 3.11)
    from importlib.resources.readers import MultiplexedPath

    import leaps.toy.checkpoint as checkpoint

    root = Path(leaps.__file__).parent
    monkeypatch.setattr(checkpoint.resources, "files", lambda package: MultiplexedPath(root))
    path = shipped_path("r3d")
    assert Path(str(path)) == root / "data" / "toy_r3d.pt"
    state, meta = read_checkpoint(path)
    assert meta["net"] == "r3d" and state


@pytest.mark.parametrize("steps", [1, 3])
def test_pgd_perturbation_stays_in_the_pixel_ball_and_beats_fgsm(steps):
    """--adv-steps: PGD from the same start, every step projected onto the eps-ball and [0, 1]."""
    from leaps.toy.train import fgsm_perturb, recalibrate_batchnorm

    torch.manual_seed(0)
    model = build_toy_net("x3d", len(TOY_CLASSES))
    recalibrate_batchnorm(model, ToyVideos("train", 8))
    videos, labels = ToyVideos("train", 6).batch(range(6))
    eps = 8 / 255
    adv = fgsm_perturb(model, videos, labels, eps, torch.Generator().manual_seed(0), steps=steps)
    mean, std = torch.tensor(TOY_MEAN).view(1, 3, 1, 1, 1), torch.tensor(TOY_STD).view(1, 3, 1, 1, 1)
    clean, pert = videos * std + mean, adv * std + mean
    assert (pert - clean).abs().max() <= eps + 1e-5
    assert pert.min() >= -1e-6 and pert.max() <= 1 + 1e-6
    if steps > 1:  # three projected steps raise the loss above one FGSM step from the same start
        fgsm = fgsm_perturb(model, videos, labels, eps, torch.Generator().manual_seed(0))
        with torch.no_grad():
            loss = [torch.nn.functional.cross_entropy(model(x), labels) for x in (fgsm, adv)]
        assert loss[1] > loss[0]


def test_adversarial_radius_warms_up_linearly():
    from leaps.toy.train import adv_radius

    assert adv_radius(1, 0.1, 0) == 0.1
    assert [round(adv_radius(b, 0.1, 4), 6) for b in (1, 2, 4, 9)] == [0.025, 0.05, 0.1, 0.1]


def test_batches_land_on_the_training_device():
    from leaps.toy.train import OnDevice

    data = OnDevice(ToyVideos("train", 4), "meta")
    videos, labels = data.batch([0, 1])
    assert len(data) == 4 and videos.device.type == labels.device.type == "meta"


def test_training_cli_writes_a_named_variant(tmp_path):
    from leaps.toy.checkpoint import read_checkpoint as read
    from leaps.toy.train import main

    init = tmp_path / "toy_x3d_init.pt"
    save_checkpoint(build_toy_net("x3d", len(TOY_CLASSES)), {"net": "x3d"}, init)
    assert main(["--nets", "x3d", "--epochs", "1", "--train-clips", "8", "--batch", "8", "--test-clips", "10",
                 "--init", str(init), "--val-clips", "10", "--bn-clips", "16",
                 "--adv-eps", "0.03", "--adv-steps", "2", "--adv-warmup", "0.5", "--name-suffix", "_t",
                 "--out", str(tmp_path)]) == 0
    _, meta = read(tmp_path / "toy_x3d_robust_t.pt")
    assert meta["adv_attack"] == "pgd-2" and meta["adv_warmup_epochs"] == 0.5 and meta["device"] == "cpu"
    assert meta["init"] == "toy_x3d_init.pt" and meta["init_adv_eps"] == 0.0
