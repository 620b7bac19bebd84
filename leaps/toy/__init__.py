"""The toy world: procedural action videos and tiny video CNNs trained on them, offline.

It stands in for Kinetics-400 and its pretrained networks (which cannot be downloaded
everywhere), so that LEAPS' quality numbers can be measured anywhere:

* :mod:`leaps.toy.data` — the ten classes, a seeded video generator, a dataset, stimuli;
* :mod:`leaps.toy.nets` — ToyR3D, ToyX3D, ToyR2Plus1D (BatchNorm3d, adaptive heads);
* :mod:`leaps.toy.train` — ``python -m leaps.toy.train`` reproduces the shipped weights;
* :mod:`leaps.toy.checkpoint` — reading / writing ``leaps/data/toy_<net>.pt``;
* :mod:`leaps.toy.judges` — the judges, other families trained apart (``toy_judge_2d``,
  ``toy_judge_attn``); :func:`judge_scores` scores synthesised videos with them. A judge never
  enters an objective (:func:`leaps.invert` refuses one).

The networks are registered as ``toy_r3d``, ``toy_x3d`` and ``toy_r2plus1d`` in
:mod:`leaps.models`; ``build_model("toy_r3d", pretrained=True)`` loads the shipped weights.
"""

from leaps.toy.data import TOY_CLASSES, TOY_MEAN, TOY_STD, ToyVideos, generate, generate_batch, write_stimuli
from leaps.toy.judges import JUDGE_NETS, ToyJudge2D, ToyJudgeAttention, is_judge
from leaps.toy.judging import JUDGES, format_judge_scores, judge_probs, judge_scores
from leaps.toy.nets import TOY_NETS, ToyR2Plus1D, ToyR3D, ToyX3D, build_toy_net

__all__ = [
    "JUDGES",
    "JUDGE_NETS",
    "TOY_CLASSES",
    "TOY_MEAN",
    "TOY_NETS",
    "TOY_STD",
    "ToyJudge2D",
    "ToyJudgeAttention",
    "ToyR2Plus1D",
    "ToyR3D",
    "ToyVideos",
    "ToyX3D",
    "build_toy_net",
    "format_judge_scores",
    "generate",
    "generate_batch",
    "is_judge",
    "judge_probs",
    "judge_scores",
    "write_stimuli",
]
