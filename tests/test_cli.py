"""The `leaps` command line: every registered model end to end, and one clear error line for bad input."""

import json

import pytest
import torch

from leaps import cli
from leaps.models import build_model, list_models
from leaps.video import make_test_video

SMALL = ["--steps", "1", "--frames", "4", "--size", "64", "--quiet"]
RANDOM = "--random-weights"  # the Kinetics models have no shipped weights: random ones must be asked for


@pytest.fixture(scope="module")
def stimulus(tmp_path_factory):
    return str(make_test_video(tmp_path_factory.mktemp("stim") / "stimulus.mp4", frames=8, size=64))


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, *needles):
    """Exit status 2 and one `leaps: error:` line last on stderr (after warnings, e.g. about --random-weights)."""
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert lines and lines[-1].startswith("leaps: error:"), err
    assert all(l.startswith("leaps: warning:") for l in lines[:-1]), err
    for needle in needles:
        assert needle in lines[-1]


def test_models_table(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for spec in list_models():
        assert spec.name in out
    assert "lambda_1" in out


def save_checkpoint(model, path, style):
    state = model.state_dict()
    if style == "pyth":
        torch.save({"model_state": state, "epoch": 3}, path)
    elif style == "module":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)


# mvit_v2_s has a fixed input size (relative positions of 16 x 224^2); every other model runs small.
NATIVE_ONLY = {"mvit_v2_s"}


# The transformers leaps builds itself: full-size only, inverted in test_zoo_transformers.py. The
# judges are never inverted (tests/test_toy_judges.py checks that they are refused).
@pytest.mark.parametrize("spec", [s for s in list_models() if s.source != "leaps" and not s.judge],
                         ids=lambda s: s.name)
def test_invert_every_model_with_local_weights(spec, stimulus, tmp_path, capsys):
    torch.manual_seed(0)
    styles = ["plain", "pyth", "module"]
    style = styles[[s.name for s in list_models()].index(spec.name) % 3]
    weights = tmp_path / f"{spec.name}.{'pyth' if style == 'pyth' else 'pth'}"
    save_checkpoint(build_model(spec.name, num_classes=7), weights, style)
    geometry = [] if spec.name in NATIVE_ONLY else ["--model-input", "4", "64"]
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "invert", "--model", spec.name, "--weights", str(weights), "--num-classes", "7",
        "--target", "3", "--stimulus", stimulus, "--out", str(out), *SMALL, *geometry,
    )
    assert code == 0, err
    assert "top-1 of the inverted model" in stdout
    summary = json.loads((out / "leaps_history.json").read_text())
    assert summary["targets"] == [3] and len(summary["history"]["loss"]) == 1
    assert (out / "leaps.mp4").stat().st_size > 0 and (out / "leaps.png").stat().st_size > 0


def test_invert_with_verifier_batch_and_ablation(stimulus, tmp_path, capsys):
    weights = tmp_path / "x3d_xs.pth"
    torch.save(build_model("x3d_xs").state_dict(), weights)
    code, out, err = run(
        capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "juggling balls", "--target", "5",
        "--stimulus", stimulus, "--verifier", "x3d_xs", "--verifier-weights", str(weights),
        "--verifier-input", "4", "64", "--no-coherence", "--batch", "2", "--out", str(tmp_path / "o"), *SMALL,
    )
    assert code == 0, err
    assert "top-1 of the verifier" in out
    summary = json.loads((tmp_path / "o" / "leaps_history.json").read_text())
    assert summary["targets"] == [169, 169, 5, 5]  # juggling balls is class 169 of Kinetics-400
    assert "feat" in summary["history"] and "coh" not in summary["history"]


def test_baseline_methods_need_no_stimulus(tmp_path, capsys):
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0", "--method", "deepdream",
                       "--out", str(tmp_path / "dd"), *SMALL)
    assert code == 0, err


# ------------------------------------------------------------------ bad input: one line, exit 2

def test_unknown_model(capsys, tmp_path):
    code, _, err = run(capsys, "invert", "--model", "slow_r5O", "--target", "0", "--stimulus", "x.mp4",
                       "--out", str(tmp_path))
    assert_one_error_line(code, err, "slow_r5O", "slow_r50")


def test_unknown_class(capsys, tmp_path, stimulus):
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "juggling bals",
                       "--stimulus", stimulus,
                       "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "juggling bals", "juggling balls")


def test_negative_prior_tv(capsys, tmp_path, stimulus):
    code, _, err = run(capsys, "invert", "--model", "toy_r3d", "--target", "0", "--stimulus", stimulus,
                       "--prior-tv", "-1", "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "prior_tv", "-1")


def test_missing_video(capsys, tmp_path):
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0",
                       "--stimulus", str(tmp_path / "nope.mp4"),
                       "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "not found", "nope.mp4")


def test_corrupt_video(capsys, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0", "--stimulus", str(bad),
                       "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "bad.mp4")


def test_empty_video(capsys, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0", "--stimulus", str(empty),
                       "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "empty.mp4", "no frames")


def test_missing_weights(capsys, tmp_path, stimulus):
    code, _, err = run(capsys, "invert", "--model", "r3d_18", "--weights", str(tmp_path / "w.pth"), "--target", "0",
                       "--stimulus", stimulus, "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "w.pth")


def test_verifier_without_batchnorm(capsys, tmp_path, stimulus):
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0", "--stimulus", stimulus,
                       "--verifier", "swin3d_t", "--verifier-random-weights", "--verifier-input", "4", "64",
                       "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "BatchNorm")


def test_missing_stimulus(capsys, tmp_path):
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0", "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "--stimulus")


def test_non_finite_loss_keeps_last_video(capsys, tmp_path, stimulus, monkeypatch):
    from leaps import inversion
    from leaps.errors import NonFiniteLossError

    def exploding(*args, **kwargs):
        raise NonFiniteLossError("the loss became nan at step 4", step=4, last_finite=torch.rand(1, 3, 4, 16, 16))

    monkeypatch.setattr(inversion, "invert", exploding)
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0", "--stimulus", stimulus,
                       "--out", str(tmp_path / "o"), *SMALL)
    assert code == 2
    assert "leaps: error: the loss became nan" in err
    assert (tmp_path / "o" / "last_finite.mp4").exists()


def test_cuda_not_available(capsys, tmp_path, stimulus):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0", "--stimulus", stimulus,
                       "--device", "cuda", "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "CUDA")


def test_demo_writes_a_video(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--steps", "1", "--out", str(tmp_path / "demo"), "--quiet")
    assert code == 0, err
    for name in ("leaps.mp4", "leaps.gif", "leaps.png", "leaps_0.mp4", "stimuli/06_ring_growing.mp4"):
        assert (tmp_path / "demo" / name).stat().st_size > 0
    assert "ring growing" in out and "top-1 of the verifier" in out


def test_demo_unknown_class(capsys, tmp_path):
    code, _, err = run(capsys, "demo", "--steps", "1", "--target", "ring shrinkin", "--out", str(tmp_path), "--quiet")
    assert_one_error_line(code, err, "ring shrinkin", "ring shrinking")


def test_engine_options_reach_the_loop(capsys, tmp_path, stimulus):
    code, _, err = run(capsys, "invert", "--model", "toy_r3d", "--pretrained", "--target", "0", "--stimulus", stimulus,
                       "--verifier", "toy_x3d", "--verifier-pretrained", "--checkpoint", "--channels-last",
                       "--amp", "bf16", "--sync-every", "2", "--out", str(tmp_path / "e"),
                       "--steps", "3", "--frames", "4", "--size", "32", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "e" / "leaps_history.json").read_text())
    assert len(summary["history"]["loss"]) == 3


def test_cuda_graph_without_gpu_is_one_error_line(capsys, tmp_path, stimulus):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run(capsys, "invert", "--model", "r3d_18", RANDOM, "--target", "0", "--stimulus", stimulus,
                       "--cuda-graph", "--out", str(tmp_path), *SMALL)
    assert_one_error_line(code, err, "cuda_graph")


def test_demo_preset_reaches_the_inversion(capsys, tmp_path, monkeypatch):
    import leaps.inversion
    from leaps.config import InversionConfig
    from leaps.demo import DEMO_PRESET, demo_config

    # the demo's preset is the demo's own: the library defaults keep the paper's objective
    assert InversionConfig().prior_tv == 0.0 and InversionConfig().r is None and InversionConfig().init_scale == 1.0
    cfg = demo_config(7, progress=False)
    assert (cfg.steps, cfg.frames, cfg.progress) == (7, 8, False)
    # x* is optimised at 32^2 and both networks see it upsampled to the toy networks' 64^2
    assert (cfg.size, cfg.model_input, cfg.verifier_input) == (32, (8, 64), (8, 64))
    for key, value in DEMO_PRESET.items():
        assert getattr(cfg, key) == value
    assert cfg.objective == "leaps" and cfg.use_ce and cfg.use_priming and cfg.use_coherence and cfg.use_feat
    seen = {}
    real_invert = leaps.inversion.invert

    def spy(model, target, stimulus, verifier, config):
        seen["config"] = config
        return real_invert(model, target, stimulus, verifier, config)

    monkeypatch.setattr(leaps.inversion, "invert", spy)
    code, out, err = run(capsys, "demo", "--steps", "1", "--out", str(tmp_path / "demo"), "--quiet")
    assert code == 0, err
    assert seen["config"] == demo_config(1, progress=False)
    code, _, err = run(capsys, "demo", "--steps", "1", "--seed", "3", "--out", str(tmp_path / "demo3"), "--quiet")
    assert code == 0, err
    assert seen["config"] == demo_config(1, progress=False, seed=3) and seen["config"].seed == 3
    assert "preset toy-demo" in out and "prior_tv=1.0" in out
    import av

    with av.open(str(tmp_path / "demo" / "leaps_0.mp4")) as container:  # written at 64^2, as the networks saw it
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 64)
    assert "prior_tv" in json.loads((tmp_path / "demo" / "leaps_history.json").read_text())["history"]
