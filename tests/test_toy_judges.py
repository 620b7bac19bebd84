"""The judges: other families than the inverted networks, trained apart, shipped, and kept out of every objective."""

import json

import pytest
import torch
from torch import nn

import leaps
import leaps.inversion
from benchmarks import quality
from leaps import cli, demo
from leaps.errors import JudgeError, LeapsError
from leaps.models import build_model, get_spec, list_models
from leaps.toy import JUDGE_NETS, JUDGES, TOY_CLASSES, ToyVideos, generate_batch, is_judge, judge_scores
from leaps.toy.checkpoint import read_checkpoint, shipped_path
from leaps.toy.data import _SPLIT_BASE, SPLITS
from leaps.toy.judge_train import augment, time_reversed_labels, train_judge
from leaps.toy.judging import judge_probs


@pytest.fixture(scope="module")
def fresh_clips():
    """300 judge-test clips the shipped measurement (seed 0, first 1,000) did not use: pixels in [0, 1]."""
    return ToyVideos("judge_test", 300, seed=1, normalize=False).batch(range(300))


# ---------------------------------------------------------------- networks and registry


@pytest.mark.parametrize("name", JUDGES)
def test_judges_are_registered_as_judges_and_have_no_batchnorm(name):
    spec = get_spec(name)
    assert spec.judge and spec.ships_weights and spec.class_names == tuple(TOY_CLASSES)
    assert "judge" in spec.notes
    model = build_model(name, num_classes=10)  # random weights
    assert is_judge(model) and is_judge(spec)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) <= 310_000  # "about 300 k"
    with torch.no_grad():
        assert model(torch.rand(2, 3, 4, 32, 48)).shape == (2, 10)  # other sizes than 8 x 64^2


def test_judges_are_exactly_the_judge_specs_and_of_other_families():
    assert set(JUDGES) == {s.name for s in list_models() if s.judge} == {f"toy_{n}" for n in JUDGE_NETS}
    assert not any(get_spec(n).judge for n in ("toy_r3d", "toy_x3d", "toy_r2plus1d", "toy_r3d_robust"))
    assert {get_spec(n).kind for n in JUDGES} == {"cnn", "transformer"}


@pytest.mark.parametrize("name", JUDGES)
def test_shipped_judge_weights_load_and_record_their_training(name):
    model = build_model(name, pretrained=True)
    meta = model.toy_meta
    assert meta["judge"] and meta["classes"] == TOY_CLASSES
    assert meta["splits"] == {"train": "judge_train", "val": "judge_val", "test": "judge_test"}
    assert meta["test_accuracy"] >= 0.97 and meta["test_clips"] >= 1000
    state, _ = read_checkpoint(shipped_path(name.removeprefix("toy_")))
    assert all(t.dtype == torch.float32 for t in state.values())


@pytest.mark.parametrize("name", JUDGES)
def test_shipped_judges_recognise_fresh_judge_test_clips(name, fresh_clips):
    videos, labels = fresh_clips
    probs = judge_probs(videos, [name])[name]
    assert (probs.argmax(1) == labels).float().mean() >= 0.95


# ---------------------------------------------------------------- data: a seed range of their own


def test_judge_seed_ranges_are_disjoint_from_every_other():
    spans = sorted((base, base + (1 << 48)) for base in _SPLIT_BASE.values())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert {"judge_train", "judge_val", "judge_test"} <= set(SPLITS)
    for split in ("judge_train", "judge_val", "judge_test"):
        data = ToyVideos(split, 10, seed=7)
        assert _SPLIT_BASE[split] <= data.item_seed(0) < data.item_seed(9) < _SPLIT_BASE[split] + (1 << 48)
    # the other seeds the project uses (quality.py's and the demo's stimuli) are far below every split
    assert max(quality.stimuli_seed(s, c) for s in range(100) for c in range(10)) < min(_SPLIT_BASE.values())
    assert demo.DEMO_STIMULUS_SEED + len(TOY_CLASSES) < min(_SPLIT_BASE.values())
    with pytest.raises(ValueError, match="judge_test"):
        ToyVideos("judge", 10)


def test_existing_splits_render_the_same_videos():
    # The judge splits were added; the item seeds of the older splits are unchanged.
    assert ToyVideos("train", 4, seed=3).item_seed(2) == (1 << 48) + 3 * (1 << 32) + 2
    assert ToyVideos("test", 4).item_seed(3) == (3 << 48) + 3


def test_time_reversal_swaps_the_directional_classes_only():
    reversed_ = time_reversed_labels()
    names = {TOY_CLASSES[i]: TOY_CLASSES[int(j)] for i, j in enumerate(reversed_)}
    assert names["square moving up"] == "square moving down" and names["ring growing"] == "ring shrinking"
    assert names["bar rotating"] == "bar rotating" and names["square blinking"] == "square blinking"
    assert torch.equal(reversed_[reversed_], torch.arange(len(TOY_CLASSES)))


def test_augmentation_keeps_pixels_in_range_and_is_seeded():
    labels = torch.arange(10)
    videos = generate_batch(labels, list(range(10)))
    a, la = augment(videos, labels, torch.Generator().manual_seed(0))
    b, lb = augment(videos, labels, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(la, lb) and a.shape == videos.shape
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, videos)
    assert set(la.tolist()) <= set(range(10))


def test_judge_training_is_deterministic():
    runs = [train_judge("judge_2d", epochs=1, train_clips=16, batch=8, test_clips=10, val_clips=10,
                        log=lambda *_: None) for _ in range(2)]
    (first, meta), (second, _) = runs
    assert meta["judge"] and meta["seed"] == 7
    for (key, x), y in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(x, y), key


def test_train_cli_refuses_adversarial_judges(capsys):
    from leaps.toy import train

    with pytest.raises(SystemExit):
        train.main(["--nets", "judge_2d", "--adv-eps", "0.01", "--out", "/nonexistent"])
    assert "judges" in capsys.readouterr().err


# ---------------------------------------------------------------- scoring


def test_judge_scores_on_real_clips_and_on_noise():
    labels = list(range(10)) * 2
    clips = ToyVideos("judge_test", 20, seed=2, normalize=False).batch(range(20))[0]
    real = judge_scores(clips, labels)
    noise = judge_scores(torch.rand(20, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0)), labels)
    assert list(real) == list(JUDGES) == list(noise)
    for name in JUDGES:
        # label smoothing 0.05 keeps p(target) below about 0.95 even on clean clips
        assert real[name]["top1"] >= 0.95 and real[name]["p_target"] >= 0.6, (name, real[name])
        assert noise[name]["top1"] <= 0.3 and noise[name]["p_target"] <= 0.3, (name, noise[name])


def test_judge_scores_resize_other_geometries():
    labels = list(range(10))
    clips = ToyVideos("judge_test", 10, seed=3, normalize=False).batch(range(10))[0]
    small = torch.nn.functional.interpolate(clips, size=(8, 32, 32), mode="trilinear", align_corners=False)
    scores = judge_scores(small, labels)
    assert all(s["top1"] >= 0.7 for s in scores.values()), scores


def test_judge_scores_reject_bad_input():
    with pytest.raises(LeapsError, match="N x 3 x T x H x W"):
        judge_scores(torch.rand(3, 8, 64, 64), [0])
    with pytest.raises(LeapsError, match="2 videos but 1 targets"):
        judge_scores(torch.rand(2, 3, 8, 64, 64), [0])
    with pytest.raises(LeapsError, match="not a judge"):
        judge_scores(torch.rand(1, 3, 8, 64, 64), [0], judges=["toy_r3d"])


# ---------------------------------------------------------------- never in an objective


@pytest.mark.parametrize("role", ["model", "verifier"])
def test_invert_refuses_a_judge(role):
    judge = build_model("toy_judge_2d", pretrained=True)
    other = build_model("toy_x3d", pretrained=True)
    model, verifier = (judge, other) if role == "model" else (other, judge)
    stimulus = generate_batch([6], [0])
    with pytest.raises(JudgeError, match="toy_judge_2d is a judge"):
        leaps.invert(model, 6, stimulus, verifier, steps=1, progress=False)


def test_cli_invert_refuses_a_judge(capsys, tmp_path):
    code = cli.main(["invert", "--model", "toy_judge_attn", "--target", "ring growing", "--steps", "1", "--quiet",
                     "--no-priming", "--out", str(tmp_path / "out")])
    assert code == 2 and "toy_judge_attn is a judge" in capsys.readouterr().err


def test_quality_refuses_judges_and_has_judge_columns():
    with pytest.raises(JudgeError):
        quality.check_not_judges("toy_r3d", "toy_judge_attn")
    quality.check_not_judges(quality.INVERTED, quality.VERIFIER)
    per_seed = [{j: {"top1": t, "p_target": p} for j in JUDGES} for t, p in ((1.0, 0.9), (0.8, 0.7))]
    summary = quality._judge_summary(per_seed)
    for j in JUDGES:
        assert summary[j]["top1"] == pytest.approx(90.0) and summary[j]["top1_std"] == pytest.approx(10.0)
        assert summary[j]["p_target"] == pytest.approx(0.8) and summary[j]["p_target_std"] == pytest.approx(0.1)
        assert summary[j]["top1_per_seed"] == [100.0, 80.0]
    row = quality.Row(50.0, 60.0, (2.0, 0.1), (3.0, 0.2), 0.9, 30.0, 1.0, judges=summary)
    md = quality.table_markdown("T", {"x": row}, "method")
    header, rule, line = md.splitlines()[2:5]
    assert "top-1 J2D (%)" in header and "p(target) JAttn" in header
    assert header.count("|") == rule.count("|") == line.count("|")
    assert "90.0 ± 10.0" in line and "0.80 ± 0.10" in line
    assert "top-1 (J2D)" in quality.distance_markdown({"JVS": row}) and "JAttn" in quality.judge_line(row)
    assert row.as_dict()["judges"] == summary


def test_demo_prints_and_records_the_judges(tmp_path, capsys, monkeypatch):
    from tests.test_demo import fake_result

    def run(invert_fn, out):  # as the CLI's: the result's save() writes leaps_run.json
        invert_fn().save(out)
        return 0

    monkeypatch.setattr(leaps.inversion, "invert", lambda model, labels, stimuli, verifier, config: fake_result(labels))
    monkeypatch.setattr(demo, "demo_networks", lambda device: (None, None))
    assert demo.run_demo(tmp_path / "demo", steps=2, device="cpu", progress=False, run=run) == 0
    printed = capsys.readouterr().out
    lines = printed[printed.index("judges ("):].splitlines()[1:1 + len(JUDGES)]
    recorded = json.loads((tmp_path / "demo" / "leaps_run.json").read_text())["judges"]
    assert list(recorded) == list(JUDGES)
    for name, line in zip(JUDGES, lines):
        assert name in line and "top-1" in line and "mean p(target)" in line
        assert 0 <= recorded[name]["top1"] <= 1 and 0 <= recorded[name]["p_target"] <= 1
