"""The transformers leaps builds itself: sizes, official checkpoint layouts, feature layouts, inversion.

Full-size models are only built on the meta device (parameter counts, no memory); everything that
runs uses reduced configurations of the same code (fewer blocks, smaller width and input).
"""

import pytest
import torch

import leaps
from leaps import losses
from leaps.errors import ShapeError
from leaps.models import build_model, get_spec
from leaps.models.mvit_b import torchvision_to_slowfast
from leaps.models.transformer_zoo import mvit_v2_b_spec, rev_mvit_b_spec, timesformer_spec, uniformerv2_spec
from leaps.taps import SPACE_MAJOR, FeatureLayout, FeatureTaps

TINY = {
    "timesformer": timesformer_spec("timesformer_tiny", img_size=32, patch=8, frames=8, dim=32, depth=2, heads=2),
    "mvit_v2_b": mvit_v2_b_spec("mvit_v2_b_tiny", frames=8, size=32, stage_depths=(1, 1, 1, 1), dim=8),
    "uniformerv2": uniformerv2_spec("uniformerv2_tiny", input_resolution=32, patch_size=8, width=32, layers=2,
                                    heads=2, return_list=(0, 1), n_dim=32, n_head=2),
    "rev_mvit_b": rev_mvit_b_spec("rev_mvit_b_tiny", frames=8, size=32, stage_depths=(1, 2, 2, 2), dim=8),
}


def _count(name: str) -> int:
    with torch.device("meta"):
        model = build_model(name)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, millions", [("timesformer", 121.6), ("mvit_v2_b", 51.2), ("uniformerv2_b16", 114.6),
                                            ("uniformerv2_l14", 354.1), ("rev_mvit_b", 35.0)])
def test_full_size_parameter_counts(name, millions):
    assert round(_count(name) / 1e6, 1) == millions


def test_specs_carry_table_s1_presets_and_native_input():
    tsf, mvit = get_spec("timesformer"), get_spec("mvit_v2_b")
    assert (tsf.preset.lambda_first, tsf.preset.lambda_last, tsf.preset.r) == (1.0, 0.2, 2.5e-3)
    assert (mvit.preset.lambda_first, mvit.preset.lambda_last, mvit.preset.r) == (0.75, 0.1, 1e-3)
    assert tsf.input_geometry == (8, 224, 224) and mvit.input_geometry == (32, 224, 224)
    assert tsf.mean == (0.45,) * 3 and tsf.std == (0.225,) * 3
    assert tsf.token_grid((8, 224, 224)) == (8, 196) and mvit.token_grid((32, 224, 224)) == (16, 49)
    assert not tsf.ships_weights and tsf.hub is None and mvit.hub is None
    uni_b, uni_l = get_spec("uniformerv2_b16"), get_spec("uniformerv2_l14")
    assert (uni_b.preset.lambda_last, uni_b.preset.r) == (0.2, 2.5e-3)
    assert (uni_l.preset.lambda_last, uni_l.preset.r) == (0.1, 1e-3)
    assert uni_b.input_geometry == uni_l.input_geometry == (8, 224, 224)


# ---------------------------------------------------------------- official checkpoint layouts


def test_timesformer_loads_the_official_key_layout(tmp_path):
    torch.manual_seed(0)
    source = build_model(TINY["timesformer"])
    official = {f"model.{k}": v for k, v in source.state_dict().items()}
    for key in ("model.pos_embed", "model.time_embed", "model.cls_token", "model.head.weight",
                "model.patch_embed.proj.weight", "model.blocks.1.temporal_fc.weight",
                "model.blocks.1.temporal_attn.qkv.weight", "model.blocks.1.temporal_norm1.weight",
                "model.blocks.1.attn.proj.bias", "model.blocks.1.mlp.fc2.weight", "model.norm.bias"):
        assert key in official
    path = tmp_path / "TimeSformer_divST_8x32_224_K400.pyth"
    torch.save({"model_state": official, "epoch": 15}, path)
    loaded = build_model(TINY["timesformer"], weights=path)
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_mvit_v2_b_loads_a_slowfast_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = build_model(TINY["mvit_v2_b"])
    official = torchvision_to_slowfast(source.state_dict())
    for key in ("patch_embed.proj.weight", "cls_token", "blocks.0.attn.qkv.weight", "blocks.0.attn.pool_q.weight",
                "blocks.0.attn.norm_k.weight", "blocks.0.attn.rel_pos_t", "blocks.0.attn.proj.weight",
                "blocks.0.mlp.fc1.weight", "blocks.1.proj.weight", "head.projection.weight", "norm.weight"):
        assert key in official
    assert official["cls_token"].shape == (1, 1, 8)
    path = tmp_path / "MViTv2_B_32x3_k400.pyth"
    torch.save({"model_state": official, "epoch": 200}, path)
    loaded = build_model(TINY["mvit_v2_b"], weights=path)
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    # a file already in torchvision's naming loads too
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    build_model(TINY["mvit_v2_b"], weights=tmp_path / "tv.pth")


def test_uniformerv2_loads_the_official_key_layout(tmp_path):
    torch.manual_seed(0)
    source = build_model(TINY["uniformerv2"])
    official = source.state_dict()
    for key in ("backbone.conv1.weight", "backbone.class_embedding", "backbone.positional_embedding",
                "backbone.ln_pre.weight", "backbone.transformer.resblocks.1.attn.in_proj_weight",
                "backbone.transformer.resblocks.1.attn.out_proj.weight", "backbone.transformer.resblocks.1.ln_1.bias",
                "backbone.transformer.resblocks.1.mlp.c_fc.weight", "backbone.transformer.resblocks.1.mlp.c_proj.bias",
                "backbone.transformer.temporal_cls_token", "backbone.transformer.dpe.1.weight",
                "backbone.transformer.dec.1.ln_3.weight", "backbone.transformer.dec.1.attn.in_proj_bias",
                "backbone.transformer.balance", "backbone.transformer.proj.0.weight",
                "backbone.transformer.proj.2.weight"):
        assert key in official
    assert official["backbone.conv1.weight"].shape == (32, 3, 1, 8, 8)  # no temporal downsampling
    path = tmp_path / "k400_k710_uniformerv2_b16_8x224.pyth"
    torch.save({"model_state": official, "epoch": 5}, path)
    loaded = build_model(TINY["uniformerv2"], weights=path)
    for k, v in official.items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_uniformerv2_coherence_reads_the_last_block_frames():
    model = build_model(TINY["uniformerv2"])
    with FeatureTaps(model) as taps:
        model(_videos(2, 3))
        assert taps.last()[2].shape == (2, 32)  # the head's norm: no time axis left
        name, _, z, _ = taps.coherence_input()
        tokens, grid, _ = taps.coherence_frames()
    assert name == "backbone.transformer.resblocks.1.ln_2" and z.shape == (17, 16, 32)
    assert grid == (8, 16) and torch.equal(tokens.reshape(2, 8, 16, 32)[1, 6], z[1:, 1 * 8 + 6])


def test_converted_checkpoint_errors_name_the_keys(tmp_path):
    source = build_model(TINY["mvit_v2_b"])
    official = torchvision_to_slowfast(source.state_dict())
    del official["blocks.0.attn.pool_q.weight"]
    torch.save({"model_state": official}, tmp_path / "bad.pyth")
    with pytest.raises(leaps.errors.WeightsError, match="pool_q"):
        build_model(TINY["mvit_v2_b"], weights=tmp_path / "bad.pyth")


# ---------------------------------------------------------------- feature layouts


def _videos(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 8, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(TINY))
def test_per_sample_features_never_mix_the_batch(name):
    torch.manual_seed(1)
    model = build_model(TINY[name])
    x, stimuli = _videos(3, 0), _videos(3, 1)
    with FeatureTaps(model) as taps:
        model(stimuli)
        stim_means = taps.channel_means()
        model(x)
        feats = taps.channel_means()
        model(x[1:2])
        alone = taps.channel_means()
        perm = [2, 0, 1]
        model(x[perm])
        feats_perm = taps.channel_means()
    weights = losses.linear_layer_weights(len(feats), 1.0, 0.2)

    def per_sample(fx, fv):  # eq. (1) for every sample on its own
        return sum(w * losses.feature_distance(a, v) for w, a, v in zip(weights, fx, fv))

    loss = per_sample(feats, stim_means)
    loss_perm = per_sample(feats_perm, [m[perm] for m in stim_means])
    assert all(f.shape[0] == 3 for f in feats)
    assert torch.allclose(loss_perm, loss[perm], atol=1e-6)
    assert not torch.allclose(loss, loss[perm])  # the stimuli differ: the test can fail
    for f, a in zip(feats, alone):  # sample 1 in the batch reads as sample 1 run alone
        assert torch.allclose(f[1:2], a, atol=1e-5)


def test_timesformer_coherence_reads_frames_in_time_order():
    model = build_model(TINY["timesformer"])
    with FeatureTaps(model) as taps:
        model(_videos(2, 3))
        name, _, z, layout = taps.coherence_input()
        tokens, grid = layout.frame_tokens(z, 2, TINY["timesformer"].token_grid((8, 32, 32)))
    assert name == "norm" and grid == (8, 16) and tokens.shape == (2, 8 * 16, 32)
    # token (hw, t) of the tapped input is token (t, hw) of the view; the class token is gone
    assert torch.equal(tokens.reshape(2, 8, 16, 32)[:, 5, 3], z[:, 1 + 3 * 8 + 5])


def test_layouts_fold_rows_and_sequence_first():
    b, t, n, c = 2, 3, 5, 4
    z = torch.arange(b * t * n * c, dtype=torch.float32).reshape(n, b * t, c)  # sequence-first, (b t) rows
    layout = FeatureLayout(batch_axis=1, token_order="frame_rows", extra_tokens=1)
    rows = layout.per_sample(z, b)
    assert rows.shape == (b, t * n, c)
    assert torch.equal(rows[1], z[:, t:].transpose(0, 1).reshape(-1, c))
    tokens, grid = layout.frame_tokens(z, b, None)
    assert grid == (t, n - 1) and torch.equal(tokens.reshape(b, t, n - 1, c)[1, 2], z[1:, 1 * t + 2])
    space = FeatureLayout(token_order=SPACE_MAJOR)
    zs = torch.randn(b, 1 + 6 * t, c)
    tokens, _ = space.frame_tokens(zs, b, (t, 6))
    assert torch.equal(tokens.reshape(b, t, 6, c)[:, 2, 4], zs[:, 1 + 4 * t + 2])
    with pytest.raises(ShapeError, match="fold"):
        layout.per_sample(z, 4)


# ---------------------------------------------------------------- inversion


@pytest.mark.parametrize("name", sorted(TINY))
def test_reduced_model_inverts_one_step(name):
    torch.manual_seed(0)
    model = build_model(TINY[name])
    stim_a, stim_b = _videos(2, 4)
    result = leaps.invert(model, [0, 1], [stim_a, stim_b], verifier=build_model("toy_x3d", pretrained=True),
                          steps=1, size=32, frames=8, progress=False)
    assert result.video.shape == (2, 3, 8, 32, 32)
    for key in ("ce", "prim", "coh", "feat"):
        assert len(result.history[key]) == 1 and torch.isfinite(torch.tensor(result.history[key])).all()
    assert result.history["coh"][0] > 0
