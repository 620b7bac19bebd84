"""leaps.sweep in one process: plans, sharding, records, failures, safe output names, tables, CLI."""

import json
import os
from pathlib import Path

import pytest

import leaps.sweep as sweep
from leaps.errors import LeapsError
from leaps.models import ModelSpec, Preset, registry
from leaps.sweep import cli
from leaps.sweep.__main__ import main
from leaps.sweep.manifest import read_records
from leaps.sweep.sharding import Placement, balance, my_batches, placement_from_env
from leaps.sweep.summary import ALL
from leaps.toy.data import generate
from leaps.video import write_video

TINY = dict(size=16, frames=4, steps=2, progress=False)


def options(out, **changes):
    return sweep.SweepOptions(**{"models": ["toy_r3d"], "out": str(out), "stimuli": "toy:test:10", "batch": 3,
                                 "config": {"size": 16, "frames": 4, "steps": 2}, "progress": False, **changes})


def records_by_job(out):
    return {r["job_id"]: r for r in read_records(out)}


# --------------------------------------------------------------------------------------------
# plan and sharding (no inversion)
# --------------------------------------------------------------------------------------------

def test_job_ids_are_deterministic_and_track_what_shapes_a_video(tmp_path):
    plan = sweep.build_plan(options(tmp_path))
    again = sweep.build_plan(options(tmp_path, progress=True, device="cpu"))
    assert [j.job_id for j in plan.jobs] == [j.job_id for j in again.jobs]
    assert len({j.job_id for j in plan.jobs}) == 10
    assert [b.batch_id for b in plan.batches] == [b.batch_id for b in again.batches]
    more_steps = sweep.build_plan(options(tmp_path, config={"size": 16, "frames": 4, "steps": 3}))
    assert not {j.job_id for j in more_steps.jobs} & {j.job_id for j in plan.jobs}
    two_seeds = sweep.build_plan(options(tmp_path, seeds=[0, 1]))
    assert len({j.job_id for j in two_seeds.jobs}) == 20
    # every batch mixes classes (round-robin), and its seed comes from its own id
    assert len({j.target for j in plan.batches[0].jobs}) == 3
    assert len({b.inversion_seed for b in two_seeds.batches}) == len(two_seeds.batches)


def test_baselines_plan_one_job_per_class_and_run(tmp_path):
    plan = sweep.build_plan(options(tmp_path, methods=["leaps", "deepdream", "am"], runs_per_class=2))
    counts = {m: sum(j.method == m for j in plan.jobs) for m in ("leaps", "deepdream", "am")}
    assert counts == {"leaps": 10, "deepdream": 20, "am": 20}
    assert all(j.stimulus is None for j in plan.jobs if j.method != "leaps")
    only = sweep.build_plan(options(tmp_path, methods=["am"], classes=["ring_growing", "0"]))
    assert sorted(j.target for j in only.jobs) == [0, 6]
    assert {b.first.method for b in plan.batches for j in b.jobs if j.method != b.first.method} == set()


@pytest.mark.parametrize("shards,world", [(1, 1), (3, 1), (1, 4), (2, 3)])
def test_shards_are_disjoint_and_complete(tmp_path, shards, world):
    plan = sweep.build_plan(options(tmp_path, stimuli="toy:test:40", batch=2, methods=["leaps", "am"], seeds=[0, 1]))
    seen = []
    for s in range(shards):
        for r in range(world):
            seen += [j.job_id for b in my_batches(plan.batches, Placement(r, world, r, s, shards)) for j in b.jobs]
    assert sorted(seen) == sorted(j.job_id for j in plan.jobs)


def test_balance_by_cost():
    from leaps.sweep.jobs import Batch

    batches = [Batch(f"b{i}", (), 0, cost=c) for i, c in enumerate([9, 1, 1, 1, 4, 4, 1, 1, 8])]
    parts = balance(batches, 3)
    loads = sorted(sum(b.cost for b in p) for p in parts)
    assert loads == [10, 10, 10]
    assert [b.batch_id for b in parts[0]] == sorted((b.batch_id for b in parts[0]), key=lambda s: int(s[1:]))


def test_placement_from_env():
    p = placement_from_env((1, 2), {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (p.rank, p.world, p.local_rank, p.worker, p.workers) == (3, 4, 1, 7, 8)
    with pytest.raises(sweep.SweepError, match="RANK"):
        placement_from_env(None, {"RANK": "4", "WORLD_SIZE": "4"})


def test_bad_options(tmp_path):
    for changes, match in [({"methods": ["dream"]}, "unknown method"), ({"batch": 0}, "--batch"),
                           ({"shard": (2, 2)}, "--shard"), ({"config": {"stepz": 1}}, "stepz"),
                           ({"models": ["toy_r3dd"]}, "did you mean"), ({"models": ["slow_r50"]}, "needs weights"),
                           ({"weights": {"x3d_s": "w.pt"}}, "not a --model")]:
        with pytest.raises(LeapsError, match=match):
            sweep.build_plan(options(tmp_path, **changes))


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------

def test_run_resume_and_summary(tmp_path):
    out = tmp_path / "out"
    report = sweep.run(["toy_r3d"], out, stimuli="toy:test:4", batch=2, methods=["leaps", "am"], classes=["0", "1"],
                       **TINY)
    assert (report.ok, report.failed, report.planned) == (6, 0, 6)
    records = records_by_job(out)
    assert len(records) == 6 and all(r["status"] == "ok" for r in records.values())
    r = next(r for r in records.values() if r["method"] == "leaps")
    assert r["verifier"] == "toy_x3d" and len(r["model_pred"]["probs"]) == 10 and len(r["model_pred"]["top5"]) == 5
    assert set(r["losses"]) >= {"loss", "ce", "prim", "coh", "feat"} and r["frame_ssim"] is not None
    assert (out / r["video"]).is_file() and (out / "records" / f"{r['job_id']}.json").is_file()
    assert {"summary.md", "summary.json", "summary.csv"} <= {p.name for p in out.iterdir()}
    assert (out / "logs" / "rank-0.log").is_file()

    again = sweep.run(["toy_r3d"], out, stimuli="toy:test:4", batch=2, methods=["leaps", "am"], classes=["0", "1"],
                      **TINY)
    assert (again.ok, again.skipped) == (0, 6)
    assert len(read_records(out)) == 6

    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(sweep.summarize(out)))  # recomputed from the manifests alone
    overall = {row["method"]: row for row in summary["rows"] if row["class"] == ALL}
    assert set(overall) == {"leaps", "am"} and overall["leaps"]["videos"] == 4
    assert overall["leaps"]["is_model"] >= 1.0 and 0 <= overall["am"]["top1_model"] <= 1
    md = (out / "summary.md").read_text()
    assert "| class | am | leaps |" in md and "square moving up" in md
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("model,method,class,videos")


def test_corrupt_and_missing_videos_fail_their_jobs_only(tmp_path):
    stim = tmp_path / "kinetics"
    write_video(generate(0, 1, frames=4, size=16), stim / "square_moving_up" / "good.mp4")
    write_video(generate(6, 2, frames=4, size=16), stim / "ring growing" / "good.mp4")
    (stim / "ring growing" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (stim / "ring growing" / "empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    report = sweep.run("toy_r3d", out, stimuli=str(stim), batch=4, **TINY)
    assert (report.ok, report.failed) == (2, 2)
    failed = [r for r in read_records(out) if r["status"] == "failed"]
    assert sorted(Path(r["stimulus"]).name for r in failed) == ["corrupt.mp4", "empty.mp4"]
    assert all(r["reason"].startswith("stimulus:") for r in failed)
    assert "Failed jobs (2)" in (out / "summary.md").read_text()

    assert sweep.run("toy_r3d", out, stimuli=str(stim), batch=4, **TINY).skipped == 4  # failures are finished jobs
    retry = sweep.run("toy_r3d", out, stimuli=str(stim), batch=4, retry_failed=True, **TINY)
    assert (retry.ok, retry.failed, retry.skipped) == (0, 2, 2)
    assert sweep.summarize(out)["failed"] == 2  # one entry per job, the latest attempt


def folder_name_ok(name):
    return "/" not in name and name != ".."


HOSTILE = ("a b", "con", "x" * 200, "Case", "case", "<script>alert(1)</script>", "../../escape", "..")


@pytest.fixture
def hostile_model():
    from leaps.toy.nets import build_toy_net

    spec = ModelSpec(name="test_hostile_names", title="hostile", source="test", kind="cnn", frames=4, size=16,
                     fixed_size=False, mean=(0.5,) * 3, std=(0.25,) * 3, preset=Preset(1.0, 0.3, 7.5e-3),
                     builder=lambda n: build_toy_net("r3d", n), hub=lambda n: build_toy_net("r3d", len(HOSTILE)),
                     class_names=HOSTILE)
    registry.register(spec)
    yield spec.name
    registry._REGISTRY.pop(registry._key(spec.name))


def test_hostile_class_names_stay_inside_out(tmp_path, hostile_model):
    stim = tmp_path / "stimuli"
    rows = []
    for label, name in enumerate(HOSTILE):
        clip = write_video(generate(label % 10, label, frames=4, size=16), tmp_path / "clips" / f"{label}.mp4")
        if folder_name_ok(name):
            write_video(generate(0, label, frames=4, size=16), stim / name / "clip.mp4")  # a folder of that name
        rows.append(f"{clip},{label}")
    (tmp_path / "set.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "deep" / "out"
    for source in (str(stim), str(tmp_path / "set.csv")):
        report = sweep.run(hostile_model, out, stimuli=source, pretrained=True, batch=4, **TINY)
        assert report.failed == 0
    videos = [p for p in tmp_path.rglob("*.mp4") if "clips" not in p.parts and stim not in p.parents]
    assert len(videos) == len(HOSTILE) + sum(map(folder_name_ok, HOSTILE))
    root = out.resolve()
    for v in videos:
        assert root in v.resolve().parents
        assert all(len(part.encode()) <= 100 for part in v.relative_to(root).parts)
    class_dirs = {v.parent.name for v in videos}
    assert len({d.lower() for d in class_dirs}) == len(HOSTILE)  # 'Case' and 'case' apart on any file system
    assert not any(d.lower() in ("con", "..") or "<" in d or "/" in d for d in class_dirs)
    assert not (tmp_path / "deep" / "escape").exists() and not (tmp_path / "escape").exists()
    summary_md = (out / "summary.md").read_text()
    assert "<script>" not in summary_md


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def test_cli_dry_run_and_errors(tmp_path, capsys):
    base = ["sweep", "--model", "toy_r3d", "--out", str(tmp_path / "o"), "--size", "16", "--frames", "4"]
    assert main(base + ["--stimuli", "toy:test:30", "--batch", "4", "--dry-run", "--shard", "1/2",
                        "--method", "leaps", "--method", "am", "--runs-per-class", "2"]) == 0
    out = capsys.readouterr().out
    assert "50 jobs (videos) in 13 batches" in out and "device-hours" in out and "shard 1/2" in out
    assert not (tmp_path / "o").exists()

    for argv, needle in [(["--model", "nope"], "unknown model"), (["--stimuli", str(tmp_path / "none")], "neither"),
                         (["--option", "flip=false", "--option", "wrong=1"], "wrong")]:
        assert main(base + argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("leaps: error:") and needle in err[0], err
    assert main(["summarize", str(tmp_path)]) == 2
    assert "no sweep records" in capsys.readouterr().err


def test_cli_parsers_plug_into_another_parser(tmp_path):
    import argparse

    parser = argparse.ArgumentParser(prog="leaps")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_sweep_parser(sub)
    cli.add_summarize_parser(sub)
    args = parser.parse_args(["sweep", "--model", "toy_r3d", "--out", "o", "--no-feat", "--steps", "5", "--fast",
                              "--option", "init_scale=0.1", "--seeds", "1", "2", "--weights", "toy_r3d=w.pt"])
    opts = cli.options_from_args(args)
    assert opts.config == {"use_feat": False, "steps": 5, "fast": True, "init_scale": 0.1}
    assert opts.seeds == [1, 2] and opts.weights == {"toy_r3d": "w.pt"} and opts.methods == ["leaps"]
    assert parser.parse_args(["summarize", "d"]).dir == "d"
    assert os.fspath(opts.out) == "o"
