"""Settings of one inversion run (Section 4.1 defaults; DeepInversion practice where the paper is silent)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .constants import AMP_MODES, BACKENDS, DISTANCES, LR_SCHEDULES, OBJECTIVES, check_choice
from .errors import LeapsError


@dataclass
class InversionConfig:
    """Everything that shapes an inversion. ``None`` means "take the model's preset".

    Optimisation (Section 4.1): Adam, lr 0.2 with cosine decay, 2000 steps, x* of 8 x 224^2.
    Adam's betas (0.5, 0.9), the random roll (jitter) and flip of x* every step and the
    clipping of x* to the valid pixel range follow DeepInversion [68], which the paper cites
    for its optimisation.
    """

    # what is optimised
    objective: str = "leaps"          # "leaps" | "deepdream" (CE + TV + l2) | "am" (logit ascent)
    frames: int = 8                   # T of x*
    size: int = 224                   # H = W of x*
    model_input: tuple[int, int] | None = None     # (T, S) the inverted model sees; None: its spec
    verifier_input: tuple[int, int] | None = None  # (T, S) the verifier sees; None: its spec
    # optimiser
    steps: int = 2000
    lr: float = 0.2
    betas: tuple[float, float] = (0.5, 0.9)
    lr_schedule: str = "cosine"       # "cosine" | "constant"
    warmup_steps: int = 0             # linear lr warm-up before the cosine decay
    init_scale: float = 1.0           # x* ~ N(0, init_scale^2) in normalised space
    # DeepInversion-style augmentation and clipping
    jitter: int | None = None         # max random roll in pixels; None: about 13% of size
    flip: bool = True                 # random horizontal flip of x* each step
    clip: bool = True                 # clip x* to the valid [0, 1] pixel range after each step
    # the LEAPS objective, eq. (4)
    lambda_first: float | None = None  # priming weight of the first layer (Table S1)
    lambda_last: float | None = None   # priming weight of the last layer
    r: float | None = None             # regulariser scale
    margin: float = 1.0                # delta of eq. (2)
    distance: str = "jvs"              # "jvs" | "l1" | "l2" | "cos" (Table 2)
    priming_fraction: float = 1.0      # first floor(f L) layers are primed (Table S2)
    use_ce: bool = True                # Table 3 ablations: each term on or off
    use_priming: bool = True
    use_coherence: bool = True
    use_feat: bool = True
    token_grid: tuple[int, int] | None = None  # (T', H'W') of the last layer's tokens, transformers
    # optional image prior, NOT part of eq. (4): 0 keeps the paper's objective
    prior_tv: float = 0.0              # adds prior_tv * TV(x*) (leaps.losses.total_variation) to the LEAPS loss
    # baselines (Section 4.2)
    tv_weight: float = 0.1             # DeepDream total variation weight
    l2_weight: float = 0.01            # DeepDream / AM weight of mean(x^2)
    # engine
    backend: str = "auto"              # loss kernels: "auto" | "reference" | "triton" | "cuda" (leaps.ops)
    amp: str | None = None             # autocast: None (fp32/TF32; bf16 under fast) | "fp32" | "bf16" | "fp16" (loss scaling)
    compile: bool | str = False        # torch.compile the objective (forward, losses); a str names the backend
    cuda_graph: bool = False           # capture the whole step (fwd, bwd, Adam, augmentation) and replay it
    checkpoint: bool = False           # activation checkpointing of the networks' stages
    channels_last: bool = False        # channels_last_3d networks and x*
    fast: bool = False                 # on CUDA: fused losses + CUDA graph + bf16 autocast + deferred reads (leaps.engine)
    sync_every: int = 0                # read losses back to the host every k steps (0: 1 eager, 25 fast engine)
    # bookkeeping
    seed: int | None = 0
    snapshot_every: int = 0            # keep a copy of the video every k steps (0: never)
    progress: bool = True              # tqdm progress bar

    def replace(self, **changes) -> "InversionConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise LeapsError(f"unknown inversion option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def validate(self) -> "InversionConfig":
        check_choice(self.objective, OBJECTIVES, "objective")
        check_choice(self.distance, DISTANCES, "priming distance")
        check_choice(self.backend, BACKENDS, "loss backend")
        check_choice(self.lr_schedule, LR_SCHEDULES, "lr schedule")
        if self.steps < 1:
            raise LeapsError("steps must be at least 1")
        if self.frames < 1 or self.size < 8:
            raise LeapsError(f"x* must have at least 1 frame and 8 x 8 pixels, got {self.frames} x {self.size}^2")
        if not 0.0 < self.priming_fraction <= 1.0:
            raise LeapsError("priming_fraction must be in (0, 1]")
        check_choice(self.amp, AMP_MODES, "amp mode")
        if self.sync_every < 0:
            raise LeapsError("sync_every must be >= 0")
        if self.lr <= 0:
            raise LeapsError("lr must be positive")
        if isinstance(self.prior_tv, bool) or not isinstance(self.prior_tv, (int, float)) \
                or not math.isfinite(self.prior_tv) or self.prior_tv < 0:
            raise LeapsError(f"prior_tv must be a finite number >= 0 (0: off), got {self.prior_tv!r}")
        if self.prior_tv and self.objective != "leaps":
            raise LeapsError(f"prior_tv adds to the LEAPS objective; objective {self.objective!r} does not use it "
                             "(the deepdream baseline has its own tv_weight)")
        return self
