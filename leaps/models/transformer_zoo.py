"""The paper's video transformers that no package builds compatibly with their official checkpoints.

leaps builds them itself (:mod:`leaps.models.timesformer`, :mod:`leaps.models.mvit_b`,
:mod:`leaps.models.uniformerv2`, :mod:`leaps.models.rev_mvit`), with the
official parameter names, so an official Kinetics-400 checkpoint loads with ``weights=PATH``; no
weights are downloaded (``hub`` is None, ``url`` says where the checkpoint is published). Presets are
Table S1's rows for these networks.

Each ``*_spec(**arch)`` factory returns a consistent spec for any architecture size (a reduced
``dim``/``depth`` gives a small model on the same code path, for tests); the defaults are the
published models, registered on import. Registering imports neither torchvision nor timm.
"""

from __future__ import annotations

from functools import partial

from leaps.models.registry import ModelSpec, Preset, register
from leaps.taps import FRAME_ROWS, SPACE_MAJOR, FeatureLayout

SLOWFAST_MEAN = (0.45, 0.45, 0.45)
SLOWFAST_STD = (0.225, 0.225, 0.225)

TIMESFORMER_URL = "https://www.dropbox.com/s/g5t24we9gl5yk88/TimeSformer_divST_8x32_224_K400.pyth"
MVIT_V2_B_URL = ("https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/mvitv2/pysf_video_models/"
                 "MViTv2_B_32x3_k400_f304025456.pyth")

#: TimeSformer's attention folds frames (spatial attention) and positions (temporal attention) into
#: the batch: rows (B*T) x (1+HW) x C and (B*HW) x T x C, sample-major. Its final norm sees the class
#: token, then space-major tokens (time fastest).
TIMESFORMER_LAYOUTS = (
    ("blocks.*.temporal_norm1", FeatureLayout()),
    ("blocks.*.norm1", FeatureLayout()),
    ("norm", FeatureLayout(token_order=SPACE_MAJOR)),
)


def _build_timesformer(num_classes: int, **arch):
    from leaps.models.timesformer import TimeSformer

    return TimeSformer(num_classes, **arch)


def _timesformer_grid(thw: tuple[int, int, int], patch: int = 16) -> tuple[int, int]:
    from leaps.models.timesformer import timesformer_token_grid

    return timesformer_token_grid(thw, patch)


def timesformer_spec(name: str = "timesformer", *, img_size: int = 224, patch: int = 16, frames: int = 8,
                     **arch) -> ModelSpec:
    """TimeSformer (divided space-time, ViT-B/16, 8 x 224^2, Kinetics-400); ``arch``: dim, depth, heads."""
    return ModelSpec(
        name=name, title="TimeSformer", source="leaps", kind="transformer", frames=frames, size=img_size,
        fixed_size=True, mean=SLOWFAST_MEAN, std=SLOWFAST_STD, preset=Preset(1.0, 0.2, 2.5e-3),
        builder=partial(_build_timesformer, img_size=img_size, patch=patch, frames=frames, **arch),
        hub=None, token_grid=partial(_timesformer_grid, patch=patch), url=TIMESFORMER_URL,
        notes="divided space-time attention, built by leaps with the official parameter names: pass the "
        f"official Kinetics-400 checkpoint (TimeSformer_divST_8x32_224_K400.pyth, {TIMESFORMER_URL}) "
        "with weights=PATH; final norm sees 1 class token + 196 x 8 space-major tokens",
        feature_layouts=TIMESFORMER_LAYOUTS,
    )


def _mvit_grid(thw: tuple[int, int, int]) -> tuple[int, int]:
    from leaps.models.torchvision_zoo import mvit_token_grid

    return mvit_token_grid(thw)


def _build_mvit_v2_b(num_classes: int, **arch):
    from leaps.models.mvit_b import build_mvit_v2_b

    return build_mvit_v2_b(num_classes, **arch)


def _slowfast_to_torchvision(state: dict) -> dict:
    from leaps.models.mvit_b import slowfast_to_torchvision

    return slowfast_to_torchvision(state)


def mvit_v2_b_spec(name: str = "mvit_v2_b", *, frames: int = 32, size: int = 224, **arch) -> ModelSpec:
    """MViTv2-B 32x3 on torchvision's MViT; loads SlowFast checkpoints (keys renamed on load).
    ``arch``: stage_depths (4 stages: the token grid assumes three query poolings), dim."""
    return ModelSpec(
        name=name, title="MViTv2-B", source="leaps", kind="transformer", frames=frames, size=size,
        fixed_size=True, mean=SLOWFAST_MEAN, std=SLOWFAST_STD, preset=Preset(0.75, 0.1, 1e-3),
        builder=partial(_build_mvit_v2_b, frames=frames, size=size, **arch), hub=None,
        token_grid=_mvit_grid, url=MVIT_V2_B_URL,
        notes="torchvision's MViT class in SlowFast's MVITv2_B_32x3 configuration; pass the official "
        f"SlowFast Kinetics-400 checkpoint ({MVIT_V2_B_URL}) with weights=PATH (keys are renamed to "
        "torchvision's on load); fixed 32 x 224^2 input; final norm sees 1 class token + 16 x 49 tokens",
        state_dict_converter=_slowfast_to_torchvision,
    )


#: (UniFormerV2's Kinetics configs keep SlowFast's default DATA.MEAN / DATA.STD as well.)
#: UniFormerV2 runs its backbone sequence-first with a class token per frame, (1+HW) x (B*T) x C;
#: ln_pre is batch-first over (B*T) rows; the decoder's norms see 1 x B x C queries and
#: (T*(1+HW)) x B x C keys; the head's norm B x C (no time axis: R_coh reads the last block's ln_2).
UNIFORMERV2_LAYOUTS = (
    ("backbone.ln_pre", FeatureLayout()),
    ("backbone.transformer.resblocks.*", FeatureLayout(batch_axis=1, token_order=FRAME_ROWS, extra_tokens=1)),
    ("backbone.transformer.dec.*", FeatureLayout(batch_axis=1)),
    ("backbone.transformer.proj.*", FeatureLayout()),
)
UNIFORMERV2_URL = "https://github.com/OpenGVLab/UniFormerV2/blob/main/MODEL_ZOO.md"
_UNIFORMERV2 = {  # registry name: (title, arch key, preset)
    "uniformerv2_b16": ("UniFormerV2-B/16", "b16", Preset(1.0, 0.2, 2.5e-3)),
    "uniformerv2_l14": ("UniFormerV2-L/14", "l14", Preset(1.0, 0.1, 1e-3)),
}


def _build_uniformerv2(num_classes: int, **arch):
    from leaps.models.uniformerv2 import UniFormerV2

    return UniFormerV2(num_classes, **arch)


def uniformerv2_spec(name: str = "uniformerv2_b16", **overrides) -> ModelSpec:
    """UniFormerV2-B/16 or -L/14 (K710 -> K400, 8 x 224^2); ``overrides`` change the architecture
    (input_resolution, patch_size, width, layers, heads, t_size, return_list, n_dim, n_head)."""
    from leaps.models.uniformerv2 import ARCHS  # plain data, no model library

    base = name if name in _UNIFORMERV2 else "uniformerv2_b16"
    title, key, preset = _UNIFORMERV2[base]
    arch = {**ARCHS[key], **overrides}
    return ModelSpec(
        name=name, title=title, source="leaps", kind="transformer", frames=arch["t_size"],
        size=arch["input_resolution"], fixed_size=True, mean=SLOWFAST_MEAN, std=SLOWFAST_STD, preset=preset,
        builder=partial(_build_uniformerv2, **arch), hub=None, url=UNIFORMERV2_URL,
        notes=f"built by leaps with the official parameter names (NO_LMHRA, no temporal downsampling, as the "
        f"released K400 models); pass the official k400+k710 {key} 8x224 checkpoint (backbone.-prefixed keys, "
        f"{UNIFORMERV2_URL}) with weights=PATH; R_coh reads the last backbone block's frames",
        feature_layouts=UNIFORMERV2_LAYOUTS, coherence_layer="backbone.transformer.resblocks.*.ln_2",
    )


REV_MVIT_B_URL = "https://dl.fbaipublicfiles.com/pyslowfast/rev/REV_MVIT_B_16x4.pyth"


def _build_rev_mvit(num_classes: int, **arch):
    from leaps.models.rev_mvit import RevMViT

    return RevMViT(num_classes, **arch)


def _rev_mvit_grid(thw: tuple[int, int, int], poolings: int = 3) -> tuple[int, int]:
    from leaps.models.rev_mvit import rev_mvit_token_grid

    return rev_mvit_token_grid(thw, poolings)


def rev_mvit_b_spec(name: str = "rev_mvit_b", *, frames: int = 16, size: int = 224, stage_depths=(1, 2, 11, 2),
                    **arch) -> ModelSpec:
    """rev-MViT-B 16x4 (reversible MViTv2-B, Kinetics-400); ``arch``: dim. ``stage_depths``: blocks per stage
    (``rev_mvit.B_STAGE_DEPTHS``), every stage after the first opening with a stage-transition (query-pooling)
    block; the token grid assumes one query pooling per later stage."""
    stage_depths = tuple(stage_depths)
    return ModelSpec(
        name=name, title="rev-MViT-B", source="leaps", kind="transformer", frames=frames, size=size,
        fixed_size=True, mean=SLOWFAST_MEAN, std=SLOWFAST_STD, preset=Preset(0.625, 0.1, 5e-3),
        builder=partial(_build_rev_mvit, frames=frames, size=size, stage_depths=stage_depths, **arch), hub=None,
        token_grid=partial(_rev_mvit_grid, poolings=len(stage_depths) - 1), url=REV_MVIT_B_URL,
        notes="reversible MViTv2-B built by leaps with SlowFast's parameter names (REV_MVIT_B_16x4_CONV); pass the "
        f"official Kinetics-400 checkpoint (REV_MVIT_B_16x4.pyth, {REV_MVIT_B_URL}) with weights=PATH; fixed "
        "16 x 224^2 input; final norm sees 8 x 49 tokens (no class token) of both residual streams (2 x 768)",
    )


SPECS = (timesformer_spec(), mvit_v2_b_spec(), uniformerv2_spec("uniformerv2_b16"),
         uniformerv2_spec("uniformerv2_l14"), rev_mvit_b_spec())

for _s in SPECS:
    register(_s)
