"""What a new user of `leaps` runs into: a bad --out, bad option values, missing weights, negative targets.

Every bad input ends in one `leaps: error: ...` line and exit status 2, found before a model is built
or a file is written. Runs the shipped toy networks on tiny inputs (seconds on CPU).
"""

import os
import shutil

import pytest
import torch

import leaps.inversion
import leaps.models
from leaps import cli
from leaps.classes import resolve_target
from leaps.errors import LeapsError, UnknownClassError

TINY = ["--method", "am", "--steps", "1", "--frames", "4", "--size", "32", "--quiet"]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code, err):
    """The single `leaps: error:` line (after warnings, if any) of a run that must end with exit status 2."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("leaps: error:"), err
    assert all(line.startswith("leaps: warning:") for line in lines[:-1]), err
    return lines[-1]


@pytest.fixture
def no_model_built(monkeypatch):
    """Fail the test if the CLI builds a network."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the bad input was found")

    monkeypatch.setattr(leaps.models, "build_model", refuse)


@pytest.fixture
def captured(monkeypatch):
    """Stop at leaps.inversion.invert and keep what it was given."""
    seen = {}

    def stop(model, target, stimulus, verifier, config, **kwargs):
        seen.update(model=model, verifier=verifier, config=config)
        raise LeapsError("stopped before the inversion")

    monkeypatch.setattr(leaps.inversion, "invert", stop)
    return seen


# ------------------------------------------------------------------ 1. --out checked before any model is built

@pytest.mark.parametrize("where", ["file", "under_file"])
def test_unwritable_out_fails_before_any_model_is_built(capsys, tmp_path, no_model_built, where):
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    out = blocker if where == "file" else blocker / "sub"
    line = error_line(*run(capsys, "invert", "--model", "toy_r3d", "--target", "0", "--out", str(out), *TINY)[::2])
    assert "--out" in line and str(out) in line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_out_fails_before_any_model_is_built(capsys, tmp_path, no_model_built):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = error_line(*run(capsys, "invert", "--model", "toy_r3d", "--target", "0", "--out", str(locked / "o"),
                               *TINY)[::2])
    finally:
        locked.chmod(0o700)
    assert "cannot write to --out" in line


def test_out_is_created_and_probe_removed(capsys, tmp_path, captured):
    out = tmp_path / "new" / "dir"
    run(capsys, "invert", "--model", "toy_r3d", "--target", "0", "--out", str(out), *TINY)
    assert out.is_dir() and list(out.iterdir()) == []


def test_failed_save_goes_to_a_rescue_dir(capsys, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "out"
    real_invert = leaps.inversion.invert

    def invert_then_lose_out(*args, **kwargs):  # --out was fine at the start, it is a file when saving
        result = real_invert(*args, **kwargs)
        shutil.rmtree(out)
        out.write_text("now a file")
        return result

    monkeypatch.setattr(leaps.inversion, "invert", invert_then_lose_out)
    code, stdout, err = run(capsys, "invert", "--model", "toy_r3d", "--target", "0", "--out", str(out), *TINY)
    line = error_line(code, err)
    rescue = [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith("leaps-rescue-")]
    assert len(rescue) == 1 and str(rescue[0]) in line and str(out) in line
    assert (rescue[0] / "leaps.mp4").stat().st_size > 0 and (rescue[0] / "leaps_history.json").exists()
    assert str(rescue[0] / "leaps.mp4") in stdout


def test_last_finite_video_is_rescued_too(capsys, tmp_path, monkeypatch):
    import tempfile

    from leaps.errors import NonFiniteLossError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "out"

    def explode_and_lose_out(*args, **kwargs):
        shutil.rmtree(out)
        out.write_text("now a file")
        raise NonFiniteLossError("the loss became nan at step 4", step=4, last_finite=torch.rand(1, 3, 4, 16, 16))

    monkeypatch.setattr(leaps.inversion, "invert", explode_and_lose_out)
    code, _, err = run(capsys, "invert", "--model", "toy_r3d", "--target", "0", "--out", str(out), *TINY)
    assert code == 2 and err.strip().splitlines()[-1].startswith("leaps: error: the loss became nan")
    (rescue,) = (tmp_path / "tmp").iterdir()
    assert (rescue / "last_finite.mp4").stat().st_size > 0
    assert f"saved the result to {rescue}" in err


def test_demo_out_is_a_file(capsys, tmp_path, monkeypatch):
    import leaps.demo

    monkeypatch.setattr(leaps.demo, "run_demo", lambda *a, **k: pytest.fail("the demo started"))
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    line = error_line(*run(capsys, "demo", "--steps", "1", "--out", str(blocker), "--quiet")[::2])
    assert "--out" in line


# ------------------------------------------------------------------ 2. the demo validates before writing

@pytest.mark.parametrize("argv, needle", [(["--steps", "0"], "steps"), (["--steps", "-3"], "steps"),
                                          (["--device", "tpu"], "device"), (["--target", "ring"], "ring")])
def test_bad_demo_option_writes_nothing(capsys, tmp_path, argv, needle):
    out = tmp_path / "demo"
    line = error_line(*run(capsys, "demo", *argv, "--out", str(out), "--quiet")[::2])
    assert needle in line
    assert not out.exists()


# ------------------------------------------------------------------ 3. random weights only when asked for

def test_kinetics_model_without_weights_is_an_error(capsys, tmp_path, no_model_built):
    line = error_line(*run(capsys, "invert", "--model", "r3d_18", "--target", "0", "--out", str(tmp_path), *TINY)[::2])
    assert "no weights given for r3d_18: pass --weights PATH, --pretrained or --random-weights" in line


def test_verifier_without_weights_is_an_error(capsys, tmp_path, no_model_built):
    line = error_line(*run(capsys, "invert", "--model", "toy_r3d", "--verifier", "x3d_xs", "--target", "0",
                           "--out", str(tmp_path), *TINY)[::2])
    assert "x3d_xs" in line and "--verifier-weights PATH, --verifier-pretrained or --verifier-random-weights" in line


def test_toy_models_load_their_shipped_weights_by_default(capsys, tmp_path, captured):
    run(capsys, "invert", "--model", "toy_r3d", "--verifier", "toy_x3d", "--target", "0", "--out", str(tmp_path), *TINY)
    for key, name in (("model", "toy_r3d"), ("verifier", "toy_x3d")):
        shipped = leaps.models.build_model(name, pretrained=True).state_dict()
        for k, v in captured[key].state_dict().items():
            assert torch.equal(v.cpu(), shipped[k]), (name, k)


def test_random_weights_are_explicit_and_warned_about(capsys, tmp_path, captured):
    _, _, err = run(capsys, "invert", "--model", "toy_r3d", "--random-weights", "--verifier", "toy_x3d",
                    "--verifier-random-weights", "--target", "0", "--out", str(tmp_path), *TINY)
    warnings = [line for line in err.splitlines() if line.startswith("leaps: warning:")]
    assert len(warnings) == 2 and "random weights" in warnings[0] and "verifier" in warnings[1]
    shipped = leaps.models.build_model("toy_r3d", pretrained=True).state_dict()
    assert not all(torch.equal(v, shipped[k]) for k, v in captured["model"].state_dict().items())


def test_random_weights_and_weights_are_exclusive(capsys, tmp_path):
    line = error_line(*run(capsys, "invert", "--model", "toy_r3d", "--random-weights", "--pretrained",
                           "--target", "0", "--out", str(tmp_path), *TINY)[::2])
    assert "--random-weights" in line and "--pretrained" in line


def test_pretrained_help_does_not_promise_a_download(capsys):
    with pytest.raises(SystemExit):
        cli.main(["invert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "published weights (downloaded; the toy models' ship with leaps)" in text


# ------------------------------------------------------------------ 4. negative target index

def test_negative_target_is_out_of_range(capsys, tmp_path):
    line = error_line(*run(capsys, "invert", "--model", "toy_r3d", "--target", "-1", "--out", str(tmp_path),
                           *TINY)[::2])
    assert "out of range" in line and "-1" in line


@pytest.mark.parametrize("text", ["-1", " -7 ", "+12"])
def test_signed_index_strings_are_indices(text):
    with pytest.raises(UnknownClassError, match="out of range"):
        resolve_target(text, class_names=["a", "b"])
    assert resolve_target("+1", class_names=["a", "b"]) == 1


# ------------------------------------------------------------------ 6. --weights DIR

def test_weights_directory(capsys, tmp_path):
    line = error_line(*run(capsys, "invert", "--model", "toy_r3d", "--weights", str(tmp_path), "--target", "0",
                           "--out", str(tmp_path / "o"), *TINY)[::2])
    assert "is a directory, not a checkpoint file" in line


# ------------------------------------------------------------------ 7. every bad value: one line, exit 2

@pytest.mark.parametrize("argv, needle", [
    (["invert", "--model", "toy_r3d", "--target", "0", "--out", "o", "--steps", "abc"], "--steps"),
    (["invert", "--model", "toy_r3d", "--target", "0", "--out", "o", "--method", "leap"], "--method"),
    (["invert", "--model", "toy_r3d", "--target", "0", "--out", "o", "--model-input", "4"], "--model-input"),
    (["invert", "--target", "0", "--out", "o"], "--model"),
    (["invert", "--model", "toy_r3d", "--target", "0", "--out", "o", "--bogus"], "--bogus"),
    (["demo", "--steps", "abc"], "--steps"),
    (["frobnicate"], "frobnicate"),
    ([], "command"),
])
def test_bad_values_are_one_error_line(capsys, argv, needle):
    line = error_line(*run(capsys, *argv)[::2])
    assert needle in line


# ------------------------------------------------------------------ 8. --trust-weights

@pytest.fixture
def load_calls(monkeypatch):
    from leaps.models import registry

    calls, real = [], registry.load_weights

    def spy(model, path, **kwargs):
        calls.append(kwargs)
        return real(model, path)

    monkeypatch.setattr(registry, "load_weights", spy)
    return calls


@pytest.mark.parametrize("trust", [False, True])
def test_trust_weights_reaches_load_weights(capsys, tmp_path, captured, load_calls, trust):
    weights = tmp_path / "toy.pth"
    torch.save(leaps.models.build_model("toy_r3d", num_classes=10).state_dict(), weights)
    run(capsys, "invert", "--model", "toy_r3d", "--weights", str(weights), "--num-classes", "10",
        "--verifier", "toy_x3d", "--verifier-weights", str(weights), "--target", "0", "--out", str(tmp_path / "o"),
        *(["--trust-weights"] if trust else []), *TINY)
    # the verifier's file does not fit toy_x3d: the error comes after the model's load, with the same keywords
    assert load_calls and all(call == {"trust_weights": trust} for call in load_calls)
