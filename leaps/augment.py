"""Transformation robustness (Olah et al. 2017): random rescale, rotation and temporal roll of x*.

Applied each step after the schedule's roll and flip (:func:`leaps.engine.augment`), before the
networks. As the roll and flip, every step's draw is made up front from the run's seed (a stream
of its own, so that the roll and flip draws stay those of a run without these options) and read on
the device through the step counter: a step needs nothing from the host and can be captured as a
CUDA graph. One draw per step is shared by the whole batch.

* ``aug_scale=(lo, hi)``: zoom by a factor uniform in [lo, hi] (> 1 magnifies);
* ``aug_rotate=deg``: rotate by an angle uniform in [-deg, deg] degrees;
* ``aug_time_shift=k``: roll the frames by a whole number of frames uniform in [-k, k].

Scale and rotation are one affine resample per frame (bilinear, reflected at the border).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .constants import is_real
from .errors import LeapsError

#: Salt of the augmentation stream: Random(f"{SALT}{seed}") is independent of Random(seed).
SALT = "leaps.augment:"


def active(cfg) -> bool:
    return cfg.aug_scale is not None or bool(cfg.aug_rotate) or bool(cfg.aug_time_shift)


def check(cfg) -> None:
    """One clear error for a bad value of any option of this module."""
    if cfg.aug_scale is not None:
        ok = isinstance(cfg.aug_scale, (tuple, list)) and len(cfg.aug_scale) == 2 and all(map(is_real, cfg.aug_scale))
        if not ok or not 0 < cfg.aug_scale[0] <= cfg.aug_scale[1]:
            raise LeapsError(f"aug_scale must be (lo, hi) with 0 < lo <= hi, e.g. (0.9, 1.1); got {cfg.aug_scale!r}")
    rotate = cfg.aug_rotate
    if not is_real(rotate) or not 0 <= rotate <= 180:
        raise LeapsError(f"aug_rotate must be a number of degrees in [0, 180] (0: off), got {rotate!r}")
    shift = cfg.aug_time_shift
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise LeapsError(f"aug_time_shift must be a whole number of frames >= 0 (0: off), got {shift!r}")


@dataclass
class Transforms:
    """Per step: the affine map of the frames (or None) and the source frame of every output frame (or None)."""

    theta: torch.Tensor | None   # steps x 3 x 4: output (x, y, t) -> input, normalised coordinates
    frames: torch.Tensor | None  # steps x T, int64

    @classmethod
    def build(cls, cfg, device) -> "Transforms":
        rng = random.Random(None if cfg.seed is None else f"{SALT}{cfg.seed}")
        thetas, frames = [], []
        ar_t = torch.arange(cfg.frames)
        spatial = cfg.aug_scale is not None or bool(cfg.aug_rotate)
        for _ in range(cfg.steps):
            scale = rng.uniform(*cfg.aug_scale) if cfg.aug_scale is not None else 1.0
            angle = math.radians(rng.uniform(-cfg.aug_rotate, cfg.aug_rotate)) if cfg.aug_rotate else 0.0
            shift = rng.randint(-cfg.aug_time_shift, cfg.aug_time_shift) if cfg.aug_time_shift else 0
            c, s = math.cos(angle) / scale, math.sin(angle) / scale
            # sampling at R(angle) p / scale shows the content rotated by -angle and zoomed by scale
            thetas.append([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
            frames.append((ar_t - shift) % cfg.frames)
        theta = torch.tensor(thetas, dtype=torch.float32, device=device) if spatial else None
        index = torch.stack(frames).to(device) if cfg.aug_time_shift else None
        return cls(theta, index)

    def __call__(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """x (B x C x T x H x W) transformed by the draws of ``step`` (a 1-element device tensor)."""
        if self.frames is not None:
            x = x.index_select(2, self.frames.index_select(0, step).view(-1))
        if self.theta is not None:
            theta = self.theta.index_select(0, step).to(x.dtype).expand(x.shape[0], 3, 4)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return x
