"""leaps.tune: a 2x2x2 grid on toy_r3d (2 steps, x* 4 x 16^2, toy:test:2) done exactly once per point,
alone, by two concurrent processes, and after an interruption; the best preset feeds leaps.invert."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

optuna = pytest.importorskip("optuna")

import leaps  # noqa: E402
from leaps.tune import TuneError, load_preset, run  # noqa: E402
from leaps.tune.cli import add_tune_parser, cmd_tune  # noqa: E402
from leaps.tune.space import make_sampler, point_key, suggest  # noqa: E402
from leaps.tune.storage import STUDY_NAME, journal_storage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRID = {"lambda_first": [0.5, 1.0], "lambda_last": [0.1, 0.5], "r": [1e-3, 1e-2]}
SETUP = dict(stimuli="toy:test:2", steps=2, size=16, frames=4, batch=2, device="cpu")
GRID_FLAGS = ["--grid", "lambda_first=0.5,1.0", "--grid", "lambda_last=0.1,0.5", "--grid", "r=1e-3,1e-2"]
SETUP_FLAGS = ["--stimuli", "toy:test:2", "--steps", "2", "--size", "16", "--frames", "4", "--batch", "2",
               "--device", "cpu"]
POINTS = 8


@pytest.fixture(autouse=True)
def _one_thread():
    # One thread in every process, so the same point gives the same numbers in any process.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def table(out: Path) -> dict:
    """point -> what its trial computed (not when or how fast); asserts every point is complete once."""
    rows = list(csv.DictReader(open(out / "trials.csv", encoding="utf-8")))
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    points = [(r["lambda_first"], r["lambda_last"], r["r"]) for r in complete]
    assert len(points) == len(set(points)) == POINTS, rows
    return {p: {k: v for k, v in r.items() if k not in ("trial", "wall_s", "note")} for p, r in zip(points, complete)}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tune") / "full"
    report = run("toy_r3d", out, grid=GRID, **SETUP)
    return out, report


def test_grid_does_every_point_once(full):
    out, report = full
    assert (report.evaluated, report.complete, report.failed, report.duplicates) == (POINTS, POINTS, 0, 0)
    rows = table(out)
    assert all(0 <= float(r["verifier_prob"]) <= 1 and r["verifier_top1"] != "" and r["loss_loss"] != ""
               for r in rows.values())
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["r=0.001.png", "r=0.01.png"]
    best = json.loads((out / "best_preset.json").read_text())
    assert max(float(r["objective"]) for r in rows.values()) == pytest.approx(best["meta"]["objective_value"],
                                                                              rel=1e-5)
    assert best["meta"]["objective_std_over_seeds"] == 0.0 and best["meta"]["seeds"] == [0]
    assert "| trial | state | lambda_first" in (out / "trials.md").read_text()
    again = run("toy_r3d", out, grid=GRID, **SETUP)  # a finished grid: nothing to do
    assert (again.evaluated, again.complete) == (0, POINTS)


def test_interrupted_tune_resumes_to_the_same_table(full, tmp_path):
    first = run("toy_r3d", tmp_path, grid=GRID, max_trials=2, **SETUP)
    assert (first.evaluated, first.complete) == (2, 2)
    rest = run("toy_r3d", tmp_path, grid=GRID, **SETUP)
    assert (rest.evaluated, rest.complete, rest.reruns) == (POINTS - 2, POINTS, 0)
    assert table(tmp_path) == table(full[0])


def test_trial_of_a_killed_worker_is_run_again(full, tmp_path):
    run("toy_r3d", tmp_path, grid=GRID, max_trials=3, **SETUP)
    study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(tmp_path),
                              sampler=make_sampler("grid", GRID, 0))
    orphan = study.ask()  # what a process killed mid-trial leaves: a RUNNING trial whose worker is gone
    orphan.set_user_attr("point", point_key(suggest(orphan, GRID, {})))
    orphan.set_user_attr("worker", "12345-dead")
    resumed = run("toy_r3d", tmp_path, grid=GRID, **SETUP)
    assert (resumed.reruns, resumed.evaluated, resumed.complete) == (1, POINTS - 3, POINTS)
    assert table(tmp_path) == table(full[0])


def test_two_worker_processes_share_the_grid(full, tmp_path):
    # started as torchrun starts its workers (its environment, no process group): the study is their only link
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}
    cmd = [sys.executable, "-m", "leaps.tune", "--model", "toy_r3d", *GRID_FLAGS, *SETUP_FLAGS, "--out",
           str(tmp_path), "--quiet"]
    workers = [subprocess.Popen(cmd, env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert table(tmp_path) == table(full[0])
    assert "study: 8 complete" in outputs[0][0] + outputs[1][0]


def test_a_worker_that_checks_before_an_earlier_trial_is_signed_waits_for_it(tmp_path):
    # The race two workers can run into: A asks for a trial, B asks for one and checks for a twin before A
    # has signed its trial with its point. B must see A's point (and skip its own), not evaluate it too.
    import logging
    import threading

    from leaps.tune.driver import DriveReport, _run_one

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = {"r": [1e-3]}
    study = optuna.create_study(sampler=make_sampler("grid", grid, 0), direction="maximize")
    earlier = study.ask()
    suggest(earlier, grid, {})
    signer = threading.Timer(0.3, lambda: earlier.set_user_attr("point", point_key({"r": 1e-3})))
    signer.start()
    report = DriveReport()
    try:  # no setup: evaluating (the bug) would fail, skipping needs none
        evaluated = _run_one(study, None, grid, {}, "verifier_prob", tmp_path, "me", report, logging.getLogger("t"))
    finally:
        signer.join()
    assert (evaluated, report.duplicates, report.evaluated) == (False, 1, 0)


def test_torchrun_workers_take_their_local_gpu(monkeypatch):
    from leaps.sweep.errors import SweepError
    from leaps.tune.evaluate import _device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert _device("auto") == torch.device("cuda", 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(SweepError, match="RANK=2"):
        _device("auto")


def test_best_preset_round_trips_into_invert(full):
    from leaps.models import build_model

    preset = load_preset(full[0] / "best_preset.json")
    assert set(preset) == set(GRID) and all(preset[k] in GRID[k] for k in GRID)
    model, verifier = build_model("toy_r3d"), build_model("toy_x3d")
    stimulus = torch.rand(1, 3, 4, 16, 16)
    result = leaps.invert(model, [0], stimulus, verifier, steps=1, size=16, frames=4, progress=False, **preset)
    assert {k: getattr(result.config, k) for k in GRID} == preset
    # the file itself, at each entry point
    path = full[0] / "best_preset.json"
    assert {k: getattr(leaps.InversionConfig(preset=path), k) for k in GRID} == preset
    assert dataclasses.asdict(build_model("toy_r3d", preset=path).leaps_spec.preset) == preset


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_tune_parser(parser.add_subparsers(dest="command"))
    for flags in (["--grid", "lambda_first"], ["--grid", "no_such_option=1"], ["--range", "r=1:0"],
                  ["--objective", "beauty"], ["--sampler", "grid", "--range", "r=1e-4:1e-2:log"]):
        args = parser.parse_args(["tune", "--model", "toy_r3d", "--out", str(tmp_path / "x"), *flags])
        assert cmd_tune(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("leaps: error: ") and err.count("\n") == 1, err


def test_one_out_holds_one_tune(full):
    with pytest.raises(TuneError, match="another tune"):
        run("toy_r3d", full[0], grid={"lambda_first": [0.5]}, **SETUP)


def test_load_preset_rejects_bad_files(tmp_path):
    bad = tmp_path / "p.json"
    for text, match in (("[1]", "JSON object"), ("{", "not JSON"), ('{"lambda_first": 1, "nope": 2}', "nope"),
                        ('{"lambda_first": "high"}', "not a float")):
        bad.write_text(text)
        with pytest.raises(TuneError, match=match):
            load_preset(bad)
    with pytest.raises(TuneError, match="cannot read"):
        load_preset(tmp_path / "missing.json")


def test_tune_without_optuna_says_how_to_install(monkeypatch, tmp_path):
    import importlib.util

    from leaps.tune import TuneError
    from leaps.tune import run as tune_run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(TuneError, match=r"pip install 'leaps\[tune\]'"):
        tune_run("toy_r3d", tmp_path / "t")


def test_invert_preset_file_replaces_defaults_and_flags_win(tmp_path):
    import json

    from leaps.cli import _config_from_args, build_parser

    preset = tmp_path / "best_preset.json"
    preset.write_text(json.dumps({"lambda_first": 0.5, "lambda_last": 0.4, "r": 5e-3, "meta": {"objective": "x"}}))
    base = ["invert", "--model", "toy_r3d", "--target", "0", "--out", str(tmp_path / "o"), "--preset", str(preset)]
    config = _config_from_args(build_parser().parse_args(base))
    assert (config.lambda_first, config.lambda_last, config.r) == (0.5, 0.4, 5e-3)
    config = _config_from_args(build_parser().parse_args(base + ["--r", "1e-3"]))
    assert (config.lambda_first, config.r) == (0.5, 1e-3)


def test_sigkilled_worker_resumes_with_the_same_command(full, tmp_path):
    # A real kill -9 mid-grid (not a simulated orphan): the same command then ends with every point done once.
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "leaps.tune", "--model", "toy_r3d", *GRID_FLAGS, *SETUP_FLAGS, "--out",
           str(tmp_path), "--quiet"]
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    complete = 0
    while time.monotonic() < deadline and worker.poll() is None:
        if (tmp_path / "study.log").exists():
            try:
                study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(tmp_path))
                complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
            except (KeyError, ValueError):  # this poll read the journal mid-write (e.g. before the study record)
                complete = 0
            if complete >= 1:
                break
        time.sleep(0.02)
    assert worker.poll() is None, "the worker finished before it could be killed"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert 1 <= complete < POINTS
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert table(tmp_path) == table(full[0])
