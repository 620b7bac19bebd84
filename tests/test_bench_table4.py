"""benchmarks/table4.py runs end to end at tiny CPU settings, and its baseline formulations are real losses."""

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import formulations, table4
from leaps.models import build_model

TINY = ["--models", "toy_r3d", "--verifier", "toy_x3d", "--geometries", "4x32", "--batch", "1",
        "--iters", "1", "--warmup", "0", "--device", "cpu"]
# torch.compile (and fast=True, which may pick it) take minutes on a CPU: left to the GPU runs.
ROWS = ["bare", "bare-fast", "official", "naive", "leaps-reference", "leaps-fused", "leaps-fused+cuda_graph",
        "leaps-combo"]


def test_table4_tiny_cpu(tmp_path, capsys):
    out_json, out_md = tmp_path / "t4.json", tmp_path / "t4.md"
    assert table4.main(TINY + ["--rows", *ROWS, "--json", str(out_json), "--markdown", str(out_md)]) == 0
    data = json.loads(out_json.read_text())
    assert data["environment"]["gpu"] == "cpu" and data["environment"]["torch"] == torch.__version__
    assert data["paper_table4"]["slow_r50"]["rows"]["8x224"]["latency"] == "0.832 / 1.205"
    (block,) = data["results"]
    assert (block["model"], block["frames"], block["size"], block["batch"]) == ("toy_r3d", 4, 32, 1)
    rows = block["rows"]
    assert list(rows) == ROWS
    for name in ("bare", "official", "naive", "leaps-reference", "leaps-fused"):
        row = rows[name]
        assert row["status"] == "ok", (name, row["reason"])
        assert row["step_ms"]["median"] > 0 and row["inference_ms"]["median"] > 0
        assert row["step_vs_bare"] > 0 and row["official_speedup"] > 0 and row["videos_per_hour"] > 0
        assert row["peak_step_gib"] is None  # no CUDA memory on a CPU
    assert rows["bare"]["step_vs_bare"] == pytest.approx(1.0)
    assert rows["official"]["official_speedup"] == pytest.approx(1.0)
    step_s = rows["naive"]["step_ms"]["median"] / 1000
    assert rows["naive"]["videos_per_hour"] == pytest.approx(3600 / (2000 * step_s))
    for name in ("leaps-fused+cuda_graph", "leaps-combo"):
        assert rows[name]["status"] == "n/a" and rows[name]["reason"]
    # the bare step under the fast engine needs CUDA: skipped with its reason, and so is the ratio
    assert rows["bare-fast"]["status"] == "n/a" and "needs CUDA" in rows["bare-fast"]["reason"]
    assert rows["bare-fast"]["kind"] == "bare-engine" and rows["bare-fast"]["step_ms"] is None
    assert block["fast_vs_bare_fast"]["ratio"] is None and "needs CUDA" in block["fast_vs_bare_fast"]["reason"]
    assert block["best_leaps"]["row"] in ("leaps-reference", "leaps-fused")
    out = capsys.readouterr().out
    assert "n/a (CUDA graphs need a CUDA device)" in out and "0.832 / 1.205" in out and "official/row" in out
    assert re.search(r"^bare-fast +n/a \(needs CUDA", out, re.M) and "/bare-fast" in out
    assert "fast / bare-fast: n/a (bare-fast: needs CUDA" in out and "target <= 1.10 at B=16" in out
    md = out_md.read_text()
    assert "| official |" in md and "| bare-fast | n/a (needs CUDA" in md and "fast / bare-fast: n/a" in md
    assert "Paper Table 4" in md


def test_bare_fast_row_is_offered():
    assert table4.ROWS[:2] == ("bare", "bare-fast")
    assert table4.ENGINE_ROWS["bare-fast"] == {"fast": True, "use_priming": False, "use_coherence": False,
                                               "use_feat": False}
    assert table4._parser().parse_args(["--rows", "bare-fast", "leaps-fast"]).rows == ["bare-fast", "leaps-fast"]
    assert table4._expand_rows(["leaps-fast", "bare-fast", "bare"]) == ["bare", "bare-fast", "leaps-fast"]
    assert "bare-fast" not in table4._expand_rows(["leaps"])  # not a leaps row


def test_fast_over_bare_fast_ratio():
    def ok(ms):
        return {"status": "ok", "reason": None, "step_ms": {"median": ms}}

    rows = {"bare-fast": ok(80.0), "leaps-fast": ok(84.0)}
    at16 = table4.fast_vs_bare_fast(rows, 16)
    assert at16["ratio"] == pytest.approx(1.05) and at16["met"] is True
    assert table4._fast_line({"fast_vs_bare_fast": at16}) == "fast / bare-fast: 1.050x (target <= 1.10 at B=16: met)"
    rows["leaps-fast"] = ok(96.0)
    assert table4.fast_vs_bare_fast(rows, 16)["met"] is False
    assert table4.fast_vs_bare_fast(rows, 1)["met"] is None  # the target is set at B=16
    assert "NOT met" in table4._fast_line({"fast_vs_bare_fast": table4.fast_vs_bare_fast(rows, 16)})
    del rows["leaps-fast"]
    assert table4.fast_vs_bare_fast(rows, 16)["reason"] == "leaps-fast not in --rows"


def test_failing_row_does_not_stop_the_sweep(tmp_path):
    table4.LEAPS_ROWS["leaps-broken"] = {"backend": "no-such-backend"}
    try:
        setting = table4._Setting("toy_r3d", build_model("toy_r3d"), build_model("toy_x3d"), 4, 32, 1,
                                  torch.device("cpu"), 1, 0)
        row = table4.run_row("leaps-broken", setting, table4.LEAPS_ROWS["leaps-broken"])
    finally:
        del table4.LEAPS_ROWS["leaps-broken"]
    assert row["status"] == "n/a" and "backend" in row["reason"]


@pytest.mark.parametrize("name", ["official", "naive"])
def test_formulation_is_a_real_loss(name):
    torch.manual_seed(0)
    model, verifier = build_model("toy_r3d"), build_model("toy_x3d")
    stimulus = torch.rand(3, 4, 32, 32)
    with formulations.build(name, model, verifier, [0, 1], stimulus, frames=4, size=32) as f:
        loss = f.loss()
        assert loss.dim() == 0 and math.isfinite(loss.item())
        loss.backward()
        grad = f.x.grad
        assert grad is not None and grad.shape == f.x.shape
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        before = f.x.detach().clone()
        f.optimiser.zero_grad(set_to_none=True)
        f.step()
        assert math.isfinite(f.last_loss) and not torch.equal(before, f.x.detach())
        f.inference()
    # the hooks are gone after the block
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in list(model.modules()) + list(verifier.modules()))


def test_official_terms_use_every_layer():
    """The official hooks compute the mean and the pairwise coherence on every BatchNorm3d."""
    model, verifier = build_model("toy_r3d"), build_model("toy_x3d")
    with formulations.Official(model, verifier, [0], None, frames=4, size=32) as f:
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
        assert len(f.model_hooks) == len(bns) and len(f.prompt_feats) == len(bns)
        calls = []
        hook = f.model_hooks[0]
        original = hook.__class__.__call__
        hook.__class__.__call__ = lambda self, *a: (calls.append(self), original(self, *a))[1]
        try:
            f.loss()
        finally:
            hook.__class__.__call__ = original
        assert len(calls) == len(bns)
        assert f.model_hooks[-1].coh is not None and f.model_hooks[0].coh is None
        assert len(f.verifier_hooks) == sum(isinstance(m, torch.nn.BatchNorm3d) for m in verifier.modules())


def test_official_rescale_weights():
    assert formulations.Official.rescale(4) == [10.0, 11.0, 6.0, pytest.approx(1 + 10 / 3)]


def test_official_loss_is_the_public_codes_last_layer_term():
    """A hand computation of the public code's loss on a toy model (no verifier): the priming list is
    reset inside the per-layer loop, so only the LAST hooked layer's L1 term (times its rescale
    weight) reaches the loss, and the stimulus is fed un-normalised, in [0, 1]."""
    torch.manual_seed(0)
    model = build_model("toy_r3d")
    stimulus = torch.rand(3, 4, 32, 32)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(bns) > 2 and not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    seen = {}
    tap = bns[-1].register_forward_hook(lambda module, inputs, output: seen.update(z=inputs[0].detach()))
    try:
        with formulations.Official(model, None, [0, 1], stimulus, frames=4, size=32) as f:
            x, fit = f.x.detach().clone(), f.net.fit
            loss = f.loss(x).item()
            f._drop()
            # Only the last layer's stored stimulus mean matters.
            f.prompt_feats[0] = f.prompt_feats[0] + 1.0
            assert f.loss(x).item() == pytest.approx(loss, rel=1e-6)
            f._drop()
            f.prompt_feats[-1] = f.prompt_feats[-1] + 1.0
            assert f.loss(x).item() != pytest.approx(loss, rel=1e-6)
            f._drop()
        with torch.no_grad():
            model(fit(stimulus[None]))         # the stimulus as the public code feeds it: no normalisation
            stimulus_mean = seen["z"].mean(dim=(2, 3, 4))
            logits = model(fit(x))
            z = seen["z"]
    finally:
        tap.remove()
    lambda_first = model.leaps_spec.preset.lambda_first
    prompt = (1 + 10 / (len(bns) - 1)) * (z.mean(dim=(2, 3, 4)) - stimulus_mean).abs().sum()
    pairs = (z[:, :, 1:].unsqueeze(2) - z[:, :, :-1].unsqueeze(3)).permute(0, 1, 4, 5, 2, 3).tril(-1)
    coherence = (z[:, :, 1:] - z[:, :, :-1]).abs().sum() + (1 - pairs).clamp_min(0).sum()
    l2 = x.flatten(1).norm(dim=1).mean()
    expected = F.cross_entropy(logits, torch.tensor([0, 1])) + 0.005 * l2 + lambda_first * prompt - 1e-4 * coherence / 2
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_official_computes_weight_gradients_and_restores_the_flags():
    """The public code never freezes the networks: backward computes every weight gradient."""
    model, verifier = build_model("toy_r3d"), build_model("toy_x3d")
    assert not any(p.requires_grad for p in model.parameters())
    with formulations.Official(model, verifier, [0], torch.rand(3, 4, 32, 32), frames=4, size=32) as f:
        f.step()
        assert all(p.grad is not None for p in model.parameters())
        assert any(p.grad is not None for p in verifier.parameters())  # its head feeds no loss term
        assert f.best_x is not None and f.best_loss == f.last_loss
    assert not any(p.requires_grad for p in list(model.parameters()) + list(verifier.parameters()))
