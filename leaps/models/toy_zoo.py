"""The toy-world networks (:mod:`leaps.toy`), registered as ``toy_r3d``, ``toy_x3d``, ``toy_r2plus1d``,
and ``toy_r3d_robust`` (ToyR3D trained adversarially, the network ``leaps demo`` inverts).

They are trained offline on procedurally generated 8 x 64^2 action videos (10 classes), and
their weights ship with the package (``leaps/data/toy_<net>.pt``), so that
``build_model("toy_r3d", pretrained=True)`` works without network. Registering reads no file;
the weights are loaded when a model is built.

Presets: ToyR3D borrows 3D R50's row of Table S1, ToyX3D X3D-S's, ToyR2Plus1D (2+1)D R50's.
An adversarially trained classifier has input gradients that follow the shapes it recognises
("perceptually aligned", Santurkar et al. 2019), so its inversions show more shape: the robust
ToyR3D gives 'ring growing' a hollow, curved object where the standard one gives a blob.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from leaps.errors import WeightsError
from leaps.models.registry import ModelSpec, Preset, register
from leaps.toy.checkpoint import read_checkpoint, shipped_path
from leaps.toy.data import TOY_CLASSES, TOY_MEAN, TOY_STD
from leaps.toy.nets import build_toy_net

_NOTES = (
    "trained on the procedural toy world (leaps.toy: 10 classes, 8 x 64^2 clips), not on "
    "Kinetics; invert at frames=8, size=64 with toy stimuli (leaps.toy.write_stimuli); "
    "{net} checkpoint ships with leaps (python -m leaps.toy.train rebuilds it)"
)


_ROBUST_NOTES = (
    "; adversarially trained (FGSM with random start, eps 8/255 in pixels, 4 epochs: "
    "python -m leaps.toy.train --nets r3d --epochs 4 --adv-eps 0.03137254901960784)"
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
    model = build_toy_net(net, len(TOY_CLASSES))
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


SPECS = (
    _spec("r3d", "Toy R3D", Preset(1.0, 0.3, 7.5e-3)),  # 3D R50's preset
    _spec("x3d", "Toy X3D", Preset(1.0, 0.1, 1e-3)),  # X3D-S's preset
    _spec("r2plus1d", "Toy R(2+1)D", Preset(0.75, 0.1, 5e-3)),  # (2+1)D R50's preset
    _spec("r3d", "Toy R3D (robust)", Preset(1.0, 0.3, 7.5e-3), robust=True),
)

for _s in SPECS:
    register(_s)
