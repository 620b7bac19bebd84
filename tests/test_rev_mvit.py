"""rev-MViT-B 16x4: SlowFast's configuration and names, the official checkpoint layout, reversibility, R_coh, CLI.

The full-size model is only built on the meta device; everything that runs uses reduced configurations
(fewer blocks, 8 channels at first, 8 x 32^2 or 8 x 64^2 input) on the same code path.
"""

import json

import pytest
import torch

from leaps import cli
from leaps.errors import LeapsError, ShapeError, WeightsError
from leaps.models import build_model, get_spec, registry
from leaps.models.rev_mvit import ReversibleBlock, RevMViT, StageTransitionBlock
from leaps.models.transformer_zoo import REV_MVIT_B_URL, rev_mvit_b_spec
from leaps.taps import FeatureTaps
from leaps.video import make_test_video

TINY = rev_mvit_b_spec("rev_mvit_b_tiny", frames=8, size=32, stage_depths=(1, 2, 2, 2), dim=8)
TINY_64 = rev_mvit_b_spec("rev_mvit_b_tiny64", frames=8, size=64, stage_depths=(1, 2, 2, 2), dim=8)


def _videos(n: int, seed: int, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, 8, size, size, generator=torch.Generator().manual_seed(seed))


def test_full_size_follows_rev_mvit_b_16x4_conv():
    with torch.device("meta"):
        model = build_model("rev_mvit_b")
    # SlowFast's projects/rev/README.md lists 34.9 M parameters for the Kinetics-400 model
    assert sum(p.numel() for p in model.parameters()) == 34_963_120
    layers = model.rev_backbone.layers
    assert len(layers) == 16
    assert [i for i, layer in enumerate(layers) if isinstance(layer, StageTransitionBlock)] == [1, 3, 14]
    dims = [layer.F.attn.dim_out for layer in layers]
    heads = [layer.F.attn.num_heads for layer in layers]
    assert dims == [96] + [192] * 2 + [384] * 11 + [768] * 2 and heads == [1] + [2] * 2 + [4] * 11 + [8] * 2
    strides_kv = [tuple(layer.F.attn.pool_k.stride) for layer in layers]
    assert strides_kv == [(1, 8, 8)] + [(1, 4, 4)] * 2 + [(1, 2, 2)] * 11 + [(1, 1, 1)] * 2  # POOL_KV_STRIDE_ADAPTIVE
    assert all(layer.F.attn.qkv.bias is None for layer in layers)  # QKV_BIAS: False
    assert layers[1].F.attn.pool_q.stride == (1, 2, 2) and layers[2].F.attn.pool_q is None
    assert layers[15].F.thw == (8, 7, 7)
    assert model.patch_embed.proj.kernel_size == (3, 7, 7) and model.patch_embed.proj.padding == (1, 3, 3)
    assert model.pos_embed_spatial.shape == (1, 56 * 56, 96) and model.pos_embed_temporal.shape == (1, 8, 96)
    assert model.norm.normalized_shape == (1536,) and model.head.projection.in_features == 1536


def test_spec_carries_table_s1_preset_and_native_input():
    spec = get_spec("rev-MViT-B")
    assert spec.name == "rev_mvit_b" and spec.title == "rev-MViT-B" and spec.kind == "transformer"
    assert (spec.preset.lambda_first, spec.preset.lambda_last, spec.preset.r) == (0.625, 0.1, 5e-3)
    assert spec.input_geometry == (16, 224, 224) and spec.fixed_size
    assert spec.mean == (0.45,) * 3 and spec.std == (0.225,) * 3
    assert spec.token_grid((16, 224, 224)) == (8, 49)
    assert spec.hub is None and spec.url == REV_MVIT_B_URL and "REV_MVIT_B_16x4.pyth" in spec.notes
    assert TINY.token_grid((8, 32, 32)) == (4, 1) and TINY_64.token_grid((8, 64, 64)) == (4, 4)
    assert rev_mvit_b_spec("r", frames=8, size=64, stage_depths=(1, 2, 2)).token_grid((8, 64, 64)) == (4, 16)


def test_stage_depths_that_leave_no_streams_are_refused():
    for depths in ((0, 2), (1, 1, 2), (1, 2, 1)):
        with pytest.raises(LeapsError, match="stage depths"):
            RevMViT(10, frames=8, size=32, stage_depths=depths, dim=8)


def test_wrong_input_size_says_what_it_takes():
    model = build_model(TINY)
    with pytest.raises(ShapeError, match="8 x 32 x 32"):
        model(torch.rand(1, 3, 8, 64, 64))


# ---------------------------------------------------------------- official checkpoint layout


def _official_checkpoint(model, path):
    state = model.state_dict()
    for key in ("patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed_spatial", "pos_embed_temporal",
                "rev_backbone.layers.0.F.norm.weight", "rev_backbone.layers.0.F.attn.qkv.weight",
                "rev_backbone.layers.0.F.attn.proj.bias", "rev_backbone.layers.0.F.attn.pool_k.weight",
                "rev_backbone.layers.0.F.attn.norm_v.bias", "rev_backbone.layers.0.G.norm.weight",
                "rev_backbone.layers.0.G.mlp.fc1.weight", "rev_backbone.layers.0.G.mlp.fc2.bias",
                "rev_backbone.layers.1.F.attn.pool_q.weight", "rev_backbone.layers.1.F.attn.norm_q.weight",
                "rev_backbone.layers.1.res_proj.weight", "norm.weight", "head.projection.weight"):
        assert key in state
    assert not any(k.startswith("cls_token") or "pos_embed_class" in k or "rel_pos" in k for k in state)
    torch.save({"model_state": state, "epoch": 200}, path)  # SlowFast's checkpoint layout
    return state


def test_loads_the_official_key_layout(tmp_path):
    torch.manual_seed(0)
    source = build_model(TINY)
    state = _official_checkpoint(source, tmp_path / "REV_MVIT_B_16x4.pyth")
    loaded = build_model(TINY, weights=tmp_path / "REV_MVIT_B_16x4.pyth")
    for k, v in state.items():
        assert torch.equal(loaded.state_dict()[k], v)
    x = _videos(2, 0)
    assert torch.equal(loaded(x), source(x))


def test_a_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    state = build_model(TINY).state_dict()
    del state["rev_backbone.layers.1.res_proj.weight"]
    torch.save({"model_state": state}, tmp_path / "bad.pyth")
    with pytest.raises(WeightsError, match="res_proj"):
        build_model(TINY, weights=tmp_path / "bad.pyth")


# ---------------------------------------------------------------- reversibility


def test_reversible_blocks_recover_their_inputs():
    torch.manual_seed(0)
    model = build_model(TINY).double()
    blocks = [layer for layer in model.rev_backbone.layers if isinstance(layer, ReversibleBlock)]
    assert len(blocks) == 4
    for block in blocks:
        t, h, w = block.F.thw
        dim = block.F.norm.normalized_shape[0]
        x_1, x_2 = torch.randn(2, 2, t * h * w, dim, dtype=torch.float64)
        y_1, y_2 = block(x_1, x_2)
        x_2_again = y_2 - block.G(y_1)  # SlowFast's backward_pass recomputes the inputs this way
        x_1_again = y_1 - block.F(x_2_again)
        assert torch.allclose(x_2_again, x_2, atol=1e-12) and torch.allclose(x_1_again, x_1, atol=1e-12)
        assert not torch.allclose(y_1, x_1)  # the block changed its input: the test can fail


def test_input_gradient_flows_through_every_tapped_layer():
    # LEAPS primes on the LayerNorm inputs inside the reversible blocks: plain autograd reaches the pixels from each
    torch.manual_seed(0)
    model = build_model(TINY)
    x = _videos(1, 1).requires_grad_(True)
    with FeatureTaps(model) as taps:
        model(x)
        names, feats = taps.names(), taps.features()
    assert "rev_backbone.layers.0.F.norm" in names and "rev_backbone.layers.6.G.norm" in names
    for name, z in zip(names, feats):
        (grad,) = torch.autograd.grad(z.sum(), x, retain_graph=True)
        assert grad.abs().sum() > 0, name


# ---------------------------------------------------------------- R_coh


def test_coherence_reads_both_streams_time_major():
    torch.manual_seed(0)
    model = build_model(TINY_64)
    x = _videos(2, 3, size=64)
    with FeatureTaps(model) as taps:
        model(x)
        name, _, z, layout = taps.coherence_input()
        tokens, grid, _ = taps.coherence_frames(TINY_64.token_grid((8, 64, 64)))
    assert name == "norm" and layout is None  # batch-first, time-major, no class token: the default reading
    assert z.shape == (2, 4 * 4, 2 * 64) and grid == (4, 4) and torch.equal(tokens, z)
    # tokens are time-major: changing the video's last frame moves only the last token frame at the first block
    x2 = x.clone()
    x2[:, :, 7] = 0
    with FeatureTaps(model) as taps:
        model(x)
        first = taps.features()[0].reshape(2, 4, 16 * 16, 8)
        model(x2)
        first2 = taps.features()[0].reshape(2, 4, 16 * 16, 8)
    moved = (first - first2).abs().amax(dim=(0, 2, 3))
    assert moved[3] > 0 and torch.all(moved[:3] == 0)


# ---------------------------------------------------------------- inversion through the CLI


@pytest.fixture
def tiny_registered():
    registry.register(TINY)
    yield TINY.name
    registry._REGISTRY.pop(registry._key(TINY.name))


def test_cli_inverts_the_reduced_model_with_an_official_checkpoint(tmp_path, capsys, tiny_registered):
    torch.manual_seed(0)
    _official_checkpoint(build_model(TINY, num_classes=10), tmp_path / "rev.pyth")
    stimulus = make_test_video(tmp_path / "stimulus.mp4", frames=8, size=32)
    out = tmp_path / "out"
    code = cli.main(["invert", "--model", tiny_registered, "--weights", str(tmp_path / "rev.pyth"),
                     "--num-classes", "10", "--target", "3", "--stimulus", str(stimulus), "--batch", "2",
                     "--verifier", "toy_x3d", "--verifier-pretrained", "--steps", "1", "--frames", "8",
                     "--size", "32", "--out", str(out), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((out / "leaps_history.json").read_text())
    assert summary["targets"] == [3, 3]
    for key in ("ce", "prim", "coh", "feat"):
        assert len(summary["history"][key]) == 1
    assert summary["history"]["coh"][0] > 0

