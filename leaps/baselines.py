"""Image-inversion baselines extended to video (Section 4.2), run by the same loop as LEAPS.

* 3D DeepDream [1]: cross-entropy + total variation + l2 of the input
  (:class:`leaps.objective.DeepDreamObjective`).
* 3D Activation Maximisation [13, 33]: gradient ascent on the target's logit (+ optional l2)
  (:class:`leaps.objective.ActivationMaximizationObjective`).

Neither uses a stimulus nor a verifier's statistics; a verifier, if given, is only used to
report its top-1 on the result.
"""

from __future__ import annotations

from torch import nn

from .config import InversionConfig
from .inversion import InversionResult, invert


def deepdream(
    model: nn.Module, target, verifier: nn.Module | None = None, config: InversionConfig | None = None, **options
) -> InversionResult:
    """3D DeepDream: minimise CE(model(x), y) + tv_weight TV(x) + l2_weight mean(x^2)."""
    return invert(model, target, None, verifier, config, objective="deepdream", **options)


def activation_maximization(
    model: nn.Module, target, verifier: nn.Module | None = None, config: InversionConfig | None = None, **options
) -> InversionResult:
    """3D AM: maximise the target's logit, minimise -logit_y(x) + l2_weight mean(x^2)."""
    return invert(model, target, None, verifier, config, objective="am", **options)
