"""Names and numbers shared by every layer: imported by config, losses, the fused terms and the CLI.

This module imports nothing from leaps (it sits at the bottom of the import graph), so
``leaps.config`` can validate options without loading the op registry, and the fused path
uses the same epsilons as the plain-torch references instead of copies of the literals.
"""

from __future__ import annotations

import math

from .errors import LeapsError

#: Objectives of one inversion: LEAPS, eq. (4), and the two baselines of Section 4.2.
OBJECTIVES = ("leaps", "deepdream", "am")
#: Priming distances d of eq. (1) (Table 2 of the paper).
DISTANCES = ("jvs", "l1", "l2", "cos")
#: Loss backends: "cuda" is the compiled extension leaps._C (its CPU kernels run on CPU tensors).
BACKENDS = ("auto", "reference", "triton", "cuda")
#: Autocast modes; "fp32" turns autocast off, also under fast=True.
AMP_MODES = (None, "fp32", "bf16", "fp16")
#: Learning-rate schedules of the Adam loop.
LR_SCHEDULES = ("cosine", "constant")
#: How x* is parameterised (leaps.parameterization).
PARAMS = ("pixel", "fourier", "rigid")

#: eps of JVS(a, b) = a.b / (|a|^2 + |b|^2 - a.b + eps); also the norm clamp of the cosine distance.
JVS_EPS = 1e-8
#: sqrt(max(x, SQRT_FLOOR)): a zero distance (l2, R_feat) has gradient 0, not NaN.
SQRT_FLOOR = 1e-24


def is_real(value) -> bool:
    """A finite int or float, not a bool: what a numeric option accepts."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_choice(value, choices, what: str) -> None:
    """Raise one clear :class:`LeapsError` when ``value`` is not one of ``choices``."""
    if value not in choices:
        shown = ", ".join(str(c) for c in choices if c is not None)
        raise LeapsError(f"unknown {what} {value!r}; choose one of {shown}")
