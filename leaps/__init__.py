"""leaps: space-time model inversion (LEAPS, "Leaping Into Memories", ICCV 2023).

    import leaps
    from leaps.models import build_model

    model = build_model("slow_r50", weights="SLOW_8x8_R50.pyth")
    verifier = build_model("x3d_s", weights="X3D_S.pyth")
    result = leaps.invert(model, "juggling balls", "stimulus.mp4", verifier=verifier)
    result.save("out/")

Public API: :func:`invert`, :func:`prepare`, :func:`deepdream`, :func:`activation_maximization`,
:class:`InversionConfig`, :class:`InversionResult`, the objectives (:class:`LeapsObjective`,
eq. (4); :class:`DeepDreamObjective`, :class:`ActivationMaximizationObjective`; module
:mod:`leaps.objective`), and the modules :mod:`leaps.losses`, :mod:`leaps.taps`,
:mod:`leaps.models`, :mod:`leaps.video`, :mod:`leaps.metrics`, :mod:`leaps.classes`.
"""

from . import classes, losses, metrics, models, objective, taps, video
from .baselines import activation_maximization, deepdream
from .config import InversionConfig
from .errors import LeapsError
from .inversion import InversionResult, invert, prepare
from .objective import ActivationMaximizationObjective, DeepDreamObjective, LeapsObjective, Objective

__version__ = "0.1.0"

__all__ = [
    "ActivationMaximizationObjective",
    "DeepDreamObjective",
    "InversionConfig",
    "InversionResult",
    "LeapsError",
    "LeapsObjective",
    "Objective",
    "activation_maximization",
    "classes",
    "deepdream",
    "invert",
    "losses",
    "metrics",
    "models",
    "objective",
    "prepare",
    "taps",
    "video",
]
