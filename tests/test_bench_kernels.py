"""benchmarks/kernel_latency.py runs end to end at tiny CPU settings and checks the fused backends.

The pytorchvideo layer sets (3D R50 + X3D-S) are derived on the meta device; the Triton
interpreter is too slow for their ~130 layers, so Triton runs on the toy networks.
"""

import json

import pytest
import torch

from benchmarks import kernel_latency
from benchmarks import tune_triton as tune
from leaps import _ext, ops

HAS_EXT_OPS = _ext.available() and hasattr(torch.ops.leaps, "channel_stats")
TRITON_ON_CPU = ops.triton_importable() and ops.triton_interpreted()


@pytest.fixture(scope="module")
def kernels():
    return kernel_latency


def _rows(result):
    return {(row["term"], row["backend"]): row for row in result["rows"]}


def test_full_size_layer_sets_on_meta(kernels):
    # The benchmark's real geometry: x* 16 x 3 x 8 x 224^2; the fixed-size X3D-S sees 13 x 160^2.
    ls = kernels.derive_layer_set("slow_r50", "x3d_s", 8, 224, 16)
    assert ls.shape_source == "meta" and ls.model_input == (8, 224, 224) and ls.verifier_input == (13, 160, 160)
    assert len(ls.prim) == 53 and ls.prim[0].shape == (16, 64, 8, 112, 112) and ls.coh.shape == (16, 2048, 8, 7, 7)
    assert len(ls.feat) > 50 and ls.feat[0].shape[:3] == (16, 24, 13)
    assert ls.coh_token_grid is None and not ls.coh_channels_last
    assert len(ls.weights) == 53 and ls.weights[0] == 1.0 and abs(ls.weights[-1] - 0.3) < 1e-9 and ls.r == 7.5e-3


def test_pytorchvideo_layer_sets(kernels, tmp_path, capsys, monkeypatch):
    # Without TRITON_INTERPRET the CPU run leaves Triton out with a note. (Patched rather than
    # the variable itself: Triton must not be imported while it reads "0".)
    monkeypatch.setattr(kernels.ops, "triton_interpreted", lambda: False)
    out = tmp_path / "kernels.json"
    rc = kernels.main(["--frames", "4", "--size", "32", "--verifier-input", "4", "32", "--batch", "1", "2",
                       "--iters", "1", "--warmup", "0", "--device", "cpu", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "set TRITON_INTERPRET=1" in text and "median ms" in text
    data = json.loads(out.read_text())
    assert data["ok"] and data["peak_gbps"] is None
    assert data["environment"]["gpu"] == "cpu" and data["environment"]["torch"] == torch.__version__
    assert [r["batch"] for r in data["results"]] == [1, 2] and text.count("== B=") == 2
    result = data["results"][0]
    assert data["results"][1]["layers"]["prim_shapes"][0] == [2, 64, 4, 16, 16]
    layers = result["layers"]
    assert layers["shape_source"] == "meta"
    assert layers["prim"] == 53 and layers["feat"] > 0 and layers["coh"] == 1
    assert layers["prim_kinds"] == ["BatchNorm3d"] and layers["feat_kinds"] == ["BatchNorm3d"]
    assert layers["model_input"] == [4, 32, 32] and layers["verifier_input"] == [4, 32, 32]
    assert layers["prim_shapes"][0] == [1, 64, 4, 16, 16] and layers["coh_shape"] == layers["prim_shapes"][-1]
    expected = ["reference"] + (["cuda"] if HAS_EXT_OPS else [])
    assert result["backends"] == expected and "triton" in result["skipped"]
    rows = _rows(result)
    for term in ("L_prim", "R_coh", "R_feat", "all"):
        for backend in expected:
            row = rows[term, backend]
            assert row["ms"] > 0 and row["bytes"] > 0 and row["frac_peak"] is None
            if backend != "reference":
                assert row["check"]["ok"], row["check"]
    # bytes model: L_prim 2 A, R_coh and R_feat 3 A
    prim_bytes = sum(4 * torch.Size(s).numel() for s in layers["prim_shapes"])
    feat_bytes = sum(4 * torch.Size(s).numel() for s in layers["feat_shapes"])
    assert layers["bytes"]["L_prim"] == 2 * prim_bytes and layers["bytes"]["R_feat"] == 3 * feat_bytes
    assert layers["bytes"]["R_coh"] == 3 * 4 * torch.Size(layers["coh_shape"]).numel()


@pytest.mark.skipif(not TRITON_ON_CPU, reason="needs triton and TRITON_INTERPRET=1")
def test_all_backends_on_toy_networks(kernels, tmp_path, capsys):
    out = tmp_path / "toy.json"
    # The interpreter runs one Python call per program: the small toy_r3d as model and verifier.
    rc = kernels.main(["--model", "toy_r3d", "--verifier", "toy_r3d", "--frames", "4", "--size", "8",
                       "--batch", "2", "--iters", "1", "--warmup", "0", "--device", "cpu",
                       "--dtype", "bf16", "--terms", "L_prim", "R_coh", "R_feat", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [r["batch"] for r in data["results"]] == [2]
    for result in data["results"]:
        assert result["layers"]["prim"] > 0 and result["layers"]["feat"] > 0
        ran = ["reference", "triton"] + (["cuda"] if HAS_EXT_OPS else [])
        assert sorted(result["backends"]) == sorted(ran)
        checks = [row["check"] for row in result["rows"] if row["check"] is not None]
        assert len(checks) == 3 * (len(ran) - 1) and all(c["ok"] for c in checks)
    assert "triton" in capsys.readouterr().out


def test_mismatch_is_reported(kernels, capsys, monkeypatch):
    monkeypatch.setattr(kernels.ops, "triton_interpreted", lambda: False)
    if not HAS_EXT_OPS:
        pytest.skip("no fused backend runs on this CPU without TRITON_INTERPRET")
    # No error is small enough: every fused backend "mismatches", and main says so.
    monkeypatch.setattr(kernels, "TOLERANCES", {torch.float32: (-1.0, -1.0)})
    rc = kernels.main(["--model", "toy_r3d", "--verifier", "none", "--frames", "4", "--size", "16",
                       "--batch", "1", "--iters", "1", "--warmup", "0", "--device", "cpu"])
    assert rc == 1
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.err and "MISMATCH" in captured.out and "R_feat" not in captured.out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_full_size_batch_1(kernels, tmp_path):
    out = tmp_path / "gpu.json"
    assert kernels.main(["--batch", "1", "--iters", "2", "--warmup", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["ok"] and data["results"][0]["layers"]["model_input"] == [8, 224, 224]


@pytest.mark.skipif(not TRITON_ON_CPU, reason="Triton runs on the CPU only under TRITON_INTERPRET=1")
def test_tile_sweep_checks_every_tile(monkeypatch):
    # The sweep's harness on toy layers in the interpreter: every candidate tile must compute what
    # the shipped tile computes (timing is a GPU matter and is stubbed out).
    monkeypatch.setattr(tune, "CHANNEL_TILES", [(8, 32, 8)])  # odd against the shipped (1, 1024, 4)
    monkeypatch.setattr(tune, "FRAME_BLOCKS", (32,))
    monkeypatch.setattr(tune, "_time", lambda fn, args, device: 1.0)
    args = tune.argparse.Namespace(model="toy_r3d", verifier="toy_x3d", frames=4, size=16, dtype="fp32")
    result = tune.sweep(args, 1, torch.device("cpu"))
    assert len(result["passes"]) == 5
    for name, res in result["passes"].items():
        assert all("ms" in r for r in res["results"]), (name, res["results"])
    import importlib
    # restored after the sweep
    assert importlib.import_module("leaps.kernels.channel_stats").BLOCKS[("fwd", "rows")] == (1, 1024, 4)


def test_tile_check_rejects_a_wrong_result():
    expected = torch.ones(5)
    bad = tune._try_tile(lambda: torch.ones(5) * 1.1, expected, None, torch.device("cpu"), 20, (1, 2, 4))
    assert "wrong result" in bad["error"]
