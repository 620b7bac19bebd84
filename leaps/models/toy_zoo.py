"""The toy-world networks (:mod:`leaps.toy`), registered as ``toy_r3d``, ``toy_x3d``, ``toy_r2plus1d``,
and ``toy_r3d_robust`` (ToyR3D trained adversarially, the network ``leaps demo`` inverts), and the
judges ``toy_judge_2d`` and ``toy_judge_attn`` (:mod:`leaps.toy.judges`; ``spec.judge`` is True:
they score synthesised videos and :func:`leaps.invert` refuses them).

They are trained offline on procedurally generated 8 x 64^2 action videos (10 classes), and
their weights ship with the package (``leaps/data/toy_<net>.pt``), so that
``build_model("toy_r3d", pretrained=True)`` works without network. Registering reads no file;
the weights are loaded when a model is built.

Presets: ToyR3D borrows 3D R50's row of Table S1, ToyX3D X3D-S's, ToyR2Plus1D (2+1)D R50's.
An adversarially trained classifier has input gradients that follow the shapes it recognises
("perceptually aligned", Santurkar et al. 2019), so its inversions show more shape: the robust
ToyR3D gives 'ring growing' a ring that grows where the standard one gives a blob, and the judges
recognise its inversions far more often (README, *The demo*).
"""

from __future__ import annotations

from functools import partial

from torch import nn

from leaps.errors import WeightsError
from leaps.models.registry import ModelSpec, Preset, register
from leaps.toy.checkpoint import read_checkpoint, shipped_path
from leaps.toy.data import TOY_CLASSES, TOY_MEAN, TOY_STD
from leaps.toy.judge_train import build_judge
from leaps.toy.nets import build_toy_net

_NOTES = (
    "trained on the procedural toy world (leaps.toy: 10 classes, 8 x 64^2 clips), not on "
    "Kinetics; invert at frames=8, size=64 with toy stimuli (leaps.toy.write_stimuli); "
    "{net} checkpoint ships with leaps (python -m leaps.toy.train rebuilds it)"
)


_ROBUST_NOTES = (
    "; adversarially trained with PGD-3 in pixels, in two stages: 3 epochs at eps 16/255 from scratch, "
    "then 2 epochs at 32/255 from those weights, the radius warmed up over each stage's first epoch "
    "(python -m leaps.toy.train --nets r3d --epochs 3 --adv-eps 0.06274509803921569 --adv-steps 3 "
    "--adv-warmup 1 --out stage1, then --epochs 2 --adv-eps 0.12549019607843137 --adv-steps 3 --adv-warmup 1 "
    "--init stage1/toy_r3d_robust.pt)"
)


_JUDGE_NOTES = (
    "judge: scores synthesised toy videos, never inverted nor used as verifier (leaps.invert refuses it); "
    "{family}; trained apart from the other toy networks on the judge_train seed range with its own "
    "augmentation and seed (python -m leaps.toy.train --nets {net})"
)


def _load_shipped(net: str, robust: bool, num_classes: int) -> nn.Module:
    """The toy network ``net`` with its shipped weights.

    ``num_classes`` is what build_model passes to every hub (400, the Kinetics count); the toy
    checkpoints always have ``len(TOY_CLASSES)`` classes, which is what is returned.
    """
    del num_classes
    state, meta = read_checkpoint(shipped_path(net, robust))
    if robust and not meta.get("adv_eps"):
        raise WeightsError(f"the shipped checkpoint of {net} (robust) was not trained adversarially")
    if list(meta.get("classes", [])) != TOY_CLASSES:
        raise WeightsError(
            f"the shipped toy checkpoint of {net} was trained on other classes than leaps.toy "
            f"defines now; rebuild it with `python -m leaps.toy.train --nets {net}`"
        )
    if net in _JUDGE_FAMILIES and not meta.get("judge"):
        raise WeightsError(f"the shipped checkpoint of {net} was not trained as a judge")
    model = (build_judge if net in _JUDGE_FAMILIES else build_toy_net)(net, len(TOY_CLASSES))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"the shipped toy checkpoint of {net} does not fit the network: {exc}") from exc
    model.toy_meta = meta  # classes, test accuracy, training seed and time
    return model


def _spec(net: str, title: str, preset: Preset, robust: bool = False) -> ModelSpec:
    return ModelSpec(
        name=f"toy_{net}" + ("_robust" if robust else ""),
        title=title,
        source="toy",
        kind="cnn",
        frames=8,
        size=64,
        fixed_size=False,  # adaptive heads: any T x H x W
        mean=TOY_MEAN,
        std=TOY_STD,
        preset=preset,
        builder=partial(build_toy_net, net),
        hub=partial(_load_shipped, net, robust),
        notes=_NOTES.format(net=net) + (_ROBUST_NOTES if robust else ""),
        class_names=tuple(TOY_CLASSES),
        ships_weights=True,
    )


_JUDGE_FAMILIES = {
    "judge_2d": ("Toy judge (2D CNN + temporal conv)", "cnn", "per-frame 2D CNN with GroupNorm + temporal convolution"),
    "judge_attn": ("Toy judge (space-time attention)", "transformer",
                   "divided space-time attention over 4 x 4 tokens per frame (convolutional patch embedding), "
                   "LayerNorm, max pool"),
}


def _judge_spec(net: str) -> ModelSpec:
    title, kind, family = _JUDGE_FAMILIES[net]
    return ModelSpec(
        name=f"toy_{net}",
        title=title,
        source="toy",
        kind=kind,
        frames=8,
        size=64,
        fixed_size=False,  # other sizes work (judge_scores resizes to 8 x 64^2)
        mean=TOY_MEAN,
        std=TOY_STD,
        preset=Preset(1.0, 0.3, 7.5e-3),  # never used: a judge is never inverted
        builder=partial(build_judge, net),
        hub=partial(_load_shipped, net, False),
        notes=_JUDGE_NOTES.format(family=family, net=net),
        class_names=tuple(TOY_CLASSES),
        ships_weights=True,
        judge=True,
    )


SPECS = (
    _spec("r3d", "Toy R3D", Preset(1.0, 0.3, 7.5e-3)),  # 3D R50's preset
    _spec("x3d", "Toy X3D", Preset(1.0, 0.1, 1e-3)),  # X3D-S's preset
    _spec("r2plus1d", "Toy R(2+1)D", Preset(0.75, 0.1, 5e-3)),  # (2+1)D R50's preset
    _spec("r3d", "Toy R3D (robust)", Preset(1.0, 0.3, 7.5e-3), robust=True),
    _judge_spec("judge_2d"),
    _judge_spec("judge_attn"),
)

for _s in SPECS:
    register(_s)
