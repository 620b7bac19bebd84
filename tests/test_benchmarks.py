"""The benchmark scripts run end to end (tiny settings; speed and quality numbers live in their output)."""

import json
import re

from siblings import load_benchmark as load  # benchmarks/siblings.py (conftest puts benchmarks/ on sys.path)


def test_quality_tables_written(tmp_path, capsys):
    quality = load("quality")
    assert quality.main(["--quick", "--steps", "2", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "quality_quick.json").read_text())
    assert set(data["table_1_3"]) == set(quality.TABLE_1_3)
    assert set(data["table_2"]) == {"l2", "l1", "cos", "JVS"}
    assert len(data["table_s2"]) == 5
    for row in data["table_1_3"].values():
        assert 0.0 <= row["top1_m"] <= 100.0 and 1.0 - 1e-6 <= row["is_m"][0] <= 10.0 + 1e-6
    # the real clips are classified by the trained toy model
    assert data["real"]["top1_m"] >= 90.0
    md = (tmp_path / "quality_quick.md").read_text()
    assert "Table 2" in md and "Table S2" in md and "claims" in md


def test_step_latency_runs(capsys):
    load("step_latency").main(["--model", "toy_r3d", "--verifier", "toy_x3d", "--frames", "4", "--size", "32",
                               "--iters", "2", "--warmup", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "leaps step (reference)" in out and "bare step" in out


def test_demo_precision_scores_the_demo_inversion(tmp_path, capsys):
    demo_precision = load("demo_precision")
    out = tmp_path / "precision.json"
    assert demo_precision.main(["--modes", "fp32", "fast", "--seeds", "0", "--steps", "2", "--device", "cpu",
                                "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["seed"], r["steps"]) for r in rows] == [("fp32", 0, 2)]  # fast needs CUDA: skipped
    for key in ("top1_model", "top1_verifier", "top1_judge", "frame_ssim"):
        assert 0.0 <= rows[0][key] <= 1.0
    assert re.search(r"^fast +skipped: needs CUDA$", capsys.readouterr().out, re.M)
