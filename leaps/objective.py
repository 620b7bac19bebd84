"""The objectives an inversion minimises, by name: LEAPS, eq. (4), and the baselines of Section 4.2.

    L(x*, v, y) = CE(Phi(x*), y) + L_prim(x*, v) + r (R_coh(x*) + R_feat(x*))            (4)

An objective is a weighted sum of named terms, composed as the equation reads (lucent style)::

    terms = ce + prim + r * (coh + feat)

Each term (:class:`Term`) is a function of one forward of the inverted model on x*
(:class:`Forward`) with a name from :data:`TERM_NAMES`; ``a + b`` lists terms in order and
``w * terms`` scales their weights (:class:`Terms`). An :class:`Objective` runs the model once,
evaluates its terms, each already weighted (``history["coh"]`` is r R_coh), and
:meth:`Objective.stack` sums them: the one place the total is formed.

* :class:`LeapsObjective`: eq. (4), each term switchable (Table 3 ablations), plus the optional
  ``prior_tv`` TV prior and the optional CE of extra models (``extra_models``, an ensemble);
  neither is part of the paper's objective, both are off by default.
* :class:`DeepDreamObjective`: CE + tv_weight TV(x*) + l2_weight mean(x*^2).
* :class:`ActivationMaximizationObjective`: -logit_y + l2_weight mean(x*^2).

The terms' formulas and their fused backends are in :mod:`leaps.losses`; the loop that
optimises x* (augmentation, Adam, engine options) is :mod:`leaps.inversion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import losses
from .errors import LeapsError

if TYPE_CHECKING:  # inversion imports this module
    from .config import InversionConfig
    from .inversion import Network
    from .taps import BatchNormTaps, FeatureTaps

#: Every term an objective can log, by name (its history key), declared once: the four of eq. (4),
#: the optional TV prior, and the baselines' own (total variation, l2 of x*, the target's logit).
CE, PRIM, COH, FEAT, PRIOR_TV, CE_EXTRA, TV, L2, LOGIT = TERM_NAMES = (
    "ce", "prim", "coh", "feat", "prior_tv", "ce_extra", "tv", "l2", "logit",
)
#: The terms of eq. (4), in the order they are summed and logged.
LEAPS_TERMS = (CE, PRIM, COH, FEAT)
DEEPDREAM_TERMS = (CE, TV, L2)
AM_TERMS = (LOGIT, L2)
#: History key of the sum of the terms.
TOTAL = "loss"


@dataclass
class Forward:
    """One forward of the inverted model on x*: what every term reads."""

    x: Tensor                      # x* (augmented), in the inverted model's normalised input space
    x_model: Tensor                # x resized to the model's input geometry
    logits: Tensor                 # the model's output on x_model
    model_taps: FeatureTaps        # the inputs of the model's normalisation layers in this forward
    verifier_taps: BatchNormTaps | None = None  # hooks on the verifier's BatchNorms (R_feat runs it)


# --------------------------------------------------------------------------------------------
# composing terms
# --------------------------------------------------------------------------------------------

class Term:
    """One named term: ``term(forward)`` is a scalar tensor. ``a + b`` and ``w * a`` give :class:`Terms`."""

    name: str = ""

    def __call__(self, fwd: Forward) -> Tensor:
        raise NotImplementedError

    def __add__(self, other):
        return Terms.of(self) + other

    def __mul__(self, weight):
        return Terms.of(self) * weight

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Terms:
    """An ordered, weighted sum of named terms (empty: :data:`NO_TERMS`, for a term switched off)."""

    def __init__(self, weighted: Sequence[tuple[float, Term]] = ()):
        self.weighted = tuple(weighted)
        names = [term.name for _, term in self.weighted]
        for name in names:
            if names.count(name) > 1:
                raise LeapsError(f"term {name!r} appears twice in one objective")

    @classmethod
    def of(cls, term: Term) -> Terms:
        return cls(((1.0, term),))

    def __add__(self, other):
        if isinstance(other, Term):
            other = Terms.of(other)
        if not isinstance(other, Terms):
            return NotImplemented
        return Terms(self.weighted + other.weighted)

    def __mul__(self, weight):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            return NotImplemented
        return Terms(tuple((weight * w, term) for w, term in self.weighted))

    __rmul__ = __mul__

    def __len__(self) -> int:
        return len(self.weighted)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(term.name for _, term in self.weighted)

    @property
    def weights(self) -> dict[str, float]:
        return {term.name: w for w, term in self.weighted}

    def __call__(self, fwd: Forward) -> dict[str, Tensor]:
        """Each term times its weight, in order (a weight of 1 adds no multiplication)."""
        return {term.name: term(fwd) if w == 1.0 else w * term(fwd) for w, term in self.weighted}

    def __repr__(self) -> str:
        return " + ".join(f"{w:g} {term.name}" for w, term in self.weighted) or "0"


#: The sum of no terms: what a term switched off contributes.
NO_TERMS = Terms()


# --------------------------------------------------------------------------------------------
# the terms
# --------------------------------------------------------------------------------------------

class CrossEntropy(Term):
    """CE(Phi(x*), y): cross-entropy of the model's logits and the targets (batch mean)."""

    name = CE

    def __init__(self, targets: Tensor):
        self.targets = targets

    def __call__(self, fwd: Forward) -> Tensor:
        return F.cross_entropy(fwd.logits, self.targets)


class Priming(Term):
    """L_prim, eq. (1): distances of the first L layers' channel means to the stimulus's.

    Options beyond the paper (InversionConfig ``priming_per_frame`` / ``priming_mirror``):
    ``per_frame`` compares per-frame channel means (:func:`leaps.losses.frames_as_channels`; the
    stimulus means must have been taken the same way), and ``mirror_means`` (the mirrored
    stimulus's) primes each video by the nearer of the stimulus and its mirror image
    (:func:`leaps.losses.mirrored_priming_loss`).
    """

    name = PRIM

    def __init__(self, stimulus_means: Sequence[Tensor], layer_weights: Sequence[float], distance: str = "jvs",
                 backend: str = "auto", *, per_frame: bool = False, mirror_means: Sequence[Tensor] | None = None):
        self.stimulus_means = list(stimulus_means)
        self.layer_weights = list(layer_weights)  # lambda_l; their count is the number L of primed layers
        self.distance = distance
        self.backend = backend
        self.per_frame = per_frame
        self.mirror_means = None if mirror_means is None else list(mirror_means)

    def __call__(self, fwd: Forward) -> Tensor:
        n = len(self.layer_weights)
        taps = fwd.model_taps
        acts, dims = taps.features()[:n], taps.feature_dims()[:n]
        if self.per_frame:
            acts, dims = [losses.frames_as_channels(z, d) for z, d in zip(acts, dims)], [1] * n
        if self.mirror_means is not None:
            feats = [losses.channel_means(z, d) for z, d in zip(acts, dims)]
            return losses.mirrored_priming_loss(feats, self.stimulus_means, self.mirror_means, self.layer_weights,
                                                self.distance)
        return losses.priming_loss_from_activations(acts, self.stimulus_means, self.layer_weights, self.distance,
                                                    channel_dims=dims, backend=self.backend)


class TemporalCoherence(Term):
    """R_coh, eq. (2): L1 of consecutive frames and a hinge on the others, at the last norm layer.

    ``token_grid``: (T', H'W') of transformer tokens; None asks the model's ``spec`` (its
    ``token_grid`` maps the input geometry to the grid), and else the layer must be 5-D.
    """

    name = COH

    def __init__(self, margin: float = 1.0, token_grid: tuple[int, int] | None = None, spec=None,
                 backend: str = "auto"):
        self.margin, self.token_grid, self.spec, self.backend = margin, token_grid, spec, backend

    def __call__(self, fwd: Forward) -> Tensor:
        # The layer is the model's last tapped one unless its spec names another; a declared
        # layout (leaps.taps.FeatureLayout) turns it into time-major tokens with their grid.
        _, _, z, layout = fwd.model_taps.coherence_input()
        grid = self.token_grid
        if grid is None and (z.dim() == 3 or layout is not None) and getattr(self.spec, "token_grid", None):
            grid = self.spec.token_grid(tuple(fwd.x_model.shape[2:]))
        z, grid, module = fwd.model_taps.coherence_frames(grid)
        if grid is None and z.dim() != 5:
            raise LeapsError(
                f"cannot find the frames in the last layer's input of shape {tuple(z.shape)}: pass "
                "token_grid=(T', H'W') for transformer tokens, or disable temporal coherence"
            )
        channels_last = grid is None and isinstance(module, nn.LayerNorm)
        return losses.temporal_coherence_loss(z, self.margin, token_grid=grid, channels_last=channels_last,
                                              backend=self.backend)


class BNStatistics(Term):
    """R_feat, eq. (3): the verifier's BatchNorm input moments against its running statistics.

    Runs the verifier on x* (moved to the verifier's normalisation when it differs from the
    model's) and reads its BatchNorm inputs through ``fwd.verifier_taps``.
    """

    name = FEAT

    def __init__(self, model: Network, verifier: Network, backend: str = "auto"):
        self.model, self.verifier, self.backend = model, verifier, backend
        # Decided once: torch.equal on device tensors would sync the host on every step.
        self.same_normalisation = model.same_normalisation(verifier)

    def __call__(self, fwd: Forward) -> Tensor:
        taps = fwd.verifier_taps
        if taps is None:
            raise LeapsError("R_feat reads the verifier's BatchNorm inputs: pass verifier_taps "
                             "(leaps.taps.BatchNormTaps on the verifier)")
        x = fwd.x if self.same_normalisation else self.model.to_normalisation_of(fwd.x, self.verifier)
        self.verifier.module(self.verifier.fit(x))
        means, variances = taps.running_stats()
        return losses.bn_statistics_loss(taps.activations(), means, variances, backend=self.backend)


class EnsembleCrossEntropy(Term):
    """Mean over extra networks of CE(Phi_k(x*), y): x* must be recognisable to every network of an ensemble.

    Each extra network sees x* in its own normalisation and geometry; none is tapped (no priming,
    no R_feat from them).
    """

    name = CE_EXTRA

    def __init__(self, model: Network, extras: Sequence[Network], targets: Tensor):
        if not extras:
            raise LeapsError("an ensemble CE needs at least one extra network")
        self.model, self.extras, self.targets = model, list(extras), targets
        self.same_normalisation = [model.same_normalisation(e) for e in self.extras]  # decided once: no host sync

    def __call__(self, fwd: Forward) -> Tensor:
        total = 0
        for extra, same in zip(self.extras, self.same_normalisation):
            x = fwd.x if same else self.model.to_normalisation_of(fwd.x, extra)
            total = total + F.cross_entropy(extra.module(extra.fit(x)), self.targets)
        return total / len(self.extras)


class TotalVariation(Term):
    """TV(x*): mean absolute difference of neighbouring pixels along T (times ``time_weight``), H and W."""

    def __init__(self, name: str = TV, time_weight: float = 1.0):
        self.name = name  # "tv" in DeepDream, "prior_tv" as LEAPS's optional prior
        self.time_weight = time_weight

    def __call__(self, fwd: Forward) -> Tensor:
        return losses.total_variation(fwd.x, self.time_weight)


class InputL2(Term):
    """mean(x*^2), in the model's normalised space."""

    name = L2

    def __call__(self, fwd: Forward) -> Tensor:
        return fwd.x.pow(2).mean()


class NegativeTargetLogit(Term):
    """-logit_y(x*), batch mean: minimising it ascends the target's logit."""

    name = LOGIT

    def __init__(self, targets: Tensor):
        self.targets = targets

    def __call__(self, fwd: Forward) -> Tensor:
        return -fwd.logits.gather(1, self.targets[:, None]).mean()


# --------------------------------------------------------------------------------------------
# objectives
# --------------------------------------------------------------------------------------------

class Objective:
    """Terms of x* evaluated on one forward of the inverted ``model``, and their sum.

    ``verifier``: the network a term runs besides the model (R_feat's), or None; the inverter
    taps it and checkpoints it with the model.
    """

    def __init__(self, model: Network, terms: Terms | Term, verifier: Network | None = None):
        self.model = model
        self.terms = Terms.of(terms) if isinstance(terms, Term) else terms
        self.verifier = verifier
        if not len(self.terms):
            raise LeapsError("the objective has no terms: switch at least one on")

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the terms :meth:`__call__` returns, in order (history keys)."""
        return self.terms.names

    def __call__(self, x: Tensor, model_taps: FeatureTaps, verifier_taps: BatchNormTaps | None = None
                 ) -> dict[str, Tensor]:
        """The weighted terms for x* (in the model's normalised space), in the order of :attr:`names`.
        Call it inside the taps' ``with`` blocks."""
        x_model = self.model.fit(x)
        return self.terms(Forward(x, x_model, self.model.module(x_model), model_taps, verifier_taps))

    def stack(self, terms: dict[str, Tensor]) -> Tensor:
        """``[total, term_1, ...]`` in fp32: the terms in the order of :attr:`names` after their sum."""
        values = torch.stack([terms[name].float() for name in self.names])
        return torch.cat([values.sum().view(1), values])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.terms!r})"


class LeapsObjective(Objective):
    """LEAPS, eq. (4): CE(Phi(x*), y) + L_prim(x*, v) + r (R_coh(x*) + R_feat(x*)).

    model:          the inverted network (:class:`leaps.inversion.Network`); targets: B class indices.
    stimulus_means: per primed layer, the stimulus's channel means (1 x C_l or B x C_l).
    priming_per_frame, mirror_means: time-resolved / mirror-aware priming (:class:`Priming`;
                    NOT part of eq. (1)).
    layer_weights:  lambda_l per primed layer (:func:`leaps.losses.linear_layer_weights`).
    r:              the regulariser scale of R_coh and R_feat.
    verifier:       the BatchNorm network of R_feat; None drops R_feat.
    use_*:          Table 3 ablations: each drops exactly its term.
    prior_tv:       > 0 adds prior_tv TV(x*), a smoothness prior that is NOT part of eq. (4);
                    ``prior_tv_time`` weighs its differences along T (0: space only).
    extras:         networks whose mean CE is added times ``extra_weight`` (NOT part of eq. (4)).
    """

    def __init__(self, model: Network, targets: Tensor, *, stimulus_means: Sequence[Tensor] = (),
                 layer_weights: Sequence[float] = (), r: float, verifier: Network | None = None,
                 distance: str = "jvs", margin: float = 1.0, token_grid: tuple[int, int] | None = None,
                 backend: str = "auto", use_ce: bool = True, use_priming: bool = True, use_coherence: bool = True,
                 use_feat: bool = True, prior_tv: float = 0.0, prior_tv_time: float = 1.0,
                 extras: Sequence[Network] = (), extra_weight: float = 1.0, priming_per_frame: bool = False,
                 mirror_means: Sequence[Tensor] | None = None):
        ce = CrossEntropy(targets) if use_ce else NO_TERMS
        prim = Priming(stimulus_means, layer_weights, distance, backend, per_frame=priming_per_frame,
                       mirror_means=mirror_means) if use_priming else NO_TERMS
        coh = TemporalCoherence(margin, token_grid, model.spec, backend) if use_coherence else NO_TERMS
        feat = BNStatistics(model, verifier, backend) if use_feat and verifier is not None else NO_TERMS

        terms = ce + prim + r * (coh + feat)  # eq. (4)
        if prior_tv > 0:
            terms = terms + prior_tv * TotalVariation(PRIOR_TV, prior_tv_time)
        if extras:
            terms = terms + extra_weight * EnsembleCrossEntropy(model, extras, targets)

        super().__init__(model, terms, verifier if feat is not NO_TERMS else None)
        self.r = r

    @classmethod
    def from_config(cls, cfg: InversionConfig, model: Network, verifier: Network | None, targets: Tensor,
                    stimulus_means: Sequence[Tensor], preset: tuple[float, float, float],
                    extras: Sequence[Network] = (), mirror_means: Sequence[Tensor] | None = None) -> LeapsObjective:
        """From an :class:`leaps.InversionConfig`, a (lambda_1, lambda_L, r) preset, the networks of
        ``cfg.extra_models`` and, with ``cfg.priming_mirror``, the mirrored stimulus's features."""
        lambda_first, lambda_last, r = preset
        layer_weights = losses.linear_layer_weights(len(stimulus_means), lambda_first, lambda_last) \
            if stimulus_means else []
        return cls(model, targets, stimulus_means=stimulus_means, layer_weights=layer_weights, r=r,
                   verifier=verifier, distance=cfg.distance, margin=cfg.margin, token_grid=cfg.token_grid,
                   backend=cfg.backend, use_ce=cfg.use_ce, use_priming=cfg.use_priming,
                   use_coherence=cfg.use_coherence, use_feat=cfg.use_feat, prior_tv=cfg.prior_tv,
                   prior_tv_time=cfg.prior_tv_time, extras=extras,
                   extra_weight=cfg.extra_weight, priming_per_frame=cfg.priming_per_frame,
                   mirror_means=mirror_means)


class DeepDreamObjective(Objective):
    """3D DeepDream (Section 4.2): CE(Phi(x*), y) + tv_weight TV(x*) + l2_weight mean(x*^2)."""

    def __init__(self, model: Network, targets: Tensor, *, tv_weight: float = 0.1, l2_weight: float = 0.01):
        super().__init__(model, CrossEntropy(targets) + tv_weight * TotalVariation() + l2_weight * InputL2())

    @classmethod
    def from_config(cls, cfg: InversionConfig, model: Network, verifier: Network | None, targets: Tensor,
                    stimulus_means: Sequence[Tensor], preset) -> DeepDreamObjective:
        return cls(model, targets, tv_weight=cfg.tv_weight, l2_weight=cfg.l2_weight)


class ActivationMaximizationObjective(Objective):
    """3D Activation Maximisation (Section 4.2): -logit_y(x*) + l2_weight mean(x*^2)."""

    def __init__(self, model: Network, targets: Tensor, *, l2_weight: float = 0.01):
        super().__init__(model, NegativeTargetLogit(targets) + l2_weight * InputL2())

    @classmethod
    def from_config(cls, cfg: InversionConfig, model: Network, verifier: Network | None, targets: Tensor,
                    stimulus_means: Sequence[Tensor], preset) -> ActivationMaximizationObjective:
        return cls(model, targets, l2_weight=cfg.l2_weight)


#: ``InversionConfig.objective`` -> its class.
OBJECTIVE_CLASSES = {"leaps": LeapsObjective, "deepdream": DeepDreamObjective, "am": ActivationMaximizationObjective}


def build_objective(cfg: InversionConfig, model: Network, verifier: Network | None, targets: Tensor,
                    stimulus_means: Sequence[Tensor], preset: tuple[float, float, float],
                    extras: Sequence[Network] = (), mirror_means: Sequence[Tensor] | None = None) -> Objective:
    """The objective ``cfg.objective`` names, set up from ``cfg``. The baselines use no verifier
    (one given still reports its top-1 on the result); ``extras`` (the networks of
    ``cfg.extra_models``) and ``mirror_means`` (``cfg.priming_mirror``) only LEAPS uses."""
    if extras or mirror_means is not None:
        return LeapsObjective.from_config(cfg, model, verifier, targets, stimulus_means, preset, extras, mirror_means)
    return OBJECTIVE_CLASSES[cfg.objective].from_config(cfg, model, verifier, targets, stimulus_means, preset)
