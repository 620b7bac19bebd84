"""The benchmark scripts run end to end (tiny settings; speed and quality numbers live in their output)."""

import json
import re
import subprocess
from datetime import datetime

import pytest
import torch

from benchmarks import demo_precision, environment, quality
from leaps.toy.data import TOY_CLASSES


def test_environment_block(tmp_path):
    env = environment.environment("cpu")
    assert set(env) == {"torch", "triton", "cuda", "cudnn", "gpu", "python", "platform", "git_commit", "date"}
    assert env["torch"] == torch.__version__ and env["gpu"] == "cpu" and env["python"].count(".") == 2
    assert datetime.fromisoformat(env["date"]).utcoffset().total_seconds() == 0
    assert env["git_commit"] is None or re.fullmatch(r"[0-9a-f]{4,40}(\+dirty)?", env["git_commit"])
    json.dumps(env)  # plain values only


def test_git_commit_outside_and_inside_a_checkout(tmp_path):
    assert environment.git_commit(tmp_path) is None  # not a git checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run(git + ["add", "f.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "c"], check=True)
    clean = environment.git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{4,40}", clean)
    (tmp_path / "new.json").write_text("{}")  # an untracked result file is not a change of the code
    assert environment.git_commit(tmp_path) == clean
    (tmp_path / "f.txt").write_text("b")
    assert environment.git_commit(tmp_path) == clean + "+dirty"


def test_quality_tables_written(tmp_path, capsys):
    assert quality.main(["--quick", "--steps", "2", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "quality_quick.json").read_text())
    assert data["environment"]["gpu"] == "cpu"
    assert set(data["table_1_3"]) == set(quality.TABLE_1_3)
    assert set(data["table_2"]) == {"l2", "l1", "cos", "JVS"}
    assert len(data["table_s2"]) == 5
    for row in data["table_1_3"].values():
        assert 0.0 <= row["top1_m"] <= 100.0 and 1.0 - 1e-6 <= row["is_m"][0] <= 10.0 + 1e-6
    # the real clips are classified by the trained toy model
    assert data["real"]["top1_m"] >= 90.0
    md = (tmp_path / "quality_quick.md").read_text()
    assert "Table 2" in md and "Table S2" in md and "orderings, tested video by video" in md
    # every ordering on every paired measure, each with a p-value; the partial file is gone when done
    assert len(data["claims"]) == len(quality.PAPER_ORDERINGS) * len(quality.measures())
    assert all(0.0 <= c["p"] <= c["p_holm"] <= 1.0 and c["n"] == 10 for c in data["claims"])
    assert not (tmp_path / "quality_quick.partial.json").exists()
    for row in data["table_1_3"].values():
        assert len(row["per_video"]["v hit"]) == len(row["per_video"]["toy_judge_2d p"]) == 10


def test_quality_resume_reuses_rows_and_refuses_other_settings(tmp_path, capsys, monkeypatch):
    calls = []
    real_run = quality.run_objective

    def counting(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is cut off after two rows
        return real_run(*args, **kwargs)

    monkeypatch.setattr(quality, "run_objective", counting)
    argv = ["--quick", "--steps", "1", "--out", str(tmp_path)]
    with pytest.raises(KeyboardInterrupt):
        quality.main(argv)
    partial = json.loads((tmp_path / "quality_quick.partial.json").read_text())
    assert len(partial["rows"]) == 2
    calls.clear()
    with pytest.raises(SystemExit, match="other settings.*steps"):
        quality.main(["--quick", "--steps", "2", "--out", str(tmp_path), "--resume"])
    monkeypatch.setattr(quality, "run_objective", real_run)
    assert quality.main(argv + ["--resume", "--tables", "1"]) == 0  # Tables 1 and 3 only
    assert "resuming: 2 row(s)" in capsys.readouterr().out
    data = json.loads((tmp_path / "quality_quick.json").read_text())
    assert data["table_2"] == data["table_s2"] == {} and len(data["table_1_3"]) == len(quality.TABLE_1_3)
    tables_1_3 = [o for o in quality.PAPER_ORDERINGS if o[0] in ("1", "3")]
    assert len(data["claims"]) == len(tables_1_3) * len(quality.measures())
    assert "Table S2" not in (tmp_path / "quality_quick.md").read_text()


def test_demo_precision_scores_the_demo_inversion(tmp_path, capsys):
    out = tmp_path / "precision.json"
    assert demo_precision.main(["--modes", "fp32", "fast", "--seeds", "0", "--steps", "2", "--device", "cpu",
                                "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["environment"]["gpu"] == "cpu"
    rows = data["rows"]
    assert [(r["mode"], r["seed"], r["steps"]) for r in rows] == [("fp32", 0, 2)]  # fast needs CUDA: skipped
    for key in ("top1_model", "top1_verifier", "top1_judge", "frame_ssim"):
        assert 0.0 <= rows[0][key] <= 1.0
    assert re.search(r"^fast +skipped: needs CUDA$", capsys.readouterr().out, re.M)


def test_recipes_benchmark_scores_each_recipe_with_each_judge(tmp_path, capsys):
    from benchmarks import recipes

    assert recipes.parse_recipe("fourier") == ("fourier", {"param": "fourier"})
    assert recipes.parse_recipe("aug_rotate=5;aug_scale=[0.9,1.1]")[1] == {"aug_rotate": 5, "aug_scale": (0.9, 1.1)}
    with pytest.raises(SystemExit, match="not a name"):
        recipes.parse_recipe("no-such-recipe")
    out = tmp_path / "recipes.json"
    assert recipes.main(["--recipes", "paper", "aug_rotate=5", "--seeds", "0", "--steps", "1", "2",
                         "--judges", "toy_judge_2d", "toy_x3d", "--json", str(out),
                         "--save-videos", str(tmp_path / "videos")]) == 0
    rows = json.loads(out.read_text())["rows"]
    saved = torch.load(tmp_path / "videos" / "aug_rotate_5_seed0_steps2.pt")
    assert saved["video"].shape == (10, 3, 8, 64, 64) and saved["targets"] == rows[-1]["targets"]
    # the judge's top-1 class per video: a hit exactly where it is the target
    assert [c == t for c, t in zip(rows[-1]["videos"]["class toy_judge_2d"], rows[-1]["targets"])] \
        == rows[-1]["videos"]["hit toy_judge_2d"]
    assert [(r["recipe"], r["steps"], r["seed"]) for r in rows] == [
        ("paper", 1, 0), ("paper", 2, 0), ("aug_rotate=5", 1, 0), ("aug_rotate=5", 2, 0)]
    for key in ("top1 toy_judge_2d", "p toy_judge_2d", "top1 toy_x3d", "p toy_x3d"):
        assert all(0.0 <= r[key] <= 1.0 for r in rows)
    assert all(len(r["videos"]["hit toy_judge_2d"]) == len(r["videos"]["p toy_x3d"]) == 10 for r in rows)
    assert all(r["top1 toy_judge_2d"] == sum(r["videos"]["hit toy_judge_2d"]) / 10 for r in rows)
    table = capsys.readouterr().out
    assert "| aug_rotate=5 | 2 |" in table and "| paper | 1 |" in table
    # every recipe against the first, video by video
    assert "paired against 'paper'" in table and "aug_rotate=5 @ 2 steps, 1 seeds: toy_judge_2d: top-1" in table
    # every miss named by target class, seed and what the judge saw instead
    for r in rows:
        for hit, target, seen in zip(r["videos"]["hit toy_judge_2d"], r["targets"], r["videos"]["class toy_judge_2d"]):
            if not hit:
                miss = f"{r['seed']}@{r['steps']} -> {TOY_CLASSES[seen]}"
                assert f"{TOY_CLASSES[target]}: " in table and miss in table
    # a later run paired against the saved rows of the first recipe, without running it again
    assert recipes.main(["--recipes", "aug_rotate=5", "--seeds", "0", "--steps", "2",
                         "--judges", "toy_judge_2d", "toy_x3d", "--against", str(out)]) == 0
    again = capsys.readouterr().out
    assert "| paper |" not in again and "paired against 'paper [recipes.json]'" in again
    assert "aug_rotate=5 @ 2 steps, 1 seeds: toy_judge_2d: top-1 " in again
    with pytest.raises(SystemExit, match="not scored by toy_judge_attn"):
        recipes.main(["--recipes", "demo", "--seeds", "0", "--steps", "1", "--judges", "toy_judge_attn",
                      "--against", str(out)])
    # the stimuli are made once per script run and reused: no run may change them
    from leaps.demo import demo_batch

    nets = recipes.Networks(torch.device("cpu"))
    for seed in (0, 1):
        recipes.run_one({}, seed, 2, nets, {"toy_judge_2d": "toy_judge_2d"}, tmp_path)
    cached = recipes._demo_batch(tmp_path, 1)
    assert recipes._demo_batch.cache_info().hits >= 2
    labels, fresh = demo_batch(tmp_path / "fresh")
    assert cached[0] == labels and all(torch.equal(a, b) for a, b in zip(cached[1], fresh))


def test_recipes_benchmark_inverts_a_registered_toy_variant(tmp_path, monkeypatch):
    # --variant NAME=BASE:FILE: a toy checkpoint (e.g. a robust network trained with --name-suffix) as model NAME
    from benchmarks import recipes
    from leaps.models import build_model, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the variant leaves with the test
    from leaps.toy import TOY_CLASSES, build_toy_net
    from leaps.toy.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = build_toy_net("x3d", len(TOY_CLASSES)).eval()
    path = save_checkpoint(net, {"net": "x3d", "classes": TOY_CLASSES}, tmp_path / "toy_x3d_robust_v.pt")
    assert recipes.register_variant(f"x3d_v=toy_x3d:{path}") == "x3d_v"
    built = build_model("x3d_v", pretrained=True)
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), net.state_dict().values()))
    with pytest.raises(SystemExit, match="NAME=BASE:FILE"):
        recipes.register_variant("no-equals-sign")
    out = tmp_path / "variant.json"
    assert recipes.main(["--variant", f"x3d_v=toy_x3d:{path}", "--recipes", "model=x3d_v",
                         "extra_models=[\"x3d_v\"]", "--seeds", "0", "--steps", "1", "--judges", "toy_judge_2d",
                         "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["recipe"] for r in data["rows"]] == ["model=x3d_v", "extra_models=[\"x3d_v\"]"]
    assert data["variants"] == [f"x3d_v=toy_x3d:{path}"]


def test_preset_heldout_compares_shipped_and_tuned_on_the_same_seeds(tmp_path, capsys):
    from benchmarks import preset_heldout

    tuned = tmp_path / "best_preset.json"
    tuned.write_text(json.dumps({"lambda_first": 2.0, "lambda_last": 0.5, "r": 0.001}))
    preset_heldout.main(["--model", "toy_r3d", "--tuned", str(tuned), "--stimuli", "toy:val:2", "--seeds", "0", "1",
                         "--steps", "1", "--size", "16", "--frames", "4", "--out", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out" / "heldout.json").read_text())
    assert report["presets"]["tuned"] == {"lambda_first": 2.0, "lambda_last": 0.5, "r": 0.001}
    assert set(report["presets"]["shipped"]) == set(preset_heldout.FIELDS)
    for m in ("verifier_prob", "verifier_top1"):
        assert len(report["per_seed"]["shipped"][m]) == len(report["per_seed"]["tuned"][m]) == 2
        test = report["tests"][m]
        assert test["diff"] == pytest.approx(test["tuned_mean"] - test["shipped_mean"])
        assert 0.0 <= test["paired_p"] <= 1.0 and 0.0 <= test["welch_p"] <= 1.0


def test_recipe_search_starts_from_the_demo_preset_and_resumes(tmp_path, capsys):
    pytest.importorskip("optuna")
    from benchmarks import recipe_search
    from leaps.demo import DEMO_PRESET, DEMO_PRESET_NAME

    point = recipe_search.demo_point()
    assert point["lambda_first"] == DEMO_PRESET["lambda_first"] and point["r"] == 1e-3 and point["prior_tv"] == 1.0
    assert point["margin"] == 1.0  # a field the preset leaves: the library default
    for name, (low, high, _) in recipe_search.SPACE.items():
        assert low < point[name] < high, name  # the demo's preset lies inside the searched box
    args = ["--seeds", "0", "--steps", "1", "--judges", "toy_judge_2d", "--out", str(tmp_path), "--threads", "1"]
    assert recipe_search.main(["--trials", "2", *args]) == 0
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert len(trials) == 2
    demo = next(t for t in trials if t.get("name") == DEMO_PRESET_NAME)
    assert demo["number"] == 0 and demo["fields"] == pytest.approx(point)
    assert all(0 <= t["value"] <= 1 and 0 <= t["top1 toy_judge_2d"] <= 1 for t in trials)
    assert recipe_search.main(["--trials", "3", *args]) == 0  # resumes: one more trial, none repeated
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert sorted(t["number"] for t in trials) == [0, 1, 2]
    assert "python -m benchmarks.recipes --recipes demo" in capsys.readouterr().out
