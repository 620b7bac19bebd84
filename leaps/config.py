"""Settings of one inversion run (Section 4.1 defaults; DeepInversion practice where the paper is silent).

Each field also says how ``leaps invert`` exposes it (``field.metadata["cli"]``, see :func:`option`):
the command line builds its flags and the config from these declarations, so an option is declared
once, here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field

from .constants import AMP_MODES, BACKENDS, DISTANCES, LR_SCHEDULES, OBJECTIVES, PARAMS, check_choice, is_real
from .errors import LeapsError

#: Argument groups of ``leaps invert`` the fields belong to (titles in :mod:`leaps.cli`).
OBJECTIVE, OPTIMISATION, ENGINE = "objective", "optimisation", "engine"


@dataclass(frozen=True)
class CliOption:
    """How one config field appears on the command line.

    ``flag`` defaults to ``--field-name`` (``--no-field-name`` for a bool that defaults to True,
    which the flag turns off); ``default_text`` replaces the default shown in the help;
    ``choices`` limit the values; ``metavar`` names the values of a tuple field (one per element).
    """

    help: str
    group: str
    flag: str | None = None
    choices: tuple | None = None
    metavar: tuple[str, ...] | str | None = None
    default_text: str | None = None


def option(default, help: str, group: str, **cli) -> dataclasses.Field:
    """A config field with a ``leaps invert`` flag (see :class:`CliOption`)."""
    return field(default=default, metadata={"cli": CliOption(help, group, **cli)})


def no_option(default, why: str) -> dataclasses.Field:
    """A config field deliberately without a flag; ``why`` says where its value comes from instead."""
    return field(default=default, metadata={"cli": None, "no_cli_reason": why})


@dataclass
class InversionConfig:
    """Everything that shapes an inversion. ``None`` means "take the model's preset".

    ``preset`` (a file such as ``leaps tune``'s ``best_preset.json``, or a dict) fills the fields
    not given explicitly. Precedence, highest first: a field given explicitly (keyword, flag,
    ``replace``), the preset, the model spec's preset (λ₁, λ_L, r; ``build_model(..., preset=FILE)``
    sets it), the defaults below.

    Optimisation (Section 4.1): Adam, lr 0.2 with cosine decay, 2000 steps, x* of 8 x 224^2.
    Adam's betas (0.5, 0.9), the random roll (jitter) and flip of x* every step and the
    clipping of x* to the valid pixel range follow DeepInversion [68], which the paper cites
    for its optimisation.
    """

    # what is optimised
    objective: str = option("leaps", "objective: LEAPS, or a baseline of Section 4.2 (deepdream: CE + TV + l2; "
                            "am: logit ascent)", OBJECTIVE, flag="--method", choices=OBJECTIVES)
    frames: int = option(8, "frames T of the synthesised video", OPTIMISATION)
    size: int = option(224, "height = width of the synthesised video", OPTIMISATION)
    model_input: tuple[int, int] | None = option(None, "override the T x S^2 the model sees (default: its spec)",
                                                 OPTIMISATION, metavar=("T", "S"))
    verifier_input: tuple[int, int] | None = option(None, "override the T x S^2 the verifier sees (default: its spec)",
                                                    OPTIMISATION, metavar=("T", "S"))
    # optimiser
    steps: int = option(2000, "Adam updates", OPTIMISATION)
    lr: float = option(0.2, "learning rate of Adam", OPTIMISATION)
    betas: tuple[float, float] = option((0.5, 0.9), "Adam's betas, as in DeepInversion", OPTIMISATION,
                                        metavar=("B1", "B2"), default_text="0.5 0.9")
    lr_schedule: str = option("cosine", "learning-rate schedule after the warm-up", OPTIMISATION, choices=LR_SCHEDULES)
    warmup_steps: int = option(0, "steps of linear lr warm-up before the schedule", OPTIMISATION)
    init_scale: float = option(1.0, "x* starts as N(0, init_scale^2) noise in normalised space", OPTIMISATION)
    # DeepInversion-style augmentation and clipping
    jitter: int | None = option(None, "max random roll in pixels", OPTIMISATION, default_text="13% of --size")
    flip: bool = option(True, "no random horizontal flips of x*", OPTIMISATION)
    clip: bool = option(True, "do not clip x* to the valid [0, 1] pixel range after each step", OPTIMISATION)
    # feature-visualisation recipes (Olah et al. 2017), each off by default: NOT part of the paper's setup
    param: str = option("pixel", "what Adam updates: x* itself (pixel), a 1/f-scaled 3D spectrum of decorrelated "
                        "colours squashed by a sigmoid (fourier; lucid's fft_image for video), or one image per "
                        "video moved by a rotation, scale and shift per frame plus a small residual (rigid)",
                        OPTIMISATION,
                        choices=PARAMS)
    aug_scale: tuple[float, float] | None = option(None, "random rescale of x* by a factor in [LO, HI] each step",
                                                   OPTIMISATION, metavar=("LO", "HI"), default_text="off")
    aug_rotate: float = option(0.0, "random rotation of x* by up to +-DEG degrees each step", OPTIMISATION,
                               metavar="DEG", default_text="0: off")
    aug_time_shift: int = option(0, "random temporal roll of x* by up to +-K frames each step", OPTIMISATION,
                                 metavar="K", default_text="0: off")
    coarse_to_fine: int = option(1, "optimise x* in N stages of doubling resolution (H, W, T halved per earlier "
                                 "stage), the steps split evenly", OPTIMISATION, metavar="N", default_text="1: off")
    # the LEAPS objective, eq. (4)
    lambda_first: float | None = option(None, "priming weight of the first layer, Table S1", OBJECTIVE)
    lambda_last: float | None = option(None, "priming weight of the last layer; the layers between are "
                                       "interpolated", OBJECTIVE)
    r: float | None = option(None, "regulariser scale r", OBJECTIVE)
    margin: float = option(1.0, "coherence margin delta of eq. (2)", OBJECTIVE)
    distance: str = option("jvs", "priming distance d of eq. (1), Table 2", OBJECTIVE, choices=DISTANCES)
    priming_fraction: float = option(1.0, "prime the first floor(f L) layers, Table S2", OBJECTIVE)
    # priming options beyond the paper: off keeps eq. (1)
    priming_per_frame: bool = option(False, "prime per-frame channel means (x* frame t against the stimulus's "
                                     "frame t) instead of space-time means; not in the paper", OBJECTIVE)
    priming_mirror: bool = option(False, "prime each video by the nearer of the stimulus and its mirror image "
                                  "(x* is flipped at random); not in the paper", OBJECTIVE)
    # Table 3 ablations: each term on or off
    use_ce: bool = option(True, "ablation: drop the ce term", OBJECTIVE, flag="--no-ce")
    use_priming: bool = option(True, "ablation: drop the priming term", OBJECTIVE, flag="--no-priming")
    use_coherence: bool = option(True, "ablation: drop the coherence term", OBJECTIVE, flag="--no-coherence")
    use_feat: bool = option(True, "ablation: drop the feat term", OBJECTIVE, flag="--no-feat")
    token_grid: tuple[int, int] | None = no_option(
        None, "(T', H'W') of the last layer's tokens, transformers: leaps invert takes registered models, "
              "whose spec computes it")
    # optional image prior, NOT part of eq. (4): 0 keeps the paper's objective
    prior_tv: float = option(0.0, "add W * total variation of x* (leaps.losses.total_variation) to the LEAPS loss; "
                             "not in the paper", OBJECTIVE, default_text="0: off")
    prior_tv_time: float = option(1.0, "weight of the TV prior's differences along T, relative to H and W "
                                  "(0: smooth in space only, motion costs nothing)", OBJECTIVE)
    extra_models: tuple[str, ...] = option((), "registered models (pretrained weights) whose CE on x* is added, "
                                           "averaged, times --extra-weight: an ensemble; not in the paper",
                                           OBJECTIVE, metavar="NAME", default_text="none")
    extra_weight: float = option(1.0, "weight of the extra models' mean CE", OBJECTIVE)
    # baselines (Section 4.2)
    tv_weight: float = option(0.1, "--method deepdream: weight of the total variation of x*", OBJECTIVE)
    l2_weight: float = option(0.01, "--method deepdream / am: weight of mean(x^2)", OBJECTIVE)
    # engine
    backend: str = option("auto", "LEAPS loss kernels (leaps.ops): fused cuda/triton on GPU, plain torch on CPU",
                          ENGINE, choices=BACKENDS)
    amp: str | None = option(None, "autocast (fp16 with loss scaling); fp32 turns off the bf16 that --fast picks "
                             "on CUDA", ENGINE, choices=tuple(m for m in AMP_MODES if m is not None))
    compile: bool | str = option(False, "torch.compile the objective (forward, losses); the API also takes a "
                                 "backend name", ENGINE)
    cuda_graph: bool = option(False, "capture the whole step (fwd, bwd, Adam, augmentation) as a CUDA graph "
                              "(CUDA only)", ENGINE)
    checkpoint: bool = option(False, "activation checkpointing of the networks' stages", ENGINE)
    channels_last: bool = option(False, "channels_last_3d networks and x*", ENGINE)
    fast: bool = option(False, "on a GPU: fused losses + CUDA graph + bf16 autocast + deferred loss reads "
                        "(leaps.engine)", ENGINE)
    sync_every: int = option(0, "read the losses back (and check for NaN) every K steps", ENGINE,
                             default_text="1, 25 with --fast/--cuda-graph")
    # bookkeeping
    seed: int | None = option(0, "random seed", OPTIMISATION)
    snapshot_every: int = option(0, "save a contact sheet every K steps", OPTIMISATION, default_text="0: never")
    progress: bool = option(True, "no progress bar", OPTIMISATION, flag="--quiet")
    # a preset file or dict: fills the fields not given explicitly (leaps.tune.load_preset reads it)
    preset: str | os.PathLike | dict | None = option(
        None, "a preset file (e.g. leaps tune's best_preset.json): its values replace the defaults and the "
              "model's preset; flags given explicitly still win", OBJECTIVE, metavar="FILE")

    def __post_init__(self):
        if isinstance(self.preset, os.PathLike):
            self.preset = os.fspath(self.preset)  # JSON-ready in run metadata
        explicit = getattr(self, "_explicit", frozenset())
        # dataclasses.replace passes every field: nothing is left to fill, so the file is not read again
        if self.preset is not None and _FIELD_NAMES - {"preset"} - explicit:
            self._fill_from_preset(explicit)

    def _fill_from_preset(self, explicit) -> None:
        from .tune.preset import load_preset

        for key, value in load_preset(self.preset).items():
            if key not in explicit:
                setattr(self, key, value)

    def replace(self, **changes) -> "InversionConfig":
        """A copy with ``changes``; they count as given explicitly, so a ``preset`` among them fills
        only the fields that neither this config nor ``changes`` set explicitly."""
        unknown = set(changes) - _FIELD_NAMES
        if unknown:
            raise LeapsError(f"unknown inversion option(s): {', '.join(sorted(unknown))}")
        new = dataclasses.replace(self, **changes)
        explicit = getattr(self, "_explicit", frozenset()) | frozenset(changes)
        if changes.get("preset") is not None:
            new._fill_from_preset(explicit)
        new._explicit = explicit
        return new

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
        if not is_real(self.prior_tv) or self.prior_tv < 0:
            raise LeapsError(f"prior_tv must be a finite number >= 0 (0: off), got {self.prior_tv!r}")
        if not is_real(self.prior_tv_time) or self.prior_tv_time < 0:
            raise LeapsError(f"prior_tv_time must be a finite number >= 0 (1: T as H and W), "
                             f"got {self.prior_tv_time!r}")
        if self.prior_tv and self.objective != "leaps":
            raise LeapsError(f"prior_tv adds to the LEAPS objective; objective {self.objective!r} does not use it "
                             "(the deepdream baseline has its own tv_weight)")
        self._validate_recipes()
        return self

    def _validate_recipes(self) -> None:
        from . import augment
        from .parameterization import check_coarse_to_fine

        check_choice(self.param, PARAMS, "parameterisation")
        augment.check(self)
        check_coarse_to_fine(self.coarse_to_fine, self.steps, self.size)
        if self.param == "rigid" and self.coarse_to_fine > 1:
            raise LeapsError("param='rigid' does not run coarse to fine: set coarse_to_fine=1")
        if isinstance(self.extra_models, str) or not all(isinstance(m, str) and m for m in self.extra_models):
            raise LeapsError(f"extra_models must be a sequence of registered model names, got {self.extra_models!r}")
        w = self.extra_weight
        if not is_real(w) or w < 0:
            raise LeapsError(f"extra_weight must be a finite number >= 0, got {w!r}")
        if self.extra_models and self.objective != "leaps":
            raise LeapsError(f"extra_models add to the LEAPS objective; objective {self.objective!r} does not use them")
        if self.priming_per_frame and self.aug_time_shift:
            raise LeapsError("priming_per_frame compares frame t of x* with frame t of the stimulus; "
                             "aug_time_shift rolls x* in time: use one or the other")
        if self.priming_per_frame and self.coarse_to_fine > 1:
            raise LeapsError("priming_per_frame needs x* at its full frame count from the first step: "
                             "set coarse_to_fine=1")


_FIELD_ORDER = tuple(f.name for f in dataclasses.fields(InversionConfig))  # positional arguments map onto these
_FIELD_NAMES = frozenset(_FIELD_ORDER)
_generated_init = InversionConfig.__init__


@functools.wraps(_generated_init)
def _init_noting_explicit_fields(self, *args, **kwargs):
    # Which fields the caller gave: a preset fills only the others (an explicit default still wins).
    self._explicit = frozenset(_FIELD_ORDER[:len(args)]) | frozenset(kwargs)
    _generated_init(self, *args, **kwargs)


InversionConfig.__init__ = _init_noting_explicit_fields
